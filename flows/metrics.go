package flows

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/handlers"
)

// Metrics are raceflow's own Prometheus metrics, fed by every poll result,
// plus a bounded sample of latencies for summaries (demo, bench).
type Metrics struct {
	stage    *prometheus.HistogramVec
	polls    *prometheus.CounterVec
	rows     *prometheus.CounterVec
	failures *prometheus.CounterVec

	mu      sync.Mutex
	samples map[string][]float64
	counts  map[string]int
}

// maxSamples bounds the memory of the latency sample per stage.
const maxSamples = 100_000

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raceflow", Name: "stage_duration_seconds",
			Help:    "Duration of each stage of a poll (fetch, transform, write), the time queued between stages, and the total.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"stage", "outcome"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "polls_total", Help: "Polls by final status.",
		}, []string{"status"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "rows_written_total", Help: "Rows inserted or changed, by table.",
		}, []string{"table"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "poll_failures_total", Help: "Failed or skipped polls by stage and kind.",
		}, []string{"stage", "kind", "status"}),
		samples: map[string][]float64{},
		counts:  map[string]int{},
	}
	for _, c := range []prometheus.Collector{m.stage, m.polls, m.rows, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("flows: register metrics: %w", err)
		}
	}
	return m, nil
}

// Observe records one poll result.
func (m *Metrics) Observe(r handlers.ProcessResult) {
	m.polls.WithLabelValues(r.Status).Inc()
	if r.Error != nil {
		m.failures.WithLabelValues(r.Error.Stage, r.Error.Kind, r.Status).Inc()
	}
	for table, n := range map[string]int{
		"meetings": r.Rows.Meetings, "races": r.Rows.Races, "entrants": r.Rows.Entrants, "race_pools": r.Rows.RacePools,
		"money_flow_history": r.Rows.MoneyFlow, "odds_history": r.Rows.Odds, "race_results": r.Rows.Results,
	} {
		if n > 0 {
			m.rows.WithLabelValues(table).Add(float64(n))
		}
	}
	stages := map[string]float64{
		handlers.StageFetch: r.Timings.FetchMS, handlers.StageTransform: r.Timings.TransformMS,
		handlers.StageWrite: r.Timings.WriteMS, "queue": r.Timings.QueueMS, "total": r.Timings.TotalMS,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[r.Status]++
	for stage, ms := range stages {
		m.stage.WithLabelValues(stage, r.Status).Observe(ms / 1000)
		if r.Status == handlers.StatusSuccess && len(m.samples[stage]) < maxSamples {
			m.samples[stage] = append(m.samples[stage], ms)
		}
	}
}

// Counts returns the number of polls by status so far.
func (m *Metrics) Counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}

// Summary of one stage's latency in milliseconds over successful polls.
type Summary struct {
	N                            int
	Min, Avg, P50, P95, P99, Max float64
}

// Summaries returns latency summaries by stage (fetch, transform, write, queue, total).
func (m *Metrics) Summaries() map[string]Summary {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Summary{}
	for stage, xs := range m.samples {
		out[stage] = Summarize(xs)
	}
	return out
}

// Summarize computes min, avg, nearest-rank percentiles and max.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return Summary{N: len(s), Min: s[0], Avg: sum / float64(len(s)), P50: rank(.50), P95: rank(.95), P99: rank(.99), Max: s[len(s)-1]}
}
