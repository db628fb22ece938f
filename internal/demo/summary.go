package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/stats"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/nzday"
)

// Summary is what a demo did.
type Summary struct {
	Elapsed time.Duration
	// Interrupted is set when the demo was stopped before its duration.
	Interrupted bool
	// Polls counts polls by status.
	Polls map[string]int
	// Tracked and Finished count the races the scheduler tracked and saw
	// finish.
	Tracked, Finished int
	// Stages are latency summaries in milliseconds by stage.
	Stages map[string]stats.Summary
	// Target is the latency target of a poll's total at p95.
	Target time.Duration
	// Rows counts the rows of each domain table.
	Rows map[string]int64
	// Races are the races that reached a result (interim or final), in
	// start order, at most maxRacesShown; MoreRaces counts the rest.
	Races     []FinishedRace
	MoreRaces int
	// Alerts are the day's alerts in the order they fired, each said in one
	// line, at most maxAlertsShown; MoreAlerts counts the rest.
	Alerts     []AlertLine
	MoreAlerts int
}

// AlertLine is one alert of the day.
type AlertLine struct {
	// FiredAt is the observation instant of the poll that fired it.
	FiredAt time.Time
	Summary string
}

// maxAlertsShown bounds the alert lines of a summary.
const maxAlertsShown = 20

// FinishedRace is where the money went in one race that reached a result.
type FinishedRace struct {
	Meeting    string
	RaceNumber int
	Status     string
	// Top are up to three runners with the largest share of the money held
	// on the race (hold %), largest first.
	Top []RunnerHold
	// LateMove is the most money added to one runner's win pool between
	// two polls in the last LateWindow before the start; nil when no
	// money came in then.
	LateMove *MoneyMove
}

// RunnerHold is a runner and its hold %.
type RunnerHold struct {
	Number      int
	Name        string
	HoldPercent float64
}

// MoneyMove is money added to a runner's win pool between two polls.
type MoneyMove struct {
	Number int
	Name   string
	// Cents added to the runner's win pool since the poll before.
	Cents int64
	// MinutesToStart is when it was seen.
	MinutesToStart int
}

// LateWindow is how close to the start money counts as late.
const LateWindow = 5 * time.Minute

// maxRacesShown bounds the per-race lines of a summary.
const maxRacesShown = 12

// summaryTimeout bounds the summary's queries, which also run after an
// interrupt, when the demo's context has ended.
const summaryTimeout = 30 * time.Second

// ErrPollsFailed means polls failed during the demo; the summary shows how
// many.
var ErrPollsFailed = errors.New("demo: some polls failed")

// ErrNothingSucceeded means not one poll succeeded.
var ErrNothingSucceeded = errors.New("demo: no poll succeeded")

// Err is the demo's verdict: nil when polls succeeded and none failed. A
// demo interrupted before its first poll succeeded did nothing wrong.
func (s *Summary) Err() error {
	switch {
	case s.Polls[handlers.StatusFailed] > 0:
		return ErrPollsFailed
	case s.Polls[handlers.StatusSuccess] == 0 && !s.Interrupted:
		return ErrNothingSucceeded
	}
	return nil
}

// TargetMet reports whether the p95 of a poll's total met the target, and
// whether there was anything to measure.
func (s *Summary) TargetMet() (met, measured bool) {
	total := s.Stages["total"]
	if total.N == 0 {
		return false, false
	}
	return total.P95 <= float64(s.Target)/float64(time.Millisecond), true
}

func summarize(ctx context.Context, svc *flows.Service, pool *pgxpool.Pool, elapsed time.Duration, cfg Config) (*Summary, error) {
	// After an interrupt ctx has ended; what was done is still to be told.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), summaryTimeout)
	defer cancel()
	st := svc.Scheduler().Stats()
	s := &Summary{Elapsed: elapsed, Polls: svc.Metrics().Counts(), Tracked: st.Tracked, Finished: st.Finished,
		Stages: svc.Metrics().Summaries(), Target: cfg.LatencyTarget, Rows: map[string]int64{}}
	for _, t := range []string{"meetings", "races", "entrants", "race_pools", "race_results", "race_polls", "money_flow_history", "odds_history", "alerts"} {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("demo: summary: count %s: %w", t, err)
		}
		s.Rows[t] = n
	}
	if err := s.readRaces(ctx, pool); err != nil {
		return nil, fmt.Errorf("demo: summary: finished races: %w", err)
	}
	if err := s.readAlerts(ctx, pool); err != nil {
		return nil, fmt.Errorf("demo: summary: alerts: %w", err)
	}
	return s, nil
}

// readAlerts reads the alerts the demo's polls fired, first fired first.
func (s *Summary) readAlerts(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `
		SELECT a.race_id, a.entrant_id, a.kind, a.time_interval, a.fired_at, a.time_to_start, coalesce(a.source, ''),
		       a.before_odds::float8, a.after_odds::float8, a.before_cents, a.after_cents, a.window_cents,
		       a.before_pct::float8, a.after_pct::float8, a.change_pct::float8, a.ratio::float8,
		       m.meeting_name, r.race_number, e.runner_number, e.name, count(*) OVER ()
		FROM alerts a JOIN races r USING (race_id) JOIN meetings m USING (meeting_id)
		LEFT JOIN entrants e ON e.entrant_id = a.entrant_id
		ORDER BY a.fired_at, m.meeting_name, r.race_number, a.kind, e.runner_number
		LIMIT $1`, maxAlertsShown)
	if err != nil {
		return err
	}
	var total int
	for rows.Next() {
		var f detect.Fired
		var number *int
		var name *string
		if err := rows.Scan(&f.RaceID, &f.EntrantID, &f.Kind, &f.Bucket, &f.FiredAt, &f.MinutesToStart, &f.Source,
			&f.BeforeOdds, &f.AfterOdds, &f.BeforeCents, &f.AfterCents, &f.WindowCents, &f.BeforePct, &f.AfterPct,
			&f.ChangePct, &f.Ratio, &f.Meeting, &f.RaceNumber, &number, &name, &total); err != nil {
			return err
		}
		if number != nil && name != nil {
			f.RunnerNumber, f.RunnerName = *number, *name
		}
		s.Alerts = append(s.Alerts, AlertLine{FiredAt: f.FiredAt, Summary: detect.Summary(&f)})
	}
	s.MoreAlerts = total - len(s.Alerts)
	return rows.Err()
}

// readRaces reads where the money went in each race that reached a result.
func (s *Summary) readRaces(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `
		SELECT r.race_id, m.meeting_name, r.race_number, r.status, count(*) OVER ()
		FROM races r JOIN meetings m USING (meeting_id)
		WHERE r.status IN ('interim', 'final')
		ORDER BY r.start_time, m.meeting_name, r.race_number
		LIMIT $1`, maxRacesShown)
	if err != nil {
		return err
	}
	var ids []string
	index := map[string]int{}
	var total int
	for rows.Next() {
		var id string
		var r FinishedRace
		if err := rows.Scan(&id, &r.Meeting, &r.RaceNumber, &r.Status, &total); err != nil {
			return err
		}
		index[id] = len(s.Races)
		ids = append(ids, id)
		s.Races = append(s.Races, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.MoreRaces = total - len(s.Races)
	if len(ids) == 0 {
		return nil
	}

	rows, err = pool.Query(ctx, `
		SELECT race_id, runner_number, name, hold_percentage::float8
		FROM (SELECT e.*, row_number() OVER (PARTITION BY race_id ORDER BY hold_percentage DESC, runner_number) AS rank
		      FROM entrants e
		      WHERE race_id = ANY($1) AND NOT is_scratched AND hold_percentage IS NOT NULL) ranked
		WHERE rank <= 3
		ORDER BY race_id, rank`, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var h RunnerHold
		if err := rows.Scan(&id, &h.Number, &h.Name, &h.HoldPercent); err != nil {
			return err
		}
		r := &s.Races[index[id]]
		r.Top = append(r.Top, h)
	}
	if err := rows.Err(); err != nil {
		return err
	}

	// The biggest increment of one runner's win-pool money between two
	// polls within LateWindow of the start (time_to_start is in minutes).
	rows, err = pool.Query(ctx, `
		SELECT DISTINCT ON (h.race_id) h.race_id, e.runner_number, e.name, h.incremental_win_amount, h.time_to_start
		FROM money_flow_history h JOIN entrants e ON e.entrant_id = h.entrant_id
		WHERE h.race_id = ANY($1) AND h.time_to_start BETWEEN 0 AND $2 AND h.incremental_win_amount > 0
		ORDER BY h.race_id, h.incremental_win_amount DESC, h.polling_timestamp`, ids, int(LateWindow/time.Minute))
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var m MoneyMove
		if err := rows.Scan(&id, &m.Number, &m.Name, &m.Cents, &m.MinutesToStart); err != nil {
			return err
		}
		s.Races[index[id]].LateMove = &m
	}
	return rows.Err()
}

// Write prints the summary as tables.
func (s *Summary) Write(w io.Writer) error {
	c := s.Polls
	how := "real time"
	if s.Interrupted {
		how += ", interrupted"
	}
	fmt.Fprintf(w, "\nraceflow demo: %s %s\n\n", s.Elapsed.Round(time.Second), how)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLLS\tSUCCESS\tSKIPPED\tFAILED\tRACES TRACKED\tRACES FINISHED")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", c[handlers.StatusSuccess]+c[handlers.StatusSkipped]+c[handlers.StatusFailed],
		c[handlers.StatusSuccess], c[handlers.StatusSkipped], c[handlers.StatusFailed], s.Tracked, s.Finished)
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE (ms)\tMIN\tAVG\tP50\tP95\tP99\tMAX\t")
	for _, stage := range []string{"fetch", "transform", "write", "detect", "queue", "total"} {
		x := s.Stages[stage]
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", stage, x.Min, x.Avg, x.P50, x.P95, x.P99, x.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, s.targetLine())

	if err := s.writeRaces(w); err != nil {
		return err
	}
	s.writeAlerts(w)

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TABLE\tROWS\t")
	tables := make([]string, 0, len(s.Rows))
	for t := range s.Rows {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(tw, "%s\t%d\t\n", t, s.Rows[t])
	}
	return tw.Flush()
}

// targetLine says whether the latencies met the target.
func (s *Summary) targetLine() string {
	target := float64(s.Target) / float64(time.Millisecond)
	met, measured := s.TargetMet()
	switch {
	case !measured:
		return fmt.Sprintf("latency target: total p95 ≤ %.0f ms: no successful poll to measure", target)
	case met:
		return fmt.Sprintf("latency target: total p95 %.1f ms ≤ %.0f ms: met", s.Stages["total"].P95, target)
	}
	return fmt.Sprintf("latency target: total p95 %.1f ms > %.0f ms: MISSED (fewer --meetings or a lower --speed load the machine less)",
		s.Stages["total"].P95, target)
}

// writeRaces prints where the money went in each finished race.
func (s *Summary) writeRaces(w io.Writer) error {
	fmt.Fprintln(w)
	if len(s.Races) == 0 {
		_, err := fmt.Fprintln(w, "no race reached its result yet (a longer demo or a higher --speed gets there)")
		return err
	}
	fmt.Fprintf(w, "FINISHED RACES: the three runners holding most of the money, and the most win-pool money\nadded to one runner between two polls in the last %d minutes before the start\n", int(LateWindow/time.Minute))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RACE\tSTATUS\tTOP THREE BY HOLD %\tBIGGEST LATE MONEY MOVE")
	for _, r := range s.Races {
		top := make([]string, 0, len(r.Top))
		for _, h := range r.Top {
			top = append(top, fmt.Sprintf("#%d %s %.0f%%", h.Number, h.Name, h.HoldPercent))
		}
		late := "-"
		if m := r.LateMove; m != nil {
			late = fmt.Sprintf("#%d %s +%s at %d min", m.Number, m.Name, dollars(m.Cents), m.MinutesToStart)
		}
		fmt.Fprintf(tw, "%s R%d\t%s\t%s\t%s\n", r.Meeting, r.RaceNumber, r.Status, orDash(strings.Join(top, ", ")), late)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.MoreRaces > 0 {
		fmt.Fprintf(w, "... and %d more\n", s.MoreRaces)
	}
	return nil
}

// writeAlerts prints the day's alerts, one line each.
func (s *Summary) writeAlerts(w io.Writer) {
	fmt.Fprintln(w)
	if len(s.Alerts) == 0 {
		fmt.Fprintln(w, "ALERTS: none (no late money moved enough; raceflow simulate --plunge stages one)")
		return
	}
	fmt.Fprintln(w, "ALERTS of the day, as they fired (NZ time of the poll that saw them)")
	for _, a := range s.Alerts {
		fmt.Fprintf(w, "%s  %s\n", a.FiredAt.In(nzday.Location()).Format("15:04:05"), a.Summary)
	}
	if s.MoreAlerts > 0 {
		fmt.Fprintf(w, "... and %d more\n", s.MoreAlerts)
	}
}

// dollars renders cents as $1,234.56.
func dollars(cents int64) string {
	d := fmt.Sprintf("%d", cents/100)
	for i := len(d) - 3; i > 0; i -= 3 {
		d = d[:i] + "," + d[i:]
	}
	return fmt.Sprintf("$%s.%02d", d, cents%100)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
