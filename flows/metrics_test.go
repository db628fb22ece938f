package flows_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/write"
)

// ---- scraping ----

// families is one scrape, by metric family name.
type families map[string]*dto.MetricFamily

// scrape GETs a /metrics URL and parses the text exposition.
func scrape(t *testing.T, url string) (families, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	return fams, body
}

func gather(t *testing.T, g prometheus.Gatherer) families {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := families{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// sumWhere adds up the family's series whose labels match: the value of a
// counter or gauge, the observation count of a histogram.
func (f families) sumWhere(name string, match func(map[string]string) bool) float64 {
	mf, ok := f[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		if !match(labelsOf(m)) {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			total += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			total += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			total += float64(m.GetHistogram().GetSampleCount())
		default:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// sum adds up the series whose labels include want.
func (f families) sum(name string, want map[string]string) float64 {
	return f.sumWhere(name, func(l map[string]string) bool {
		for k, v := range want {
			if l[k] != v {
				return false
			}
		}
		return true
	})
}

func (f families) series(name string) int {
	if mf, ok := f[name]; ok {
		return len(mf.GetMetric())
	}
	return 0
}

// ---- a flow with metrics ----

// rig is a flow on a fresh database against a simulator, with every metric
// wired as the service wires them.
type rig struct {
	db      *pgtest.DB
	sim     *nztabsim.Sim
	api     *hiccups
	engine  *flows.Engine
	metrics *flows.Metrics
	reg     *prometheus.Registry
	results chan handlers.ProcessResult // every result, after Metrics.Observe saw it
	races   []string
}

type rigOptions struct {
	backend string
	metrics bool
}

func newRig(tb testing.TB, opt rigOptions) *rig {
	tb.Helper()
	db := pgtest.New(tb)
	today := nzday.Of(time.Now())
	clock := nztabsim.NewSpeedClock(today.Start().Add(12*time.Hour-20*time.Minute), 60, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{Seed: 7, Date: today.String(), Clock: clock})
	require.NoError(tb, err)
	r := &rig{db: db, sim: sim, api: &hiccups{next: sim, pending: map[string]bool{}}, results: make(chan handlers.ProcessResult, 1024)}
	srv := httptest.NewServer(r.api)
	tb.Cleanup(srv.Close)

	deps := flows.Deps{Pool: db.Pool, Logger: quietLogger()}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(transport.CloseIdleConnections)
	var rt http.RoundTripper = transport
	if opt.metrics {
		r.reg = prometheus.NewRegistry()
		r.metrics, err = flows.NewMetrics(r.reg)
		require.NoError(tb, err)
		deps.Registry = r.reg
		deps.Metrics = r.metrics
		rt = flows.InstrumentTransport(rt, r.metrics)
	}
	deps.Fetcher, err = nztab.NewClient(nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com", PartnerName: "test", PartnerID: "test",
		Timeout: 5 * time.Second, BaseBackoff: time.Millisecond, HTTPClient: &http.Client{Transport: rt},
	})
	require.NoError(tb, err)
	cfg := flows.DefaultConfig()
	cfg.Backend = opt.backend
	r.engine, err = flows.New(cfg, deps)
	require.NoError(tb, err)
	if opt.metrics {
		r.engine.OnResult(r.metrics.Observe)
		r.reg.MustRegister(flows.NewQueueCollector(r.engine.Driver()), flows.NewPoolCollector(db.Pool),
			flows.NewSeriesEndsCollector(r.engine.SeriesEnds))
	}
	r.engine.OnResult(func(res handlers.ProcessResult) { r.results <- res })

	for _, ri := range sim.Races() {
		if (ri.Country == "NZ" || ri.Country == "AUS") && (ri.Category == "T" || ri.Category == "H") {
			r.races = append(r.races, ri.ID)
		}
	}
	sort.Strings(r.races)
	return r
}

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
	}
	return l
}

// run runs the engine until the test ends.
func (r *rig) run(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.engine.Run(ctx) }()
	select {
	case <-r.engine.Running():
	case err := <-done:
		tb.Fatalf("flow stopped before running: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("flow: %v", err)
		}
	})
}

// awaitResults waits until n results have been observed.
func (r *rig) awaitResults(tb testing.TB, n int) {
	tb.Helper()
	timeout := time.After(2 * time.Minute)
	for i := 0; i < n; i++ {
		select {
		case <-r.results:
		case <-timeout:
			tb.Fatalf("only %d of %d results observed", i, n)
		}
	}
}

// hiccups answers the first event request of chosen races 500, as an
// upstream hiccup the API client retries.
type hiccups struct {
	next    http.Handler
	mu      sync.Mutex
	pending map[string]bool
}

func (h *hiccups) failOnce(races ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range races {
		h.pending[id] = true
	}
}

func (h *hiccups) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	id := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
	h.mu.Lock()
	fail := h.pending[id]
	delete(h.pending, id)
	h.mu.Unlock()
	if fail {
		req = req.Clone(req.Context())
		req.Header.Set(nztabsim.FaultHeader, string(nztabsim.FaultServerError))
	}
	h.next.ServeHTTP(w, req)
}

// ---- the integration test ----

func TestMetricsEndpointReportsExactlyWhatTheFlowDid(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{backend: config.BackendPostgres, metrics: true})
	r.reg.MustRegister(flows.NewSchedulerCollector(func() (int, int) { return 5, 2 }))
	srv := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	// Before the flow has run, its topic tables do not exist: no backlog and
	// no failed scrape.
	before, _ := scrape(t, srv.URL)
	require.Equal(t, 1.0, before.sum("raceflow_queue_stats_up", nil))
	require.Zero(t, before.series("raceflow_queue_backlog_messages"))

	ids := r.races[:8]
	bad, flaky := ids[3], []string{ids[1], ids[5]}
	require.NoError(t, r.sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	r.api.failOnce(flaky...)
	r.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := r.engine.ProcessRaces(ctx, ids, 4)
	var fe *handlers.FetchError
	require.ErrorAs(t, err, &fe)
	r.awaitResults(t, len(ids))

	rows := map[string]int{}
	succeeded := 0
	for i, res := range results {
		if ids[i] == bad {
			require.Equal(t, handlers.StatusFailed, res.Status)
			continue
		}
		require.Equal(t, handlers.StatusSuccess, res.Status, ids[i])
		succeeded++
		rows["meetings"] += res.Rows.Meetings
		rows["races"] += res.Rows.Races
		rows["entrants"] += res.Rows.Entrants
		rows["race_pools"] += res.Rows.RacePools
		rows["money_flow_history"] += res.Rows.MoneyFlow
		rows["odds_history"] += res.Rows.Odds
		rows["race_results"] += res.Rows.Results
	}
	require.Equal(t, succeeded, countRows(t, r.db.Pool, `SELECT count(*) FROM races`))
	require.Equal(t, rows["entrants"], countRows(t, r.db.Pool, `SELECT count(*) FROM entrants`))
	require.Equal(t, rows["money_flow_history"], countRows(t, r.db.Pool, `SELECT count(*) FROM money_flow_history`))

	// The results consumer acknowledges its message after the observers ran,
	// in a commit nothing can wait on: poll until the backlog drains.
	require.Eventually(t, func() bool {
		mfs, err := r.reg.Gather()
		if err != nil {
			return false
		}
		f := families{}
		for _, mf := range mfs {
			f[mf.GetName()] = mf
		}
		// 4 shards of 4 stage topics, and the alerts topic.
		return f.series("raceflow_queue_backlog_messages") == 17 && f.sum("raceflow_queue_backlog_messages", nil) == 0
	}, time.Minute, 20*time.Millisecond)

	f, body := scrape(t, srv.URL)
	n, ok := float64(len(ids)), float64(succeeded)
	handlerRuns := func(stage string) float64 {
		return f.sumWhere("raceflow_watermill_handler_execution_time_seconds", func(l map[string]string) bool {
			return strings.HasPrefix(l["handler_name"], stage+".")
		})
	}
	type lbl = map[string]string
	checks := []struct {
		what   string
		metric string
		labels lbl
		want   float64
	}{
		{"successful polls", "raceflow_polls_total", lbl{"status": "success"}, ok},
		{"failed polls", "raceflow_polls_total", lbl{"status": "failed"}, 1},
		{"every poll once", "raceflow_polls_total", nil, n},
		{"the malformed payload poisoned at fetch", "raceflow_poisoned_messages_total", lbl{"stage": "fetch", "reason": "malformed_json"}, 1},
		{"nothing else poisoned", "raceflow_poisoned_messages_total", nil, 1},
		{"failures by stage and kind", "raceflow_poll_failures_total", lbl{"stage": "fetch", "kind": "malformed_json", "status": "failed"}, 1},
		{"a 2xx per race, the malformed body included", "raceflow_api_responses_total", lbl{"class": "2xx"}, n},
		{"a 5xx per hiccup, each retried by the client", "raceflow_api_responses_total", lbl{"class": "5xx"}, float64(len(flaky))},
		{"every API attempt", "raceflow_api_responses_total", nil, float64(r.sim.Requests())},
		{"every API attempt timed", "raceflow_api_request_duration_seconds", nil, n + float64(len(flaky))},
		{"no handler retries: the API client retried", "raceflow_retries_total", nil, 0},
		{"total latency per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "total", "outcome": "success"}, ok},
		{"fetch latency per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "fetch", "outcome": "success"}, ok},
		{"transform latency per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "transform", "outcome": "success"}, ok},
		{"write latency per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "write", "outcome": "success"}, ok},
		{"detect latency per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "detect", "outcome": "success"}, ok},
		{"queue time per successful poll", "raceflow_stage_duration_seconds", lbl{"stage": "queue", "outcome": "success"}, ok},
		{"total latency of the failed poll", "raceflow_stage_duration_seconds", lbl{"stage": "total", "outcome": "failed"}, 1},
		{"fetch latency of the failed poll", "raceflow_stage_duration_seconds", lbl{"stage": "fetch", "outcome": "failed"}, 1},
		{"no transform ran after the failed fetch", "raceflow_stage_duration_seconds", lbl{"stage": "transform", "outcome": "failed"}, 0},
		{"poison queue depth", "raceflow_poison_queue_messages", nil, 1},
		{"no backlog once done", "raceflow_queue_backlog_messages", nil, 0},
		{"no old unprocessed message once done", "raceflow_queue_oldest_message_age_seconds", nil, 0},
		{"queue stats readable", "raceflow_queue_stats_up", nil, 1},
		{"races tracked", "raceflow_scheduler_races_tracked", nil, 5},
		{"polls in flight", "raceflow_scheduler_polls_in_flight", nil, 2},
		{"pool size", "raceflow_db_pool_max_connections", nil, float64(r.db.Pool.Config().MaxConns)},
		// Each race's one poll is its first: every series it appends to (a
		// money row and a kept odds row each) is looked up.
		{"series ends looked up", "raceflow_write_series_ends_total", lbl{"source": "lookup"},
			float64(rows["money_flow_history"] + rows["odds_history"])},
		{"no series end from memory", "raceflow_write_series_ends_total", lbl{"source": "memory"}, 0},
	}
	for table, want := range rows {
		checks = append(checks, struct {
			what   string
			metric string
			labels lbl
			want   float64
		}{"rows written to " + table, "raceflow_rows_written_total", lbl{"table": table}, float64(want)})
	}
	for _, c := range checks {
		require.Equal(t, c.want, f.sum(c.metric, c.labels), "%s: %s%v", c.what, c.metric, c.labels)
	}
	require.Equal(t, n, handlerRuns(handlers.StageFetch), "watermill: fetch handler runs")
	require.Zero(t, handlerRuns(handlers.StageTransform), "watermill: no transform handler, the write handler transforms")
	require.Equal(t, ok, handlerRuns(handlers.StageWrite), "watermill: write handler runs")
	require.Equal(t, ok, handlerRuns(handlers.StageDetect), "watermill: detect handler runs")
	require.Equal(t, n, handlerRuns("results"), "watermill: results handler runs")
	ours := func(stage string) float64 {
		return f.sum("raceflow_handler_duration_seconds", lbl{"stage": stage, "outcome": "ack"})
	}
	require.Equal(t, n, ours(handlers.StageFetch), "middleware: fetch handler runs, the poisoned one acked too")
	require.Zero(t, ours(handlers.StageTransform), "middleware: no transform handler")
	require.Equal(t, ok, ours(handlers.StageWrite), "middleware: write handler runs")
	require.Equal(t, ok, ours(handlers.StageDetect), "middleware: detect handler runs")
	require.Equal(t, n, ours("results"), "middleware: results handler runs")
	require.Zero(t, f.sum("raceflow_handler_duration_seconds", lbl{"outcome": "nack"}), "nothing nacked")
	require.Positive(t, f.sum("raceflow_db_pool_acquires_total", nil))
	require.GreaterOrEqual(t, f.sum("raceflow_db_pool_connections", nil), f.sum("raceflow_db_pool_acquired_connections", nil))
	age := f.sum("raceflow_poison_queue_oldest_message_age_seconds", nil)
	require.True(t, age >= 0 && age < 600, "poison age %v", age)

	// Our metrics follow the Prometheus naming conventions.
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	require.NoError(t, err)
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "raceflow_") && !strings.HasPrefix(p.Metric, "raceflow_watermill_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func countRows(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}

func TestQueueCollectorReportsDownWhenTheDatabaseFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	pool, err := pgxpool.New(context.Background(), "postgres://u@"+addr+"/db?connect_timeout=2")
	require.NoError(t, err)
	defer pool.Close()
	reg := prometheus.NewRegistry()
	drv, err := flows.OpenDriver(flows.DefaultConfig(), pool, quietLogger())
	require.NoError(t, err)
	defer drv.Close()
	reg.MustRegister(flows.NewQueueCollector(drv))
	f := gather(t, reg)
	require.Equal(t, 0.0, f.sum("raceflow_queue_stats_up", nil))
	require.Zero(t, f.series("raceflow_queue_backlog_messages"))
	require.Zero(t, f.series("raceflow_poison_queue_messages"))
}

// ---- middleware and transport ----

// runRouter runs handlers (name → handler, each subscribed to the topic of
// its name) behind mws on a Go channel until the test ends. done receives a
// handler's name when the chain has returned for one message; the chain's
// error is swallowed so nothing is redelivered.
func runRouter(t *testing.T, mws []message.HandlerMiddleware, hs map[string]message.NoPublishHandlerFunc) (*gochannel.GoChannel, chan string) {
	t.Helper()
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	require.NoError(t, err)
	done := make(chan string, 16)
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			_, _ = h(msg)
			done <- message.HandlerNameFromCtx(msg.Context())
			return nil, nil
		}
	})
	router.AddMiddleware(mws...)
	for name, h := range hs {
		router.AddConsumerHandler(name, name, ps, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = router.Run(ctx)
	}()
	<-router.Running()
	t.Cleanup(func() {
		cancel()
		<-stopped
		_ = ps.Close()
	})
	return ps, done
}

func await(t *testing.T, done chan string) string {
	t.Helper()
	select {
	case name := <-done:
		return name
	case <-time.After(30 * time.Second):
		t.Fatal("the handler did not finish")
		return ""
	}
}

func writeErr(kind string, retryable bool) error {
	return &handlers.WriteError{StageError: handlers.StageError{Stage: handlers.StageWrite, Kind: kind, Retryable: retryable, Err: errors.New("boom")}}
}

func TestCountRetriesCountsRetriesNotAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		failures    int
		retryable   bool
		wantCalls   int
		wantRetries float64
	}{
		{"first attempt succeeds", 0, true, 1, 0},
		{"two transient failures, then success", 2, true, 3, 2},
		{"retries run out", 100, true, 4, 3},
		{"a permanent error is not retried", 1, false, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			m, err := flows.NewMetrics(reg)
			require.NoError(t, err)
			retry := middleware.Retry{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, Multiplier: 1,
				ShouldRetry: func(p middleware.RetryParams) bool { return handlers.Retryable(p.Err) }}
			calls := 0
			ps, done := runRouter(t, []message.HandlerMiddleware{retry.Middleware, m.CountRetries}, map[string]message.NoPublishHandlerFunc{
				"write.2": func(*message.Message) error {
					calls++
					if calls <= tt.failures {
						return writeErr("database", tt.retryable)
					}
					return nil
				},
			})
			require.NoError(t, ps.Publish("write.2", message.NewMessage(watermill.NewUUID(), nil)))
			await(t, done)
			require.Equal(t, tt.wantCalls, calls)
			f := gather(t, reg)
			require.Equal(t, tt.wantRetries, f.sum("raceflow_retries_total", map[string]string{"stage": "write", "reason": "database"}))
			require.Equal(t, tt.wantRetries, f.sum("raceflow_retries_total", nil))
		})
	}
}

func TestMiddlewareTimesHandlersByStageAndOutcome(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := flows.NewMetrics(reg)
	require.NoError(t, err)
	ps, done := runRouter(t, []message.HandlerMiddleware{m.Middleware}, map[string]message.NoPublishHandlerFunc{
		"fetch.1":     func(*message.Message) error { return nil },
		"transform.0": func(*message.Message) error { return errors.New("publish failed: redeliver") },
	})
	for _, topic := range []string{"fetch.1", "fetch.1", "transform.0"} {
		require.NoError(t, ps.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
	}
	for i := 0; i < 3; i++ {
		await(t, done)
	}
	f := gather(t, reg)
	require.Equal(t, 2.0, f.sum("raceflow_handler_duration_seconds", map[string]string{"stage": "fetch", "outcome": "ack"}))
	require.Equal(t, 1.0, f.sum("raceflow_handler_duration_seconds", map[string]string{"stage": "transform", "outcome": "nack"}))
	require.Equal(t, 3.0, f.sum("raceflow_handler_duration_seconds", nil))
}

func TestNilMetricsAddNothing(t *testing.T) {
	t.Parallel()
	var m *flows.Metrics
	called := 0
	h := func(*message.Message) ([]*message.Message, error) { called++; return nil, writeErr("database", true) }
	for _, mw := range []message.HandlerMiddleware{m.Middleware, m.CountRetries} {
		_, err := mw(h)(message.NewMessage("1", nil))
		var we *handlers.WriteError
		require.ErrorAs(t, err, &we)
	}
	require.Equal(t, 2, called)
	require.Equal(t, http.DefaultTransport, flows.InstrumentTransport(nil, nil))
}

func TestInstrumentTransportClassesEveryAttempt(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/hang":
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	tests := []struct {
		name   string
		url    string
		ctx    func() (context.Context, context.CancelFunc)
		want   map[string]float64
		wantOK bool
	}{
		{"2xx", srv.URL + "/ok", nil, map[string]float64{"2xx": 1}, true},
		{"4xx", srv.URL + "/missing", nil, map[string]float64{"4xx": 1}, true},
		{"5xx", srv.URL + "/down", nil, map[string]float64{"5xx": 1}, true},
		{"a redirect is two attempts", srv.URL + "/moved", nil, map[string]float64{"3xx": 1, "2xx": 1}, true},
		{"timeout", srv.URL + "/hang", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, map[string]float64{"timeout": 1}, false},
		{"network", closed, nil, map[string]float64{"network": 1}, false},
		{"canceled", srv.URL + "/ok", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, map[string]float64{"canceled": 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			m, err := flows.NewMetrics(reg)
			require.NoError(t, err)
			transport := http.DefaultTransport.(*http.Transport).Clone()
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: flows.InstrumentTransport(transport, m)}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, tt.url, nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			if tt.wantOK {
				require.NoError(t, err)
				_ = resp.Body.Close()
			} else {
				require.Error(t, err)
			}
			f := gather(t, reg)
			total := 0.0
			for class, n := range tt.want {
				require.Equal(t, n, f.sum("raceflow_api_responses_total", map[string]string{"class": class}), class)
				require.Equal(t, n, f.sum("raceflow_api_request_duration_seconds", map[string]string{"class": class}), class)
				total += n
			}
			require.Equal(t, total, f.sum("raceflow_api_responses_total", nil), "no other class")
		})
	}
}

func TestObserveCountsPollsRowsAndPoisonByOutcome(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := flows.NewMetrics(reg)
	require.NoError(t, err)
	m.Observe(handlers.ProcessResult{Status: handlers.StatusSuccess, Rows: handlers.RowCounts{Races: 1, Entrants: 9, MoneyFlow: 18}})
	m.Observe(handlers.ProcessResult{Status: handlers.StatusSuccess, Rows: handlers.RowCounts{Entrants: 2, MoneyFlow: 18}})
	m.Observe(handlers.ProcessResult{Status: handlers.StatusSkipped, Error: &handlers.ErrorInfo{Stage: "fetch", Kind: "not_found"}})
	m.Observe(handlers.ProcessResult{Status: handlers.StatusFailed, Error: &handlers.ErrorInfo{Stage: "write", Kind: "partition_missing"}})
	f := gather(t, reg)
	type lbl = map[string]string
	for _, c := range []struct {
		metric string
		labels lbl
		want   float64
	}{
		{"raceflow_polls_total", lbl{"status": "success"}, 2},
		{"raceflow_polls_total", lbl{"status": "skipped"}, 1},
		{"raceflow_polls_total", lbl{"status": "failed"}, 1},
		{"raceflow_poisoned_messages_total", lbl{"stage": "write", "reason": "partition_missing"}, 1},
		{"raceflow_poisoned_messages_total", nil, 1}, // a skip is not poison
		{"raceflow_poll_failures_total", nil, 2},
		{"raceflow_rows_written_total", lbl{"table": "entrants"}, 11},
		{"raceflow_rows_written_total", lbl{"table": "money_flow_history"}, 36},
		{"raceflow_rows_written_total", lbl{"table": "races"}, 1},
		{"raceflow_stage_duration_seconds", lbl{"stage": "total"}, 4},
		{"raceflow_stage_duration_seconds", lbl{"stage": "fetch"}, 4},
		{"raceflow_stage_duration_seconds", lbl{"stage": "transform"}, 3}, // not after the skipped fetch
		{"raceflow_stage_duration_seconds", lbl{"stage": "write"}, 3},     // the failed write ran
	} {
		require.Equal(t, c.want, f.sum(c.metric, c.labels), "%s%v", c.metric, c.labels)
	}
	require.Equal(t, map[string]int{"success": 2, "skipped": 1, "failed": 1}, m.Counts())
	require.Equal(t, 2, m.Summaries()["total"].N, "summaries sample successful polls only")
}

func TestSchedulerCollectorExportsTheSchedulersStats(t *testing.T) {
	t.Parallel()
	tracked, inFlight := 12, 3
	reg := prometheus.NewRegistry()
	reg.MustRegister(flows.NewSchedulerCollector(func() (int, int) { return tracked, inFlight }))
	f := gather(t, reg)
	require.Equal(t, 12.0, f.sum("raceflow_scheduler_races_tracked", nil))
	require.Equal(t, 3.0, f.sum("raceflow_scheduler_polls_in_flight", nil))
	tracked, inFlight = 0, 0
	f = gather(t, reg)
	require.Equal(t, 0.0, f.sum("raceflow_scheduler_races_tracked", nil), "read at every scrape")
}

// ---- the dashboard ----

// recorder is a Registerer that keeps what was registered, so the test can
// list every metric name the flow can export, observed yet or not.
type recorder struct {
	prometheus.Registerer
	mu sync.Mutex
	cs []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) names() map[string]bool {
	out := map[string]bool{}
	for _, c := range r.cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				out[m[1]] = true
			}
		}
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "go.mod not found")
		dir = parent
	}
}

func TestGrafanaDashboardQueriesOnlyMetricsTheFlowExports(t *testing.T) {
	t.Parallel()
	rec := &recorder{Registerer: prometheus.NewRegistry()}
	_, err := flows.NewMetrics(rec)
	require.NoError(t, err)
	rec.MustRegister(
		flows.NewQueueCollector(nil),
		flows.NewPoolCollector(nil),
		flows.NewSchedulerCollector(func() (int, int) { return 0, 0 }),
		flows.NewSeriesEndsCollector(func() write.EndsStats { return write.EndsStats{} }),
	)
	// Watermill's own metrics, as the engine adds them.
	b := metrics.NewPrometheusMetricsBuilder(rec, "raceflow", "watermill")
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer ps.Close()
	_ = b.NewRouterMiddleware()
	_, err = b.DecoratePublisher(ps)
	require.NoError(t, err)
	_, err = b.DecorateSubscriber(ps)
	require.NoError(t, err)
	exported := rec.names()

	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "grafana-dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Title)
	require.NotEmpty(t, dash.UID)
	used := map[string]bool{}
	name := regexp.MustCompile(`raceflow_[a-z_]+`)
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q", p.Title)
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && exported[b] {
						base = b
					}
				}
				require.True(t, exported[base], "panel %q queries %s, which the flow does not export", p.Title, n)
				used[base] = true
			}
		}
	}
	for n := range exported {
		if !strings.HasPrefix(n, "raceflow_watermill_") && n != "raceflow_queue_stats_up" {
			require.True(t, used[n], "the dashboard shows nothing of %s", n)
		}
	}
}

// ---- benchmarks ----

// BenchmarkFlowThroughput polls races through the whole flow on the memory
// backend (API simulator and database writes included), without and with
// every metric wired as the service wires them, so the difference is what
// collecting metrics costs per poll.
func BenchmarkFlowThroughput(b *testing.B) {
	const races, concurrency = 16, 8
	for _, withMetrics := range []bool{false, true} {
		name := "metrics=off"
		if withMetrics {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			r := newRig(b, rigOptions{backend: config.BackendMemory, metrics: withMetrics})
			if withMetrics {
				r.reg.MustRegister(flows.NewSchedulerCollector(func() (int, int) { return 0, 0 }))
			}
			r.run(b)
			ids := r.races[:races]
			ctx := context.Background()
			polls := 0
			for b.Loop() {
				if _, err := r.engine.ProcessRaces(ctx, ids, concurrency); err != nil {
					b.Fatal(err)
				}
				r.awaitResults(b, len(ids))
				polls += len(ids)
			}
			b.ReportMetric(float64(polls)/b.Elapsed().Seconds(), "polls/s")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(polls), "µs/poll")
		})
	}
}

// BenchmarkMetricsPerPoll is the CPU cost of our metrics for one poll,
// without the flow around it: one result observed, one API attempt through
// the instrumented transport, and three stage handlers through Middleware
// and CountRetries.
func BenchmarkMetricsPerPoll(b *testing.B) {
	m, err := flows.NewMetrics(prometheus.NewRegistry())
	require.NoError(b, err)
	res := handlers.ProcessResult{Status: handlers.StatusSuccess,
		Timings: handlers.Timings{FetchMS: 40, TransformMS: 2, WriteMS: 9, QueueMS: 6, TotalMS: 57},
		Rows:    handlers.RowCounts{Races: 1, Entrants: 12, RacePools: 1, MoneyFlow: 12, Odds: 30}}
	rt := flows.InstrumentTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}), m)
	req := httptest.NewRequest(http.MethodGet, "http://api.test/racing/events/x", nil)
	noop := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	h := m.Middleware(m.CountRetries(noop))
	for b.Loop() {
		m.Observe(res)
		resp, _ := rt.RoundTrip(req)
		_ = resp.Body.Close()
		for range 3 {
			_, _ = h(message.NewMessage("id", nil))
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkScrape is the cost of one /metrics scrape of a PostgreSQL flow
// (the queue collector's query dominates).
func BenchmarkScrape(b *testing.B) {
	r := newRig(b, rigOptions{backend: config.BackendPostgres, metrics: true})
	r.run(b)
	if _, err := r.engine.ProcessRaces(context.Background(), r.races[:8], 4); err != nil {
		b.Fatal(err)
	}
	r.awaitResults(b, 8)
	for b.Loop() {
		if _, err := r.reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
