package flows

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/stats"
)

// Metrics are raceflow's own Prometheus metrics, fed by every poll result,
// by router middleware and by the API client's transport, plus a bounded
// sample of latencies for summaries (demo, bench). A nil *Metrics is valid
// for the middleware methods: they then add nothing to the chain, so the
// engine can wire them unconditionally.
type Metrics struct {
	stage    *prometheus.HistogramVec
	polls    *prometheus.CounterVec
	rows     *prometheus.CounterVec
	failures *prometheus.CounterVec
	poisoned *prometheus.CounterVec
	retries  *prometheus.CounterVec
	handler  *prometheus.HistogramVec
	api      *prometheus.CounterVec
	apiTime  *prometheus.HistogramVec
	groups   *prometheus.HistogramVec

	mu      sync.Mutex
	samples map[string][]float64
	counts  map[string]int
}

// maxSamples bounds the memory of the latency sample per stage.
const maxSamples = 100_000

// latencyBuckets span a cheap in-memory hop (1 ms) to a poll that has
// waited out the API client's retries (10 s).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raceflow", Name: "stage_duration_seconds",
			Help:    "Duration of each stage of a poll (fetch, transform, write, detect), the time queued between stages, and the total, by the poll's final status.",
			Buckets: latencyBuckets,
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
		poisoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "poisoned_messages_total",
			Help: "Messages moved to the poison queue, by the stage that failed and the kind of failure.",
		}, []string{"stage", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "retries_total",
			Help: "Handler retries of a message after a transient error, by stage and the kind of error retried (API retries are in raceflow_api_responses_total).",
		}, []string{"stage", "reason"}),
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raceflow", Name: "handler_duration_seconds",
			Help:    "Time a stage handler spent on one message, retries and publishing included; outcome nack means the message is redelivered.",
			Buckets: latencyBuckets,
		}, []string{"stage", "outcome"}),
		api: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raceflow", Name: "api_responses_total",
			Help: "NZ TAB API request attempts by outcome class: 2xx, 3xx, 4xx, 5xx, timeout, network or canceled.",
		}, []string{"class"}),
		apiTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raceflow", Name: "api_request_duration_seconds",
			Help:    "Time to the response headers of one NZ TAB API request attempt, by outcome class.",
			Buckets: latencyBuckets,
		}, []string{"class"}),
		groups: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raceflow", Name: "write_transaction_polls",
			Help:    "Polls written in one transaction of the write stage (group commit); outcome fell_back counts groups that failed, whose polls then wrote alone.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}, []string{"outcome"}),
		samples: map[string][]float64{},
		counts:  map[string]int{},
	}
	for _, c := range []prometheus.Collector{m.stage, m.polls, m.rows, m.failures, m.poisoned, m.retries, m.handler, m.api, m.apiTime, m.groups} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("flows: register metrics: %w", err)
		}
	}
	m.exportKnownSeries()
	return m, nil
}

// exportKnownSeries creates, at 0, the series of the counters alerts watch
// (poisoned messages, poll failures, retries) for every label set known up
// front, and each poll status: an alert on increase() needs a series to
// exist before its first increment, or the first failure goes unseen.
func (m *Metrics) exportKnownSeries() {
	for _, st := range []string{handlers.StatusSuccess, handlers.StatusSkipped, handlers.StatusFailed} {
		m.polls.WithLabelValues(st)
	}
	for _, f := range handlers.Failures() {
		m.failures.WithLabelValues(f.Stage, f.Kind, f.Status)
		if f.Status == handlers.StatusFailed {
			m.poisoned.WithLabelValues(f.Stage, f.Kind)
		}
		if f.Retried {
			m.retries.WithLabelValues(f.Stage, f.Kind)
		}
	}
}

// Observe records one poll result. A failed poll is a poisoned message: the
// outcome middleware fails only what goes on to the poison queue.
func (m *Metrics) Observe(r handlers.ProcessResult) {
	m.polls.WithLabelValues(r.Status).Inc()
	if r.Error != nil {
		m.failures.WithLabelValues(r.Error.Stage, r.Error.Kind, r.Status).Inc()
		if r.Status == handlers.StatusFailed {
			m.poisoned.WithLabelValues(r.Error.Stage, r.Error.Kind).Inc()
		}
	}
	for table, n := range map[string]int{
		"meetings": r.Rows.Meetings, "races": r.Rows.Races, "entrants": r.Rows.Entrants, "race_pools": r.Rows.RacePools,
		"money_flow_history": r.Rows.MoneyFlow, "odds_history": r.Rows.Odds, "race_results": r.Rows.Results,
		"alerts": r.Rows.Alerts,
	} {
		if n > 0 {
			m.rows.WithLabelValues(table).Add(float64(n))
		}
	}
	stages := map[string]float64{"queue": r.Timings.QueueMS, "total": r.Timings.TotalMS}
	// A stage after the one that failed never ran: a zero for it would
	// drag its latency down.
	for _, st := range []struct {
		name string
		ms   float64
	}{{handlers.StageFetch, r.Timings.FetchMS}, {handlers.StageTransform, r.Timings.TransformMS}, {handlers.StageWrite, r.Timings.WriteMS},
		{handlers.StageDetect, r.Timings.DetectMS}} {
		stages[st.name] = st.ms
		if r.Error != nil && r.Error.Stage == st.name {
			break
		}
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

// Middleware times each handler invocation by stage (the handler name up to
// its first '.': fetch.3 → fetch). Placed right inside the engine's track
// middleware it sees the whole handling, retries and the stage's own publish
// included; an error there means the message is nacked and redelivered.
func (m *Metrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	if m == nil {
		return h
	}
	return func(msg *message.Message) ([]*message.Message, error) {
		stage := stageOfHandler(message.HandlerNameFromCtx(msg.Context()))
		start := time.Now()
		out, err := h(msg)
		outcome := "ack"
		if err != nil {
			outcome = "nack"
		}
		m.handler.WithLabelValues(stage, outcome).Observe(time.Since(start).Seconds())
		return out, err
	}
}

// attemptsKey keys the per-message attempt record CountRetries keeps in the
// message's context.
type attemptsKey struct{}

// attempts is what CountRetries remembers between attempts of one message.
type attempts struct{ lastReason string }

// WriteTransaction records a transaction of the write stage's groups
// (handlers.WriteGroupConfig.Observe): how many polls it wrote, or tried
// to before it failed (fellBack) and they wrote alone.
func (m *Metrics) WriteTransaction(polls int, fellBack error) {
	if m == nil {
		return
	}
	outcome := "written"
	if fellBack != nil {
		outcome = "fell_back"
	}
	m.groups.WithLabelValues(outcome).Observe(float64(polls))
}

// CountRetries counts handler retries. It belongs directly inside the Retry
// middleware: Retry calls it once per attempt with the same message, so every
// call after the first is a retry, caused by the error the previous attempt
// returned. (Counting retryable errors instead would over-count by one when
// the retries run out, and Retry's hook does not see the error.) It relies
// on Retry keeping the message's context between attempts, its default.
func (m *Metrics) CountRetries(h message.HandlerFunc) message.HandlerFunc {
	if m == nil {
		return h
	}
	return func(msg *message.Message) ([]*message.Message, error) {
		a, retry := msg.Context().Value(attemptsKey{}).(*attempts)
		if retry {
			stage := stageOfHandler(message.HandlerNameFromCtx(msg.Context()))
			m.retries.WithLabelValues(stage, a.lastReason).Inc()
		} else {
			a = &attempts{}
			msg.SetContext(context.WithValue(msg.Context(), attemptsKey{}, a))
		}
		out, err := h(msg)
		if err != nil {
			a.lastReason = handlers.ErrorKind(err)
		}
		return out, err
	}
}

// InstrumentTransport counts and times every request attempt made through
// rt by its outcome class, for the NZ TAB client (nztab.ClientConfig
// HTTPClient). The client retries 5xx, 429 and network failures itself, so
// each attempt is counted, not each poll. A response is classed by its
// status when the headers arrive; a body cut short afterwards still counts
// as its status class. rt nil means http.DefaultTransport.
func InstrumentTransport(rt http.RoundTripper, m *Metrics) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if m == nil {
		return rt
	}
	return instrumentedTransport{rt: rt, m: m}
}

type instrumentedTransport struct {
	rt http.RoundTripper
	m  *Metrics
}

func (t instrumentedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.rt.RoundTrip(req)
	class := responseClass(resp, err)
	t.m.api.WithLabelValues(class).Inc()
	t.m.apiTime.WithLabelValues(class).Observe(time.Since(start).Seconds())
	return resp, err
}

// responseClass: "2xx" … "5xx" by status, "timeout" when the attempt's
// deadline passed, "canceled" when the caller gave up (shutdown), "network"
// for every other failure to get a response.
func responseClass(resp *http.Response, err error) string {
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			return "timeout"
		case errors.Is(err, context.Canceled):
			return "canceled"
		}
		return "network"
	}
	if c := resp.StatusCode / 100; c >= 1 && c <= 5 {
		return strconv.Itoa(c) + "xx"
	}
	return "other"
}

// APIResponses returns the API request attempts by outcome class so far.
func (m *Metrics) APIResponses() map[string]int64 {
	ch := make(chan prometheus.Metric, 16)
	go func() {
		m.api.Collect(ch)
		close(ch)
	}()
	out := map[string]int64{}
	for metric := range ch {
		var pb dto.Metric
		if err := metric.Write(&pb); err != nil {
			continue
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == "class" {
				out[l.GetValue()] += int64(pb.GetCounter().GetValue())
			}
		}
	}
	return out
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
type Summary = stats.Summary

// Summaries returns latency summaries by stage (fetch, transform, write, detect, queue, total).
func (m *Metrics) Summaries() map[string]Summary {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Summary{}
	for stage, xs := range m.samples {
		out[stage] = stats.Summarize(xs)
	}
	return out
}
