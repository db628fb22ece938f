// Package bench measures the pipeline end to end: it runs iterations of a
// batch of races through a flows.Engine, keeps every poll's stage timings
// and each batch's wall time, and reports latency summaries, throughput,
// CPU time and peak memory, with the pass/fail of latency targets. The
// `raceflow bench` command and the CI short run both drive it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
)

// Config shapes one benchmark run. Start from DefaultConfig.
type Config struct {
	// Races polled per iteration (the batch).
	Races int
	// Iterations are the measured batches.
	Iterations int
	// Concurrency is how many polls are in flight at once (Engine.ProcessRaces).
	Concurrency int
	// Warmup batches run before the measured ones and are not recorded:
	// they take the first-poll inserts (meeting, race, entrants) and cold
	// connections and statement caches out of the figures.
	Warmup int
	// Flow configures the engine under test (backend, shards, ...).
	Flow flows.Config
	// IterationTimeout bounds one batch; polls still unanswered then fail.
	IterationTimeout time.Duration
	// SingleTarget, when positive and Races is 1, is the most any poll's
	// total may take.
	SingleTarget time.Duration
	// BatchTarget, when positive, is the most any batch's wall time may take.
	BatchTarget time.Duration
}

// DefaultConfig is one race, ten iterations, one warm-up, the default flow.
func DefaultConfig() Config {
	return Config{
		Races:            1,
		Iterations:       10,
		Concurrency:      1,
		Warmup:           1,
		Flow:             flows.DefaultConfig(),
		IterationTimeout: 2 * time.Minute,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Races < 1 {
		errs = append(errs, fmt.Errorf("bench: races %d must be at least 1", c.Races))
	}
	if c.Iterations < 1 {
		errs = append(errs, fmt.Errorf("bench: iterations %d must be at least 1", c.Iterations))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("bench: concurrency %d must be at least 1", c.Concurrency))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("bench: warmup %d must not be negative", c.Warmup))
	}
	if c.IterationTimeout <= 0 {
		errs = append(errs, errors.New("bench: iteration timeout must be positive"))
	}
	if c.SingleTarget < 0 || c.BatchTarget < 0 {
		errs = append(errs, errors.New("bench: targets must not be negative"))
	}
	if err := c.Flow.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Progress is where a run stands; Done counts answered polls of the
// current phase (warm-up or measured).
type Progress struct {
	Warmup     bool
	Iteration  int // 1-based within the phase
	Iterations int
	Done       int
	Total      int
}

// Deps are what a run polls and writes to.
type Deps struct {
	Pool    *pgxpool.Pool
	Fetcher handlers.Fetcher
	Logger  logrus.FieldLogger
	// RaceIDs are the races polled; each batch takes the first Config.Races.
	RaceIDs []string
	// BeforeIteration, when set, runs before every batch (warm-up included);
	// the simulator advances its clock here so each poll sees new data.
	BeforeIteration func()
	// APICPU, when set, reports the CPU time an in-process API has used so
	// far, to separate it from the pipeline's.
	APICPU func() time.Duration
	// Progress, when set, is called as polls are answered. It must not block.
	Progress func(Progress)
}

// Run starts an engine, runs the warm-up and measured batches and reports.
// The error is for a run that could not take place; failed polls and missed
// targets are in the report (see Report.Passed).
func Run(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(deps.RaceIDs) < cfg.Races {
		return nil, fmt.Errorf("bench: %d races asked for, %d race ids given", cfg.Races, len(deps.RaceIDs))
	}
	if deps.Pool == nil || deps.Fetcher == nil || deps.Logger == nil {
		return nil, errors.New("bench: Deps needs Pool, Fetcher and Logger")
	}
	ids := deps.RaceIDs[:cfg.Races]
	before := deps.BeforeIteration
	if before == nil {
		before = func() {}
	}
	apiCPU := deps.APICPU
	if apiCPU == nil {
		apiCPU = func() time.Duration { return 0 }
	}

	engine, err := flows.New(cfg.Flow, flows.Deps{
		Pool: deps.Pool, Fetcher: deps.Fetcher, Logger: deps.Logger, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		return nil, err
	}
	var phase atomic.Pointer[Progress]
	var answered atomic.Int64
	engine.OnResult(func(r handlers.ProcessResult) {
		p := phase.Load()
		if r.Replay || p == nil || deps.Progress == nil {
			return
		}
		q := *p
		q.Done = int(answered.Add(1))
		deps.Progress(q)
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- engine.Run(runCtx) }()
	select {
	case <-engine.Running():
	case err := <-done:
		return nil, fmt.Errorf("bench: flow stopped before it ran: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// The flow's namespace is the benchmark's own: its topics go with it.
	stopEngine := func() error {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("bench: flow shutdown: %w", err)
		}
		if err := flows.DropNamespace(context.WithoutCancel(ctx), cfg.Flow, deps.Pool, deps.Logger); err != nil {
			return fmt.Errorf("bench: drop the benchmark's topics: %w", err)
		}
		return nil
	}

	rep := &Report{Metadata: newMetadata(cfg)}
	batch := func(warmup bool, k, of int) ([]RaceRun, time.Duration, error) {
		before()
		answered.Store(0)
		phase.Store(&Progress{Warmup: warmup, Iteration: k, Iterations: of, Total: len(ids)})
		bctx, cancel := context.WithTimeout(ctx, cfg.IterationTimeout)
		defer cancel()
		start := time.Now()
		results, perr := engine.ProcessRaces(bctx, ids, cfg.Concurrency)
		wall := time.Since(start)
		if ctx.Err() != nil {
			return nil, wall, ctx.Err()
		}
		return runsOf(k, ids, results, perr), wall, nil
	}

	for k := 1; k <= cfg.Warmup; k++ {
		runs, _, err := batch(true, k, cfg.Warmup)
		if err != nil {
			return nil, errors.Join(err, stopEngine())
		}
		rep.Warmup.Iterations++
		for _, r := range runs {
			rep.Warmup.Polls++
			if !r.Success {
				rep.Warmup.Failed++
			}
		}
	}

	rep.Resources.PeakRSSMeasuredPhase = resetPeakRSS()
	rep.Resources.StartRSSMB = mb(currentRSS())
	pool0 := deps.Pool.Stat()
	peakConns := samplePeak(ctx, func() int32 { return deps.Pool.Stat().AcquiredConns() })
	cpu0, api0 := processCPU(), apiCPU()
	db0 := startDBCPU(ctx, deps.Pool)
	busy0, total0 := machineTicks()
	rep.Metadata.StartedAt = time.Now().UTC()
	rep.Metadata.LoadAvg = loadAvg()
	rep.Metadata.DBConnection = connection(ctx, deps.Pool)
	for k := 1; k <= cfg.Iterations; k++ {
		runs, wall, err := batch(false, k, cfg.Iterations)
		if err != nil {
			return nil, errors.Join(err, stopEngine())
		}
		it := Iteration{Iteration: k, WallMS: ms(wall), Polls: len(runs)}
		for _, r := range runs {
			if !r.Success {
				it.Failed++
			}
		}
		rep.Iterations = append(rep.Iterations, it)
		rep.Runs = append(rep.Runs, runs...)
	}
	rep.Metadata.FinishedAt = time.Now().UTC()
	cpu, api := processCPU()-cpu0, apiCPU()-api0
	dbCPU, dbMeasured := db0.since(ctx)
	if busy1, total1 := machineTicks(); total1 > total0 {
		rep.Resources.MachineBusyPct = 100 * float64(busy1-busy0) / float64(total1-total0)
	}
	rep.Resources.PeakRSSMB = mb(peakRSS())
	pool1 := deps.Pool.Stat()
	rep.Pool = PoolStats{
		MaxConns: pool1.MaxConns(), PeakAcquired: peakConns(),
		Acquires:       pool1.AcquireCount() - pool0.AcquireCount(),
		WaitedAcquires: pool1.EmptyAcquireCount() - pool0.EmptyAcquireCount(),
		WaitMS:         ms(pool1.EmptyAcquireWaitTime() - pool0.EmptyAcquireWaitTime()),
	}
	phase.Store(nil)
	if err := stopEngine(); err != nil {
		deps.Logger.WithError(err).Warn("bench: flow shutdown")
	}
	rep.finish(cfg, cpu, api)
	if dbMeasured && rep.Throughput.Polls > 0 {
		rep.Resources.DBCPUMeasured = true
		rep.Resources.DBCPUMS = ms(dbCPU)
		rep.Resources.DBCPUMSPerPoll = ms(dbCPU) / float64(rep.Throughput.Polls)
	}
	return rep, nil
}

// samplePeakEvery is how often the pool's connections in use are sampled.
const samplePeakEvery = 2 * time.Millisecond

// samplePeak samples f until the returned function is called, which
// returns the largest value seen.
func samplePeak(ctx context.Context, f func() int32) func() int32 {
	ctx, cancel := context.WithCancel(ctx)
	peak := make(chan int32, 1)
	go func() {
		t := time.NewTicker(samplePeakEvery)
		defer t.Stop()
		m := f()
		for {
			select {
			case <-ctx.Done():
				peak <- m
				return
			case <-t.C:
				m = max(m, f())
			}
		}
	}()
	return func() int32 {
		cancel()
		return <-peak
	}
}

// runsOf turns one batch's results into runs. A poll the batch gave up on
// has no result of its own: it is a failure with the batch's error.
func runsOf(iteration int, ids []string, results []handlers.ProcessResult, batchErr error) []RaceRun {
	runs := make([]RaceRun, len(ids))
	for i, id := range ids {
		r := results[i]
		run := RaceRun{
			Iteration: iteration, RaceID: id, PollID: r.PollID, Status: r.Status, RaceStatus: r.RaceStatus,
			Success: r.Status == handlers.StatusSuccess,
			TotalMS: r.Timings.TotalMS, FetchMS: r.Timings.FetchMS, TransformMS: r.Timings.TransformMS,
			WriteMS: r.Timings.WriteMS, DetectMS: r.Timings.DetectMS, QueueMS: r.Timings.QueueMS,
		}
		switch {
		case r.Error != nil:
			run.ErrorType = r.Error.Stage + "/" + r.Error.Kind
			run.ErrorMessage = r.Error.Message
		case !run.Success:
			if run.Status == "" {
				run.Status = handlers.StatusFailed
			}
			run.ErrorType = "unanswered"
			run.ErrorMessage = "no result before the iteration ended"
			if batchErr != nil {
				run.ErrorMessage += ": " + firstLine(batchErr.Error())
			}
		}
		runs[i] = run
	}
	return runs
}

func newMetadata(cfg Config) Metadata {
	return Metadata{
		Backend: cfg.Flow.Backend, Shards: cfg.Flow.Shards, PollIntervalMS: ms(cfg.Flow.Postgres.FallbackPoll),
		Races: cfg.Races, Iterations: cfg.Iterations, Concurrency: cfg.Concurrency, Warmup: cfg.Warmup,
		SingleTargetMS: ms(cfg.SingleTarget), BatchTargetMS: ms(cfg.BatchTarget),
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
