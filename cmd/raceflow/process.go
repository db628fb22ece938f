package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
)

// errSomeFailed makes the exit code non-zero when any race failed; the
// results were already printed.
var errSomeFailed = errors.New("some races failed")

func runProcess(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("process", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON result per line")
	concurrency := fs.Int("concurrency", 5, "races processed at once")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up waiting after this long")
	namespace := fs.String("namespace", "process", "topic namespace; a running `raceflow run` uses \"race\", and two flows on one namespace would take each other's results")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow process [flags] RACE_ID...")
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	ids := fs.Args()
	if len(ids) == 0 {
		fs.Usage()
		return errUsage
	}
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
	fcfg := flowConfig(cfg)
	fcfg.Namespace = *namespace
	engine, err := flows.New(fcfg, flows.Deps{Pool: pool, Fetcher: client, Logger: log})
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

	waitCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, perr := engine.ProcessRaces(waitCtx, ids, *concurrency)
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		log.WithError(err).Warn("flow shutdown")
	}
	if err := printResults(a, results, *asJSON); err != nil {
		return err
	}
	if perr != nil {
		for _, r := range results {
			if r.Status == handlers.StatusFailed {
				return errSomeFailed
			}
		}
		if waitCtx.Err() != nil {
			return fmt.Errorf("waiting for results: %w", waitCtx.Err())
		}
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
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RACE\tSTATUS\tRACE STATUS\tFETCH ms\tTRANSFORM ms\tWRITE ms\tQUEUE ms\tTOTAL ms\tMONEY FLOW\tODDS\tERROR")
	for _, r := range results {
		errText := ""
		if r.Error != nil {
			errText = fmt.Sprintf("%s/%s: %s", r.Error.Stage, r.Error.Kind, r.Error.Message)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%s\n", r.RaceID, r.Status, r.RaceStatus,
			r.Timings.FetchMS, r.Timings.TransformMS, r.Timings.WriteMS, r.Timings.QueueMS, r.Timings.TotalMS,
			r.Rows.MoneyFlow, r.Rows.Odds, errText)
	}
	return tw.Flush()
}
