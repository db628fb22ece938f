package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgembed"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

func runDemo(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	minutes := fs.Float64("minutes", 2, "how long to run, in real minutes")
	speed := fs.Float64("speed", 30, "simulated seconds per real second")
	seed := fs.Int64("seed", 1, "simulator seed")
	meetings := fs.Int("meetings", 4, "simulated NZ/AUS horse meetings")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow demo [flags]\n\nRuns the whole continuous pipeline on a simulated race day at accelerated time.\nWith DATABASE_URL unset it starts a private PostgreSQL and removes it afterwards.")
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	if *minutes <= 0 || *speed <= 0 {
		return fmt.Errorf("%w: --minutes and --speed must be positive", errUsage)
	}
	tty := isTerminal(a.stdout)
	log := newLogger(cfg, a.stderr)
	if a.getenv("LOG_LEVEL") == "" {
		// The progress display and summary say what the logs would; slow-poll
		// warnings at accelerated time would drown them.
		log.SetLevel(logrus.ErrorLevel)
	}
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }

	// A database: the configured one, or a private server.
	private := cfg.DatabaseURL == ""
	if private {
		say("starting a private PostgreSQL (DATABASE_URL is unset) ...")
		srv, err := pgembed.Start(ctx, pgembed.Config{})
		if err != nil {
			return err
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintf(a.stderr, "stopping the private PostgreSQL: %v\n", err)
			}
		}()
		if cfg.DatabaseURL, err = createDatabase(ctx, srv.URL(), "raceflow"); err != nil {
			return err
		}
	}
	say("database: %s", config.RedactDSN(cfg.DatabaseURL))

	// The simulator, on simulated time from 15 minutes before the first race.
	today := nzday.Of(time.Now())
	clock := nztabsim.NewSpeedClock(today.Start().Add(12*time.Hour-15*time.Minute), *speed, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{Seed: *seed, Date: today.String(), Meetings: *meetings, Clock: clock})
	if err != nil {
		return err
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Close()
	apiURL := "http://" + simLn.Addr().String() + "/affiliates/v1"
	say("NZ TAB simulator: %s (seed %d, %gx time, %s)", apiURL, *seed, *speed, today)

	pool, err := openSchema(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	reg, metrics, err := newMetrics()
	if err != nil {
		return err
	}
	client, err := nztab.NewClient(nztab.ClientConfig{
		BaseURL: apiURL, FromEmail: cfg.FromEmail, PartnerName: cfg.PartnerName, PartnerID: cfg.PartnerID,
		Timeout: cfg.FetchTimeout, Now: clock.Now, HTTPClient: &http.Client{Transport: flows.InstrumentTransport(nil, metrics)},
	})
	if err != nil {
		return err
	}
	scfg := flows.DefaultServiceConfig()
	scfg.Flow = flowConfig(cfg)
	scfg.Flow.Namespace = "demo" // never competes with a `raceflow run` on a shared database
	if private && scfg.Flow.Backend == flows.BackendNATS {
		// The private database goes with the demo; its streams go too, or
		// the next demo would start on this one's leftover messages.
		defer func() {
			if err := flows.DeleteNATSStreams(scfg.Flow.NATS, scfg.Flow.Namespace); err != nil {
				fmt.Fprintf(a.stderr, "raceflow demo: clean up the NATS streams: %v\n", err)
			}
		}()
	}
	scfg.LeaderKey++
	scfg.Schedule.MaxInFlight = 12
	scfg.DrainTimeout = 10 * time.Second
	svc, err := flows.NewService(scfg, flows.ServiceDeps{Pool: pool, API: client, Logger: log, Clock: clock,
		Registry: reg, Metrics: metrics})
	if err != nil {
		return err
	}

	// Metrics and health, as `run` serves them; a busy port only loses those.
	if ln, err := net.Listen("tcp", cfg.HTTPAddr); err != nil {
		say("metrics: not served (%v)", err)
	} else {
		metricsSrv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = metricsSrv.Serve(ln) }()
		defer metricsSrv.Close()
		say("metrics: http://%s/metrics", ln.Addr())
	}

	runCtx, cancel := context.WithTimeout(ctx, time.Duration(*minutes*float64(time.Minute)))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	started := time.Now()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	var runErr error
loop:
	for {
		select {
		case runErr = <-done:
			break loop
		case <-progress.C:
			line := progressLine(svc, clock.Now(), time.Since(started))
			if tty {
				fmt.Fprintf(a.stdout, "\r\033[K%s", line)
			} else if int(time.Since(started).Seconds())%10 == 0 {
				say("%s", line)
			}
		}
	}
	if tty {
		fmt.Fprintln(a.stdout)
	}
	if runErr != nil {
		return runErr
	}
	return demoSummary(ctx, a.stdout, svc, pool, time.Since(started))
}

func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to the private PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func progressLine(svc *flows.Service, simNow time.Time, elapsed time.Duration) string {
	st := svc.Scheduler().Stats()
	counts := svc.Metrics().Counts()
	sum := svc.Metrics().Summaries()
	return fmt.Sprintf("[%s real, sim %s NZ] races tracked %d finished %d | polls %d ok %d skipped %d failed %d | total p50 %.1f ms p95 %.1f ms",
		elapsed.Round(time.Second), simNow.In(nzday.Location()).Format("15:04:05"), st.Tracked, st.Finished,
		counts[handlers.StatusSuccess]+counts[handlers.StatusSkipped]+counts[handlers.StatusFailed],
		counts[handlers.StatusSuccess], counts[handlers.StatusSkipped], counts[handlers.StatusFailed],
		sum["total"].P50, sum["total"].P95)
}

// errDemoFailed means polls failed during the demo; the summary shows which.
var errDemoFailed = errors.New("some polls failed")

func demoSummary(ctx context.Context, w io.Writer, svc *flows.Service, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, elapsed time.Duration) error {
	counts := svc.Metrics().Counts()
	st := svc.Scheduler().Stats()
	fmt.Fprintf(w, "\nraceflow demo: %s real time\n\n", elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLLS\tSUCCESS\tSKIPPED\tFAILED\tRACES TRACKED\tRACES FINISHED")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", counts[handlers.StatusSuccess]+counts[handlers.StatusSkipped]+counts[handlers.StatusFailed],
		counts[handlers.StatusSuccess], counts[handlers.StatusSkipped], counts[handlers.StatusFailed], st.Tracked, st.Finished)
	_ = tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE (ms)\tMIN\tAVG\tP50\tP95\tP99\tMAX\t")
	sums := svc.Metrics().Summaries()
	for _, stage := range []string{"fetch", "transform", "write", "queue", "total"} {
		s := sums[stage]
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", stage, s.Min, s.Avg, s.P50, s.P95, s.P99, s.Max)
	}
	_ = tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TABLE\tROWS\t")
	tables := []string{"meetings", "races", "entrants", "race_pools", "race_results", "race_polls", "money_flow_history", "odds_history"}
	sort.Strings(tables)
	for _, t := range tables {
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return fmt.Errorf("summary: count %s: %w", t, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t\n", t, n)
	}
	_ = tw.Flush()
	if counts[handlers.StatusSuccess] == 0 {
		return errors.New("no poll succeeded")
	}
	if counts[handlers.StatusFailed] > 0 {
		return errDemoFailed
	}
	return nil
}
