package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
)

// errSomeFailed makes the exit code 1 when any race failed; the results
// were already printed.
var errSomeFailed = errors.New("some races failed")

func (a *app) processCommand() *cobra.Command {
	var (
		asJSON      bool
		concurrency int
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "process RACE_ID...",
		Short: "poll the given races now through the whole flow and print one result each",
		Long: `Polls the given races now through the whole flow (fetch → transform → write) and
prints one result per race: a table, or JSON lines with --json. It runs on the
same flow as raceflow run, replay and poison (RACEFLOW_NAMESPACE), so its polls
can be replayed and a poll that fails for good shows in raceflow poison list.
Find race ids with raceflow races.

Exit code 0 when every race was processed, 1 when any failed (or no result came
within --timeout), 3 when none failed but some were skipped (a race the API does
not know, or an API that could not be reached).`,
		Example: `  raceflow process 0f57e087-8bb4-4a2e-b9b1-0b3d0d5d6a44 --json`,
		Args:    operands("a RACE_ID", 1, -1),
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print one JSON result per line")
	fs.IntVar(&concurrency, "concurrency", 5, "races processed at once")
	fs.DurationVar(&timeout, "timeout", 2*time.Minute, "give up waiting for results after this long")
	set := a.bindConfig(cmd, config.FlagDatabase|config.FlagAPI|config.FlagBackend|config.FlagNamespace|config.FlagShards|config.FlagLog|config.FlagAlerts)
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		if concurrency < 1 {
			return usagef("--concurrency must be at least 1, got %d", concurrency)
		}
		if timeout <= 0 {
			return usagef("--timeout must be positive, got %s", timeout)
		}
		return a.process(cmd.Context(), cfg, ids, concurrency, timeout, asJSON)
	}
	return cmd
}

func (a *app) process(ctx context.Context, cfg config.Config, ids []string, concurrency int, timeout time.Duration, asJSON bool) error {
	log := newLogger(cfg, a.stderr)
	pool, err := openSchema(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := newAPIClient(cfg, nil)
	if err != nil {
		return err
	}
	// The flow every command shares (RACEFLOW_NAMESPACE): its stored
	// fetches and poison queue are where replay and poison look.
	engine, err := flows.New(flowConfig(cfg), flows.Deps{Pool: pool, Fetcher: client, Logger: log})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- engine.Run(runCtx) }()
	select {
	case <-engine.Running():
	case err := <-done:
		return fmt.Errorf("flow stopped before it ran: %w", err)
	}

	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results, _ := engine.ProcessRaces(waitCtx, ids, concurrency) // each result says how it ended
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		log.WithError(err).Warn("flow shutdown")
	}
	if err := printResults(a, results, asJSON); err != nil {
		return err
	}
	return processOutcome(results, waitCtx.Err())
}

// processOutcome is the verdict on a batch: a failed race (or one left
// without a result when waiting ended) fails it, else a skipped race makes
// it "skipped".
func processOutcome(results []handlers.ProcessResult, waitErr error) error {
	var failed, skipped int
	for _, r := range results {
		switch r.Status {
		case handlers.StatusFailed:
			failed++
		case handlers.StatusSkipped:
			skipped++
		}
	}
	switch {
	case failed > 0 && waitErr != nil:
		return fmt.Errorf("%w: %d of %d (waiting for results: %v)", errSomeFailed, failed, len(results), waitErr)
	case failed > 0:
		return fmt.Errorf("%w: %d of %d", errSomeFailed, failed, len(results))
	case skipped > 0:
		return skippedf("%d of %d races skipped (see the results)", skipped, len(results))
	}
	return nil
}

// newAPIClient builds the NZ TAB client; with m set, every API attempt is
// counted by response class.
func newAPIClient(cfg config.Config, m *flows.Metrics) (*nztab.Client, error) {
	return nztab.NewClient(nztab.ClientConfig{
		BaseURL:     cfg.APIURL,
		FromEmail:   cfg.FromEmail,
		PartnerName: cfg.PartnerName,
		PartnerID:   cfg.PartnerID,
		Timeout:     cfg.FetchTimeout,
		HTTPClient:  &http.Client{Transport: flows.InstrumentTransport(nil, m)},
	})
}

// newMetrics is the registry `run` and `demo` serve: Go and process
// collectors, Watermill's router metrics (added by the flow) and ours.
func newMetrics() (*prometheus.Registry, *flows.Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := flows.NewMetrics(reg)
	return reg, m, err
}

func printResults(a *app, results []handlers.ProcessResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		for _, r := range results {
			t := &r.Timings // to the µs: 49.125478000000044 is float noise
			for _, ms := range []*float64{&t.FetchMS, &t.TransformMS, &t.WriteMS, &t.DetectMS, &t.QueueMS, &t.TotalMS} {
				*ms = math.Round(*ms*1000) / 1000
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RACE\tSTATUS\tRACE STATUS\tFETCH ms\tTRANSFORM ms\tWRITE ms\tDETECT ms\tQUEUE ms\tTOTAL ms\tMONEY FLOW\tODDS\tALERTS\tERROR")
	for _, r := range results {
		errText := ""
		if r.Error != nil {
			// A stage's message already starts with the stage and kind.
			errText = r.Error.Message
			if !strings.HasPrefix(errText, r.Error.Stage) {
				errText = fmt.Sprintf("%s/%s: %s", r.Error.Stage, r.Error.Kind, errText)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%s\n", r.RaceID, r.Status, r.RaceStatus,
			r.Timings.FetchMS, r.Timings.TransformMS, r.Timings.WriteMS, r.Timings.DetectMS, r.Timings.QueueMS, r.Timings.TotalMS,
			r.Rows.MoneyFlow, r.Rows.Odds, r.Rows.Alerts, errText)
	}
	return tw.Flush()
}
