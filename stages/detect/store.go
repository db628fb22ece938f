package detect

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raceflow/raceflow/stages/alerts"
)

// sqlInsert stores one alert; an alert already stored (a redelivered or
// replayed poll) is left as it is.
const sqlInsert = `
INSERT INTO alerts (race_id, entrant_id, kind, time_interval, alert_id, fired_at, time_to_start, reference_at, source,
    before_odds, after_odds, before_cents, after_cents, window_cents, before_pct, after_pct, change_pct, ratio)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, ''), $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (race_id, entrant_id, kind, time_interval) DO NOTHING`

// sqlRace names the race (one probe of each primary key).
const sqlRace = `
SELECT r.race_number, r.name, m.meeting_name
FROM races r JOIN meetings m ON m.meeting_id = r.meeting_id
WHERE r.race_id = $1`

// store inserts the fired alerts and names them, in one round trip.
func store(ctx context.Context, db DB, raceID string, fired []alerts.Alert, runners map[string]runnerInfo) (Result, error) {
	res := Result{Fired: make([]Fired, len(fired))}
	batch := &pgx.Batch{}
	for i, a := range fired {
		f := &res.Fired[i]
		f.Alert, f.ID = a, a.ID()
		if ri, ok := runners[a.EntrantID]; ok {
			f.RunnerNumber, f.RunnerName = ri.number, ri.name
		}
		batch.Queue(sqlInsert, a.RaceID, a.EntrantID, string(a.Kind), a.Bucket, f.ID, a.FiredAt, a.MinutesToStart,
			a.ReferenceAt, a.Source, a.BeforeOdds, a.AfterOdds, a.BeforeCents, a.AfterCents, a.WindowCents,
			a.BeforePct, a.AfterPct, a.ChangePct, a.Ratio).Exec(func(tag pgconn.CommandTag) error {
			res.Inserted += int(tag.RowsAffected())
			return nil
		})
	}
	var number int
	var name, meeting string
	batch.Queue(sqlRace, raceID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&number, &name, &meeting)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNoRace, raceID)
		}
		return err
	})
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return Result{}, &Error{Op: "store", Err: err}
	}
	for i := range res.Fired {
		f := &res.Fired[i]
		f.Meeting, f.RaceNumber, f.RaceName = meeting, number, name
		f.Summary = Summary(f)
	}
	return res, nil
}

// Summary says an alert in one line: where, who, what moved and when.
func Summary(f *Fired) string {
	var b strings.Builder
	if f.Meeting != "" {
		fmt.Fprintf(&b, "%s R%d ", f.Meeting, f.RaceNumber)
	}
	if f.RunnerNumber > 0 {
		fmt.Fprintf(&b, "#%d %s ", f.RunnerNumber, f.RunnerName)
	}
	b.WriteString(Describe(f.Alert))
	return b.String()
}

// Describe says what an alert's figures mean, without naming the race.
func Describe(a alerts.Alert) string {
	when := fmt.Sprintf("%d min before the start", a.MinutesToStart)
	if a.MinutesToStart < 0 {
		when = fmt.Sprintf("%d min after the start", -a.MinutesToStart)
	}
	f := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	c := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return Dollars(*p)
	}
	switch a.Kind {
	case alerts.KindSteamer, alerts.KindDrifter:
		source := "fixed"
		if a.Source == alerts.SourcePoolWin {
			source = "tote"
		}
		return fmt.Sprintf("%s: %s win %.2f → %.2f (%.1f%% → %.1f%%, %+.1f pts), %s", a.Kind, source,
			f(a.BeforeOdds), f(a.AfterOdds), f(a.BeforePct), f(a.AfterPct), f(a.ChangePct), when)
	case alerts.KindLateMoney:
		ratio := ""
		if a.Ratio != nil {
			ratio = fmt.Sprintf(", %.1f× its share", *a.Ratio)
		}
		var took int64
		if a.AfterCents != nil && a.BeforeCents != nil {
			took = *a.AfterCents - *a.BeforeCents
		}
		return fmt.Sprintf("late money: took %s of %s (%.1f%%, held %.1f%% before%s), %s", Dollars(took), c(a.WindowCents),
			f(a.AfterPct), f(a.BeforePct), ratio, when)
	case alerts.KindPoolSurge:
		return fmt.Sprintf("pool surge: win pool %s → %s (%+.1f%%), %s", c(a.BeforeCents), c(a.AfterCents), f(a.ChangePct), when)
	}
	return string(a.Kind)
}

// Dollars renders cents as $1,234 (whole dollars).
func Dollars(cents int64) string {
	neg := cents < 0
	if neg {
		cents = -cents
	}
	d := fmt.Sprintf("%d", (cents+50)/100)
	for i := len(d) - 3; i > 0; i -= 3 {
		d = d[:i] + "," + d[i:]
	}
	if neg {
		return "-$" + d
	}
	return "$" + d
}
