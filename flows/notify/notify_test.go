package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/natsdriver"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/flows/notify"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// receiver is a local webhook that records every request and answers as
// its current mode says.
type receiver struct {
	*httptest.Server
	mu        sync.Mutex
	answer    func(n int) int // status for the n-th request (1-based); 0: hold it until released or abandoned
	requests  int
	delivered map[string][]string // key → bodies answered 2xx
	keyless   int                 // requests without an idempotency key, or whose body has another id
	changed   chan struct{}       // closed and replaced at every request
	release   chan struct{}
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	r := &receiver{answer: answer, delivered: map[string][]string{}, changed: make(chan struct{}), release: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	key := req.Header.Get("Idempotency-Key")
	var f detect.Fired
	r.mu.Lock()
	r.requests++
	n := r.requests
	status := r.answer(n)
	if json.Unmarshal(body, &f) != nil || key == "" || f.ID != key || req.Header.Get("Content-Type") != "application/json" {
		r.keyless++
	}
	r.notify()
	r.mu.Unlock()
	if status == 0 { // held: the notifier gives up on it (restart, timeout)
		select {
		case <-req.Context().Done():
			return
		case <-r.release:
			status = http.StatusServiceUnavailable
		}
	}
	if status/100 == 2 {
		r.mu.Lock()
		r.delivered[key] = append(r.delivered[key], string(body))
		r.notify()
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (r *receiver) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor re-checks cond after every request until it holds; a minute
// without is far beyond any healthy run.
func (r *receiver) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		r.mu.Lock()
		ok, changed := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// backend opens a driver of the named backend on a fresh namespace, with
// the alerts topic initialised.
type backend struct {
	name string
	open func(t *testing.T) (driver.Driver, string)
}

func backends() []backend {
	return []backend{
		{"postgres", func(t *testing.T) (driver.Driver, string) {
			db := pgtest.New(t)
			cfg := pgdriver.DefaultConfig()
			cfg.Namespace = "alerts"
			cfg.RedeliveryMax = 50 * time.Millisecond
			d, err := pgdriver.Open(cfg, db.Pool, watermill.NopLogger{})
			require.NoError(t, err)
			return d, cfg.Namespace
		}},
		{"nats", func(t *testing.T) (driver.Driver, string) {
			cfg := natsdriver.DefaultConfig()
			cfg.URL = natstest.URL(t)
			cfg.Namespace = natstest.Namespace(t, cfg.URL)
			d, err := natsdriver.Open(cfg, nil, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = d.Drop(context.Background()) })
			return d, cfg.Namespace
		}},
	}
}

// publishAlerts publishes n alerts of one race to the flow's alerts topic,
// as the detect stage does, and returns their ids.
func publishAlerts(t *testing.T, d driver.Driver, ns string, n int) map[string]bool {
	t.Helper()
	topic := driver.AlertsTopic(ns)
	require.NoError(t, d.Init(context.Background(), []driver.Topic{topic}))
	poll := message.NewMessage(watermill.NewUUID(), nil)
	poll.Metadata.Set(handlers.KeyRaceID, "r1")
	fired := make([]detect.Fired, n)
	ids := map[string]bool{}
	for i := range fired {
		a := alerts.Alert{RaceID: "r1", EntrantID: fmt.Sprintf("e%02d", i), Kind: alerts.KindSteamer, Bucket: 3,
			FiredAt: time.Date(2025, 7, 17, 2, 57, 0, 0, time.UTC)}
		fired[i] = detect.Fired{Alert: a, ID: a.ID(), Summary: "test"}
		ids[a.ID()] = true
	}
	msgs, err := handlers.AlertMessages(poll, fired)
	require.NoError(t, err)
	require.NoError(t, d.Publisher().Publish(topic.String(), msgs...))
	return ids
}

// start runs a notifier on a new subscription of d to url; the returned
// function stops it and waits for it.
func start(t *testing.T, d driver.Driver, ns, url string, cfg notify.Config) (*notify.Notifier, func()) {
	t.Helper()
	sub, err := d.Subscriber(driver.Alerts, 1)
	require.NoError(t, err)
	cfg.URL = url
	log, _ := test.NewNullLogger()
	n, err := notify.New(cfg, notify.Deps{Subscriber: sub, Topic: driver.AlertsTopic(ns).String(), Middleware: d.Middleware(),
		Logger: log})
	require.NoError(t, err)
	stop := n.Start(context.Background())
	var once sync.Once
	stopped := func() { once.Do(func() { require.NoError(t, stop()) }) }
	t.Cleanup(stopped)
	return n, stopped
}

// quick retries fast, so a test's "minute" of downtime is many deliveries.
func quick() notify.Config {
	c := notify.DefaultConfig()
	c.Timeout, c.InitialInterval, c.MaxInterval, c.Budget = 2*time.Second, 5*time.Millisecond, 20*time.Millisecond, 2*time.Second
	return c
}

func TestEveryAlertIsDeliveredOnceAcrossARestartInTheMiddle(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			d, ns := b.open(t)
			t.Cleanup(func() { _ = d.Close() })
			ids := publishAlerts(t, d, ns, 20)
			// The sixth request is held until the notifier stops: it stops
			// in the middle of a delivery.
			rcv := newReceiver(t, func(n int) int {
				if n == 6 {
					return 0
				}
				return http.StatusOK
			})
			_, stop := start(t, d, ns, rcv.URL, quick())
			rcv.waitFor(t, "the sixth request", func() bool { return rcv.requests >= 6 })
			stop()
			start(t, d, ns, rcv.URL, quick())
			rcv.waitFor(t, "every alert delivered", func() bool { return len(rcv.delivered) == len(ids) })

			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			for id, bodies := range rcv.delivered {
				require.True(t, ids[id], "an alert that was not published: %s", id)
				require.Len(t, bodies, 1, "alert %s delivered once", id)
			}
			require.Zero(t, rcv.keyless, "every request carries the alert's id as its idempotency key")
			t.Logf("%d alerts, %d requests, every one delivered once", len(ids), rcv.requests)
		})
	}
}

func TestAReceiverThatIsDownLosesNoAlert(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			d, ns := b.open(t)
			t.Cleanup(func() { _ = d.Close() })
			ids := publishAlerts(t, d, ns, 5)
			// Down for its first 60 requests: with attempts 5 to 20 ms
			// apart and 300 ms per delivery, that is several deliveries
			// given back and handed out again, as a minute is with the
			// defaults.
			const down = 60
			rcv := newReceiver(t, func(n int) int {
				if n <= down {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			})
			cfg := quick()
			cfg.Budget, cfg.Timeout = 300*time.Millisecond, 300*time.Millisecond
			n, stop := start(t, d, ns, rcv.URL, cfg)
			rcv.waitFor(t, "every alert delivered", func() bool { return len(rcv.delivered) == len(ids) })
			stop() // every handling has ended: the counters are final

			// Failures are counted. Not to the unit: an answer that arrives
			// as its delivery's time runs out is not taken for one, and that
			// alert is delivered again (at least once).
			reg := prometheus.NewRegistry()
			reg.MustRegister(n.Collectors()...)
			require.GreaterOrEqual(t, counter(t, reg, "raceflow_alert_delivery_failures_total", "5xx"), float64(down-len(ids)),
				"failed attempts counted")
			require.Positive(t, counter(t, reg, "raceflow_alert_deliveries_total", notify.OutcomeReturned),
				"deliveries that ran out of time, handed out again")
			require.Positive(t, counter(t, reg, "raceflow_alert_deliveries_total", notify.OutcomeDelivered))
		})
	}
}

// counter is the value of the series of name whose one label is label.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}

// ackWatcher is a subscriber that reports each message it hands out once
// the notifier has acknowledged it.
type ackWatcher struct {
	message.Subscriber
	acked chan string // alert ids
	wg    sync.WaitGroup
}

func (w *ackWatcher) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := w.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(out)
		for m := range in {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				select {
				case <-m.Acked():
					w.acked <- m.Metadata.Get(handlers.KeyAlertID)
				case <-m.Nacked():
				}
			}()
			out <- m
		}
	}()
	return out, nil
}

func (w *ackWatcher) Close() error {
	err := w.Subscriber.Close()
	w.wg.Wait()
	return err
}

func TestWithoutAWebhookAlertsAreAcknowledgedAsTheyCome(t *testing.T) {
	t.Parallel()
	d, ns := backends()[0].open(t)
	t.Cleanup(func() { _ = d.Close() })
	ids := publishAlerts(t, d, ns, 3)
	// An alert no notifier can read is dropped, not retried for ever.
	bad := message.NewMessage(watermill.NewUUID(), []byte("{"))
	require.NoError(t, d.Publisher().Publish(driver.AlertsTopic(ns).String(), bad))

	sub, err := d.Subscriber(driver.Alerts, 1)
	require.NoError(t, err)
	w := &ackWatcher{Subscriber: sub, acked: make(chan string, 8)}
	log, _ := test.NewNullLogger()
	n, err := notify.New(notify.DefaultConfig(), notify.Deps{Subscriber: w, Topic: driver.AlertsTopic(ns).String(),
		Middleware: d.Middleware(), Logger: log})
	require.NoError(t, err)
	stop := n.Start(context.Background())
	seen := map[string]bool{}
	for range len(ids) + 1 {
		seen[<-w.acked] = true
	}
	require.NoError(t, stop())
	for id := range ids {
		require.True(t, seen[id], "alert %s acknowledged", id)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collectors()...)
	require.Equal(t, float64(len(ids)), counter(t, reg, "raceflow_alert_deliveries_total", notify.OutcomeSkipped))
	require.Equal(t, 1.0, counter(t, reg, "raceflow_alert_deliveries_total", notify.OutcomeBad))
}

func TestABadWebhookURLIsRefused(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"hooks.example.com/T0", "ftp://hooks.example.com/x"} {
		c := notify.DefaultConfig()
		c.URL = url
		err := c.Validate()
		require.Error(t, err, url)
		require.NotContains(t, err.Error(), "/T0", "the path, often the secret, is not shown")
	}
	c := notify.DefaultConfig()
	c.Budget = time.Millisecond
	require.ErrorContains(t, c.Validate(), "Budget")
}
