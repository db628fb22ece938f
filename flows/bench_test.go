package flows_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/internal/bench"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/stats"
	"github.com/raceflow/raceflow/stages/nztab"
)

// End-to-end benchmarks: one poll through fetch → transform → write with
// every hop on the chosen backend, against the simulator on loopback and a
// fresh database. Each benchmark iteration moves the simulated clock one
// step, so every poll sees new prices and money as a live poll would. The
// stages alone have their own benchmarks (stages/nztab, stages/transform,
// stages/write); `raceflow bench` gives the full report (docs/BENCHMARKS.md).

// benchFlowSteps is how many simulated steps a benchmark may advance
// before the clock stands still (about 4 h of simulated trading).
const benchFlowSteps = 1000

// benchFlow is a running engine over a simulator with races 16-runner races.
type benchFlow struct {
	engine *flows.Engine
	sim    *bench.Sim
	ids    []string
}

func newBenchFlow(b *testing.B, backend string, races int) *benchFlow {
	b.Helper()
	db := pgtest.New(b)
	sim, err := bench.NewSim(bench.SimConfig{Seed: 1, Races: races, Steps: benchFlowSteps})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	b.Cleanup(srv.Close)
	client, err := nztab.NewClient(nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "bench@example.com", PartnerName: "bench", PartnerID: "bench",
		Timeout: 10 * time.Second,
		Now:     sim.Now, // polls 15 s apart before the start, as `raceflow bench` stamps them
	})
	if err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.WarnLevel)
	cfg := flows.DefaultConfig()
	cfg.Backend = backend
	e, err := flows.New(cfg, flows.Deps{Pool: db.Pool, Fetcher: client, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Running():
	case err := <-done:
		cancel()
		b.Fatalf("flow stopped before running: %v", err)
	}
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Error(err)
		}
	})
	f := &benchFlow{engine: e, sim: sim, ids: sim.RaceIDs()}
	// Warm up: the first poll of a race inserts its meeting, race and
	// entrants, and the connections prepare their statements.
	f.batch(b, 0)
	return f
}

// batch polls every race once, concurrency at a time, and returns the
// batch's wall time and each poll's total milliseconds.
func (f *benchFlow) batch(b *testing.B, concurrency int) (time.Duration, []float64) {
	b.Helper()
	if concurrency < 1 {
		concurrency = len(f.ids)
	}
	f.sim.Advance()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	results, err := f.engine.ProcessRaces(ctx, f.ids, concurrency)
	wall := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	totals := make([]float64, len(results))
	for i, r := range results {
		totals[i] = r.Timings.TotalMS
	}
	return wall, totals
}

// BenchmarkProcessRace is one 16-runner race polled end to end, one poll at
// a time: the latency a caller of ProcessRace sees. p50-ms and p99-ms are
// the pipeline's own total (request to written), nearest rank.
func BenchmarkProcessRace(b *testing.B) {
	for _, backend := range []string{config.BackendPostgres, config.BackendMemory} {
		b.Run("backend="+backend, func(b *testing.B) {
			f := newBenchFlow(b, backend, 1)
			var totals []float64
			for b.Loop() {
				_, t := f.batch(b, 1)
				totals = append(totals, t...)
			}
			s := stats.Summarize(totals)
			b.ReportMetric(s.P50, "p50-ms")
			b.ReportMetric(s.P99, "p99-ms")
		})
	}
}

// BenchmarkProcessRaces100 is the sustained rate: batches of 100 distinct
// 16-runner races, 20 in flight, as a busy race day's scheduler would send
// them. One op is one batch; polls/s is throughput over batch wall time.
func BenchmarkProcessRaces100(b *testing.B) {
	const races, concurrency = 100, 20
	for _, backend := range []string{config.BackendPostgres, config.BackendMemory} {
		b.Run("backend="+backend, func(b *testing.B) {
			f := newBenchFlow(b, backend, races)
			var walls, totals []float64
			var wallSum time.Duration
			for b.Loop() {
				wall, t := f.batch(b, concurrency)
				wallSum += wall
				walls = append(walls, float64(wall)/float64(time.Millisecond))
				totals = append(totals, t...)
			}
			b.ReportMetric(float64(len(totals))/wallSum.Seconds(), "polls/s")
			b.ReportMetric(stats.Summarize(walls).P50, "batch-p50-ms")
			s := stats.Summarize(totals)
			b.ReportMetric(s.P50, "p50-ms")
			b.ReportMetric(s.P99, "p99-ms")
		})
	}
}
