package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
)

// Summary is what a demo did.
type Summary struct {
	Elapsed time.Duration
	// Polls counts polls by status.
	Polls map[string]int
	// Tracked and Finished count the races the scheduler tracked and saw
	// finish.
	Tracked, Finished int
	// Stages are latency summaries in milliseconds by stage.
	Stages map[string]flows.Summary
	// Rows counts the rows of each domain table.
	Rows map[string]int64
}

// ErrPollsFailed means polls failed during the demo; the summary shows how
// many.
var ErrPollsFailed = errors.New("demo: some polls failed")

// ErrNothingSucceeded means not one poll succeeded.
var ErrNothingSucceeded = errors.New("demo: no poll succeeded")

// Err is the demo's verdict: nil when polls succeeded and none failed.
func (s *Summary) Err() error {
	switch {
	case s.Polls[handlers.StatusSuccess] == 0:
		return ErrNothingSucceeded
	case s.Polls[handlers.StatusFailed] > 0:
		return ErrPollsFailed
	}
	return nil
}

func summarize(ctx context.Context, svc *flows.Service, pool *pgxpool.Pool, elapsed time.Duration) (*Summary, error) {
	st := svc.Scheduler().Stats()
	s := &Summary{Elapsed: elapsed, Polls: svc.Metrics().Counts(), Tracked: st.Tracked, Finished: st.Finished,
		Stages: svc.Metrics().Summaries(), Rows: map[string]int64{}}
	for _, t := range []string{"meetings", "races", "entrants", "race_pools", "race_results", "race_polls", "money_flow_history", "odds_history"} {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("demo: summary: count %s: %w", t, err)
		}
		s.Rows[t] = n
	}
	return s, nil
}

// Write prints the summary as tables.
func (s *Summary) Write(w io.Writer) error {
	c := s.Polls
	fmt.Fprintf(w, "\nraceflow demo: %s real time\n\n", s.Elapsed.Round(time.Second))
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
	for _, stage := range []string{"fetch", "transform", "write", "queue", "total"} {
		x := s.Stages[stage]
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", stage, x.Min, x.Avg, x.P50, x.P95, x.P99, x.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

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
