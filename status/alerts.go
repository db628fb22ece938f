package status

import (
	"context"
	"time"

	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
)

// Alert is one late-money alert as the pages list it.
type Alert struct {
	ID         string `json:"id"`
	RaceID     string `json:"race_id"`
	Meeting    string `json:"meeting,omitempty"`
	RaceNumber int    `json:"race_number,omitempty"`
	// EntrantID, RunnerNumber and RunnerName are the runner; empty for a
	// race's pool surge.
	EntrantID    string    `json:"entrant_id,omitempty"`
	RunnerNumber int       `json:"runner_number,omitempty"`
	RunnerName   string    `json:"runner_name,omitempty"`
	Kind         string    `json:"kind"`
	Bucket       int       `json:"bucket"`
	FiredAt      time.Time `json:"fired_at"`
	// MinutesToStart is when the poll that fired it was taken, in minutes
	// before the race's start (negative after it): where its marker goes
	// on the race's hold chart.
	MinutesToStart float64 `json:"minutes_to_start"`
	// Label says what fired it, with its figures.
	Label string `json:"label"`
}

// alertColumns are the stored alert's columns, read into an alerts.Alert.
const alertColumns = `a.race_id, a.entrant_id, a.kind, a.time_interval, a.alert_id::text, a.fired_at, a.time_to_start,
       a.reference_at, coalesce(a.source, ''), a.before_odds::float8, a.after_odds::float8, a.before_cents, a.after_cents,
       a.window_cents, a.before_pct::float8, a.after_pct::float8, a.change_pct::float8, a.ratio::float8`

// sqlRaceAlerts reads a race's alerts along the alerts key, each with its
// runner (a probe of the entrants key).
const sqlRaceAlerts = `
SELECT ` + alertColumns + `, e.runner_number, e.name, r.start_time, '', r.race_number
FROM alerts a
JOIN races r ON r.race_id = a.race_id
LEFT JOIN entrants e ON e.entrant_id = a.entrant_id
WHERE a.race_id = $1
ORDER BY a.fired_at, a.kind, a.entrant_id`

// sqlDayAlerts reads the newest alerts fired within [$1, $2), at most $3,
// along alerts_fired_at_idx; the race, meeting and runner of each are one
// probe of their keys (LIMIT 1 keeps the planner from hashing the tables).
const sqlDayAlerts = `
SELECT ` + alertColumns + `, e.runner_number, e.name, r.start_time, r.meeting_name, r.race_number
FROM alerts a
JOIN LATERAL (
    SELECT r.start_time, r.race_number, m.meeting_name
    FROM races r JOIN meetings m ON m.meeting_id = r.meeting_id
    WHERE r.race_id = a.race_id LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT e.runner_number, e.name FROM entrants e WHERE e.entrant_id = a.entrant_id LIMIT 1
) e ON true
WHERE a.fired_at >= $1 AND a.fired_at < $2
ORDER BY a.fired_at DESC, a.race_id, a.kind, a.entrant_id
LIMIT $3`

// readAlerts runs one of the alert queries.
func (m *Model) readAlerts(ctx context.Context, sql string, args ...any) ([]Alert, error) {
	rows, err := m.deps.DB.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		var a alerts.Alert
		var out1 Alert
		var number *int
		var name *string
		var start time.Time
		err := rows.Scan(&a.RaceID, &a.EntrantID, &a.Kind, &a.Bucket, &out1.ID, &a.FiredAt, &a.MinutesToStart,
			&a.ReferenceAt, &a.Source, &a.BeforeOdds, &a.AfterOdds, &a.BeforeCents, &a.AfterCents, &a.WindowCents,
			&a.BeforePct, &a.AfterPct, &a.ChangePct, &a.Ratio, &number, &name, &start, &out1.Meeting, &out1.RaceNumber)
		if err != nil {
			return nil, err
		}
		out1.RaceID, out1.EntrantID, out1.Kind, out1.Bucket, out1.FiredAt = a.RaceID, a.EntrantID, string(a.Kind), a.Bucket, a.FiredAt
		out1.MinutesToStart = start.Sub(a.FiredAt).Minutes()
		if number != nil {
			out1.RunnerNumber = *number
		}
		if name != nil {
			out1.RunnerName = *name
		}
		f := detect.Fired{Alert: a, Meeting: out1.Meeting, RaceNumber: out1.RaceNumber, RunnerNumber: out1.RunnerNumber,
			RunnerName: out1.RunnerName}
		out1.Label = detect.Summary(&f)
		out = append(out, out1)
	}
	return out, rows.Err()
}
