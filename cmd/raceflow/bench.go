package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/bench"
	"github.com/raceflow/raceflow/internal/pgembed"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// errBenchFailed makes the exit code 1 when a poll failed or a target was
// missed; the report says which.
var errBenchFailed = errors.New("benchmark failed")

func runBench(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	races := fs.Int("races", 1, "races polled per iteration (the batch)")
	iterations := fs.Int("iterations", 10, "measured iterations (batches)")
	concurrency := fs.Int("concurrency", 1, "polls in flight at once")
	warmup := fs.Int("warmup", 1, "unrecorded warm-up iterations before the measured ones")
	backend := fs.String("backend", "", "flow backend: postgres | memory | nats (default: RACEFLOW_PUBSUB, else postgres)")
	apiLatency := fs.Duration("api-latency", 0, "delay the in-process simulator adds to every response")
	out := fs.String("out", "bench-results", "directory for the report files")
	formats := fs.String("formats", "json,csv", "report files to write: json, csv (comma-separated; empty for none)")
	singleTarget := fs.Duration("single-target", 0, "with --races 1: fail when any poll's total exceeds this (0: no check)")
	batchTarget := fs.Duration("batch-target", 0, "fail when any iteration's batch wall time exceeds this (0: no check)")
	seed := fs.Int64("seed", 1, "first simulator seed (further seeds add races as needed)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up on an iteration's unanswered polls after this long")
	pollInterval := fs.Duration("poll-interval", flows.DefaultConfig().PollInterval, "postgres backend: how long an idle subscription waits before asking again")
	freshDB := fs.Bool("fresh-db", true, "with DATABASE_URL: run in a fresh database on that server, dropped afterwards")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow bench [flags] [RACE_ID...]")
		fmt.Fprintln(a.stderr, "\nPolls races through the whole flow, --iterations batches of --races, and reports per-stage")
		fmt.Fprintln(a.stderr, "latency, batch wall time, throughput, CPU and memory. The API is an in-process simulator")
		fmt.Fprintln(a.stderr, "(16-runner races) unless NZTAB_API_URL or --api-url is set; race ids may then be given.")
		fmt.Fprintln(a.stderr, "With DATABASE_URL unset it starts a private PostgreSQL and removes it afterwards.")
		fmt.Fprintln(a.stderr, "Exit code 1 when a poll fails or a target is missed.")
		fmt.Fprintln(a.stderr)
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	// main prints nothing for a usage error: say what was wrong here.
	usage := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(a.stderr, "raceflow bench: %s\n", msg)
		return fmt.Errorf("%w: %s", errUsage, msg)
	}
	apiSet := a.getenv("NZTAB_API_URL") != ""
	fs.Visit(func(f *flag.Flag) { apiSet = apiSet || f.Name == "api-url" })
	if *backend == "" {
		*backend = cfg.PubSub
	}
	outFormats, err := bench.ParseFormats(*formats)
	if err != nil {
		return usage("%v", err)
	}
	bcfg := bench.DefaultConfig()
	bcfg.Races, bcfg.Iterations, bcfg.Concurrency, bcfg.Warmup = *races, *iterations, *concurrency, *warmup
	bcfg.IterationTimeout, bcfg.SingleTarget, bcfg.BatchTarget = *timeout, *singleTarget, *batchTarget
	bcfg.Flow.Backend, bcfg.Flow.Shards, bcfg.Flow.PollInterval = *backend, cfg.Shards, *pollInterval
	bcfg.Flow.Namespace = "bench" // never competes with a `raceflow run` on a shared database
	bcfg.Flow.NATS.URL = cfg.NATSURL
	if *backend == flows.BackendNATS {
		// Streams are server-wide: a namespace of its own, deleted afterwards.
		bcfg.Flow.Namespace = "bench-" + strings.ToLower(watermill.NewShortUUID())
		defer func() {
			if err := flows.DeleteNATSStreams(bcfg.Flow.NATS, bcfg.Flow.Namespace); err != nil {
				fmt.Fprintf(a.stderr, "raceflow bench: clean up the NATS streams: %v\n", err)
			}
		}()
	}
	if err := bcfg.Validate(); err != nil {
		return usage("%v", err)
	}
	if apiSet && *apiLatency > 0 {
		return usage("--api-latency applies to the in-process simulator; use raceflow simulate --latency")
	}
	if !apiSet && fs.NArg() > 0 {
		return usage("race ids are for an external API (NZTAB_API_URL); the simulator picks its own")
	}
	if *apiLatency < 0 {
		return usage("--api-latency must not be negative")
	}

	log := newLogger(cfg, a.stderr)
	if cfg.LogLevel == "info" && a.getenv("LOG_LEVEL") == "" {
		log.SetLevel(logrus.WarnLevel) // per-poll info logs would cost what we measure
	}
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }

	dbDesc, cleanup, err := benchDatabase(ctx, &cfg, *freshDB, say)
	defer func() {
		if err := cleanup(); err != nil {
			fmt.Fprintf(a.stderr, "raceflow bench: clean up the database: %v\n", err)
		}
	}()
	if err != nil {
		return err
	}
	pool, err := openSchema(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	deps := bench.Deps{Pool: pool, Logger: log}
	var apiDesc, runners string
	var seeds []int64
	if apiSet {
		client, err := newAPIClient(cfg, nil)
		if err != nil {
			return err
		}
		deps.Fetcher = client
		deps.RaceIDs = fs.Args()
		if len(deps.RaceIDs) == 0 {
			say("choosing %s from %s ...", bench.Plural(*races, "open race"), cfg.APIURL)
			picked, err := bench.SelectRaces(ctx, client, nzday.Of(time.Now()).String(), *races, 0)
			if err != nil {
				return err
			}
			var sizes []int
			for _, r := range picked {
				deps.RaceIDs = append(deps.RaceIDs, r.ID)
				sizes = append(sizes, r.Runners)
			}
			runners = bench.RunnerRange(sizes)
		}
		if len(deps.RaceIDs) < *races {
			return usage("%d race ids given, --races is %d", len(deps.RaceIDs), *races)
		}
		apiDesc = cfg.APIURL
	} else {
		sim, err := bench.NewSim(bench.SimConfig{Seed: *seed, Races: *races, Steps: *warmup + *iterations, Latency: *apiLatency})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		client, err := nztab.NewClient(nztab.ClientConfig{
			BaseURL: "http://" + ln.Addr().String() + "/affiliates/v1", FromEmail: cfg.FromEmail,
			PartnerName: cfg.PartnerName, PartnerID: cfg.PartnerID, Timeout: cfg.FetchTimeout,
		})
		if err != nil {
			return err
		}
		deps.Fetcher, deps.RaceIDs, deps.APICPU = client, sim.RaceIDs(), sim.CPU
		deps.BeforeIteration = func() { sim.Advance() }
		seeds = sim.Seeds()
		runners = fmt.Sprint(bench.DefaultSimRunners)
		apiDesc = fmt.Sprintf("in-process simulator on loopback, seeds %s", seedRange(seeds))
	}

	say("benchmarking %s × %s (+%d warm-up), concurrency %d, %s backend ...",
		bench.Plural(*races, "race"), bench.Plural(*iterations, "iteration"), *warmup, *concurrency, *backend)
	var bar *bench.ProgressBar
	if isTerminal(a.stdout) {
		bar = bench.NewProgressBar(a.stdout, 30, nil)
		deps.Progress = bar.Update
	} else {
		deps.Progress = func(p bench.Progress) {
			if p.Done == p.Total && !p.Warmup && (p.Iteration%10 == 0 || p.Iteration == p.Iterations) {
				say("%s", bench.ProgressLine(p, 20))
			}
		}
	}
	rep, err := bench.Run(ctx, bcfg, deps)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	rep.Metadata.Command = benchCommandLine(args)
	rep.Metadata.API, rep.Metadata.Seeds, rep.Metadata.Runners = apiDesc, seeds, runners
	rep.Metadata.APILatencyMS = float64(*apiLatency) / float64(time.Millisecond)
	rep.Metadata.Database, rep.Metadata.DBMaxConns = dbDesc, cfg.DBMaxConns

	var paths []string
	if len(outFormats) > 0 {
		if paths, err = bench.WriteFiles(*out, outFormats, rep); err != nil {
			return err
		}
	}
	fmt.Fprintln(a.stdout)
	if err := bench.WriteTable(a.stdout, rep); err != nil {
		return err
	}
	writeFailedRuns(a, rep)
	for _, p := range paths {
		say("wrote %s", p)
	}
	if !rep.Passed() {
		return fmt.Errorf("%w: %s", errBenchFailed, strings.Join(rep.Failures(), "; "))
	}
	return nil
}

// benchDatabase points cfg at the database to run in: a fresh one on a
// private server when DATABASE_URL is unset, a fresh one on DATABASE_URL's
// server when fresh, else DATABASE_URL as it is. cleanup drops what was
// created; call it even on error.
func benchDatabase(ctx context.Context, cfg *config.Config, fresh bool, say func(string, ...any)) (desc string, cleanup func() error, err error) {
	cleanup = func() error { return nil }
	name := fmt.Sprintf("raceflow_bench_%d", time.Now().UnixNano())
	switch {
	case cfg.DatabaseURL == "":
		say("starting a private PostgreSQL (DATABASE_URL is unset) ...")
		srv, err := pgembed.Start(ctx, pgembed.Config{})
		if err != nil {
			return "", cleanup, err
		}
		cleanup = srv.Stop // the server and its data folder go, the database with them
		if cfg.DatabaseURL, err = createDatabase(ctx, srv.URL(), name); err != nil {
			return "", cleanup, err
		}
		return "private PostgreSQL (internal/pgembed), fresh database", cleanup, nil
	case fresh:
		admin := cfg.DatabaseURL
		if cfg.DatabaseURL, err = createDatabase(ctx, admin, name); err != nil {
			return "", cleanup, fmt.Errorf("%w (or run with --fresh-db=false to use DATABASE_URL as it is)", err)
		}
		return config.RedactDSN(cfg.DatabaseURL) + " (fresh, dropped afterwards)", func() error { return dropDatabase(ctx, admin, name) }, nil
	default:
		return config.RedactDSN(cfg.DatabaseURL), cleanup, nil
	}
}

// dropDatabase removes a database the run created, even when ctx was
// cancelled (Ctrl-C must not leave it behind).
func dropDatabase(ctx context.Context, adminURL, name string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(dctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(dctx)
	if _, err := conn.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// benchCommandLine is the command as run, with connection passwords hidden.
func benchCommandLine(args []string) string {
	parts := []string{"raceflow", "bench"}
	for _, a := range args {
		if strings.Contains(a, "://") || strings.Contains(a, "password") {
			a = config.RedactDSN(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func seedRange(seeds []int64) string {
	switch len(seeds) {
	case 0:
		return "-"
	case 1:
		return fmt.Sprint(seeds[0])
	}
	return fmt.Sprintf("%d–%d", seeds[0], seeds[len(seeds)-1])
}

// writeFailedRuns lists the first failed polls, so a failed run says why
// without opening the CSV.
func writeFailedRuns(a *app, rep *bench.Report) {
	shown := 0
	for _, r := range rep.Runs {
		if r.Status == handlers.StatusSuccess {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(a.stdout, "\nfailed polls:")
		}
		if shown == 5 {
			fmt.Fprintf(a.stdout, "  ... %d in all (see the CSV)\n", rep.Throughput.Failed)
			return
		}
		fmt.Fprintf(a.stdout, "  iteration %d race %s: %s %s: %s\n", r.Iteration, r.RaceID, r.Status, r.ErrorType, r.ErrorMessage)
		shown++
	}
}
