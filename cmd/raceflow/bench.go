package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/bench"
	"github.com/raceflow/raceflow/internal/devdb"
	"github.com/raceflow/raceflow/internal/progress"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// errBenchFailed makes the exit code 1 when a poll failed or a target was
// missed; the report says which.
var errBenchFailed = errors.New("benchmark failed")

// benchFlags are the settings of `raceflow bench`.
type benchFlags struct {
	races, iterations, concurrency, warmup int
	out, formats                           string
	apiLatency, singleTarget, batchTarget  time.Duration
	timeout, pollInterval                  time.Duration
	seed                                   int64
	freshDB                                bool
}

func (a *app) benchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench [RACE_ID...]",
		Short: "measure the pipeline: per-stage latency, batch wall time, throughput",
		Long: `Polls races through the whole flow, --iterations batches of --races, and reports
per-stage latency, batch wall time, throughput, CPU and memory. The API is an
in-process simulator (16-runner races) unless NZTAB_API_URL or --api-url is set;
race ids may then be given. With DATABASE_URL unset it starts a private PostgreSQL
and removes it afterwards.

Exit code 1 when a poll fails or a target is missed.`,
		Args: operands("a RACE_ID", 0, -1),
	}
	fs := cmd.Flags()
	fs.IntVar(&f.races, "races", 1, "races polled per iteration (the batch)")
	fs.IntVar(&f.iterations, "iterations", 10, "measured iterations (batches)")
	fs.IntVar(&f.concurrency, "concurrency", 1, "polls in flight at once")
	fs.IntVar(&f.warmup, "warmup", 1, "unrecorded warm-up iterations before the measured ones")
	fs.DurationVar(&f.apiLatency, "api-latency", 0, "delay the in-process simulator adds to every response")
	fs.StringVar(&f.out, "out", "bench-results", "directory for the report files")
	fs.StringVar(&f.formats, "formats", "json,csv", "report files to write: json, csv (comma-separated; empty for none)")
	fs.DurationVar(&f.singleTarget, "single-target", 0, "with --races 1: fail when any poll's total exceeds this (0: no check)")
	fs.DurationVar(&f.batchTarget, "batch-target", 0, "fail when any iteration's batch wall time exceeds this (0: no check)")
	fs.Int64Var(&f.seed, "seed", 1, "first simulator seed (further seeds add races as needed)")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up on an iteration's unanswered polls after this long")
	fs.DurationVar(&f.pollInterval, "fallback-poll", flows.DefaultConfig().Postgres.FallbackPoll, "postgres backend: how often an idle subscription looks for work it was not woken for")
	fs.BoolVar(&f.freshDB, "fresh-db", true, "with DATABASE_URL: run in a fresh database on that server, dropped afterwards")
	set := a.bindConfig(cmd, config.FlagDatabase|config.FlagAPI|config.FlagBackend|config.FlagShards|config.FlagLog)
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		apiSet := a.getenv("NZTAB_API_URL") != "" || cmd.Flags().Changed("api-url")
		return a.bench(cmd.Context(), cfg, f, apiSet, ids)
	}
	return cmd
}

func (a *app) bench(ctx context.Context, cfg config.Config, f benchFlags, apiSet bool, ids []string) error {
	outFormats, err := bench.ParseFormats(f.formats)
	if err != nil {
		return usagef("%v", err)
	}
	bcfg := bench.DefaultConfig()
	bcfg.Races, bcfg.Iterations, bcfg.Concurrency, bcfg.Warmup = f.races, f.iterations, f.concurrency, f.warmup
	bcfg.IterationTimeout, bcfg.SingleTarget, bcfg.BatchTarget = f.timeout, f.singleTarget, f.batchTarget
	bcfg.Flow.Backend, bcfg.Flow.Shards, bcfg.Flow.Postgres.FallbackPoll = cfg.Backend, cfg.Shards, f.pollInterval
	// A namespace of its own, whose topics are dropped afterwards: never
	// competes with a `raceflow run` on a shared database or broker.
	bcfg.Flow.Namespace = "bench-" + strings.ToLower(watermill.NewShortUUID())
	bcfg.Flow.NATS.URL = cfg.NATSURL
	if err := bcfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if apiSet && f.apiLatency > 0 {
		return usagef("--api-latency applies to the in-process simulator; use raceflow simulate --latency")
	}
	if !apiSet && len(ids) > 0 {
		return usagef("race ids are for an external API (NZTAB_API_URL); the simulator picks its own")
	}
	if f.apiLatency < 0 {
		return usagef("--api-latency must not be negative")
	}

	log := newLogger(cfg, a.stderr)
	if cfg.LogLevel == "info" && a.getenv("LOG_LEVEL") == "" {
		log.SetLevel(logrus.WarnLevel) // per-poll info logs would cost what we measure
	}
	say := func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) }

	db, err := devdb.Open(ctx, cfg.DatabaseURL, f.freshDB, fmt.Sprintf("raceflow_bench_%d", time.Now().UnixNano()), say)
	if err != nil {
		if cfg.DatabaseURL != "" && f.freshDB {
			err = fmt.Errorf("%w (or run with --fresh-db=false to use DATABASE_URL as it is)", err)
		}
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			fmt.Fprintf(a.stderr, "raceflow bench: clean up the database: %v\n", err)
		}
	}()
	cfg.DatabaseURL = db.URL
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
		deps.RaceIDs = ids
		if len(deps.RaceIDs) == 0 {
			say("choosing %s from %s ...", bench.Plural(f.races, "open race"), cfg.APIURL)
			picked, err := bench.SelectRaces(ctx, client, nzday.Of(time.Now()).String(), f.races, 0)
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
		if len(deps.RaceIDs) < f.races {
			return usagef("%d race ids given, --races is %d", len(deps.RaceIDs), f.races)
		}
		apiDesc = cfg.APIURL
	} else {
		sim, err := bench.NewSim(bench.SimConfig{Seed: f.seed, Races: f.races, Steps: f.warmup + f.iterations, Latency: f.apiLatency})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			_ = srv.Close()
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(a.stderr, "raceflow bench: the simulator's server: %v\n", err)
			}
		}()
		client, err := nztab.NewClient(nztab.ClientConfig{
			BaseURL: "http://" + ln.Addr().String() + "/affiliates/v1", FromEmail: cfg.FromEmail,
			PartnerName: cfg.PartnerName, PartnerID: cfg.PartnerID, Timeout: cfg.FetchTimeout,
			// Polls are stamped on the simulator's clock, as the demo's are:
			// 15 s apart and before their race's start, as a live race's
			// would be, so the stored history the detect stage reads has a
			// race day's shape (on the wall clock a run's polls would fall
			// within seconds, long after the simulated start).
			Now: sim.Now,
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
		bench.Plural(f.races, "race"), bench.Plural(f.iterations, "iteration"), f.warmup, f.concurrency, cfg.Backend)
	disp := progress.New(a.stdout, isTerminal(a.stdout), nil)
	deps.Progress = func(p bench.Progress) { disp.Show(bench.ProgressLine(p, 30), p.Final()) }
	rep, err := bench.Run(ctx, bcfg, deps)
	disp.Finish()
	if err != nil {
		return err
	}
	rep.Metadata.Command = benchCommandLine(a.args)
	rep.Metadata.API, rep.Metadata.Seeds, rep.Metadata.Runners = apiDesc, seeds, runners
	rep.Metadata.APILatencyMS = float64(f.apiLatency) / float64(time.Millisecond)
	rep.Metadata.Database, rep.Metadata.DBMaxConns = db.Desc, cfg.DBMaxConns

	var paths []string
	if len(outFormats) > 0 {
		if paths, err = bench.WriteFiles(f.out, outFormats, rep); err != nil {
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

// benchCommandLine is the command as run, with connection passwords hidden.
func benchCommandLine(args []string) string {
	parts := []string{"raceflow"}
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
