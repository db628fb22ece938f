package pgdriver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// Subscriptions sleep until there is work. A publish in this process wakes
// the subscriptions of its topic here as soon as it commits (waker). Other
// processes learn of it from PostgreSQL's LISTEN/NOTIFY: the notifier sends
// a notification per channel (one per namespace and kind, empty payload)
// after commits, outside them, coalescing what accumulates meanwhile, and
// the listener, on one direct connection, wakes this process's
// subscriptions of that kind. A notification is a hint: each subscription
// also polls slowly (FallbackPoll), faster while the listener is down, so a
// lost one delays a message, never loses it.
//
// NOTIFY is kept off the hot path on purpose: a notifying commit holds a
// database-wide lock until it is durable, so notifying inside every
// hand-off would serialise all commits; and the notification queue stops
// draining behind long transactions.

// waker wakes the subscriptions of this process by topic.
type waker struct {
	mu   sync.Mutex
	subs map[string]map[*signal]struct{} // topic → subscriptions
}

// signal wakes one subscription's workers: closed and replaced on each wake.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// wait is the channel closed at the next wake.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

func (w *waker) add(topic string, s *signal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[string]map[*signal]struct{}{}
	}
	if w.subs[topic] == nil {
		w.subs[topic] = map[*signal]struct{}{}
	}
	w.subs[topic][s] = struct{}{}
}

func (w *waker) remove(topic string, s *signal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs[topic], s)
}

// wake wakes topic's subscriptions.
func (w *waker) wake(topic string) {
	w.mu.Lock()
	subs := make([]*signal, 0, len(w.subs[topic]))
	for s := range w.subs[topic] {
		subs = append(subs, s)
	}
	w.mu.Unlock()
	for _, s := range subs {
		s.wake()
	}
}

// has reports whether this process subscribes to topic.
func (w *waker) has(topic string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs[topic]) > 0
}

// wakeKind wakes every subscription of namespace's topics of kind.
func (w *waker) wakeKind(namespace string, kind driver.Kind) {
	w.mu.Lock()
	var subs []*signal
	for topic, set := range w.subs {
		if t, err := driver.ParseTopic(topic); err == nil && t.Namespace == namespace && t.Kind == kind {
			for s := range set {
				subs = append(subs, s)
			}
		}
	}
	w.mu.Unlock()
	for _, s := range subs {
		s.wake()
	}
}

// wakeAll wakes every subscription (the listener came back: what was
// notified while it was down is looked for now).
func (w *waker) wakeAll() {
	w.mu.Lock()
	var subs []*signal
	for _, set := range w.subs {
		for s := range set {
			subs = append(subs, s)
		}
	}
	w.mu.Unlock()
	for _, s := range subs {
		s.wake()
	}
}

// channel is the notification channel of namespace's topics of kind.
func channel(namespace string, kind driver.Kind) string {
	return "raceflow_" + namespace + "_" + string(kind)
}

// notifyKind says whether another process must hear of a commit to a topic
// of kind even when this process has subscriptions to wake: poll requests
// (every instance's fetchers compete for them) and results (every instance
// receives every result). Other hand-offs are strictly ordered per topic,
// one message at a time, so the process that produced one takes the next
// as soon as it is free; another process only needs to hear when this one
// has no subscription of the topic.
func notifyKind(kind driver.Kind) bool { return kind == driver.Poll || kind == driver.Processed }

// published wakes this process's subscriptions of the topics committed to
// and notifies the other processes that need it.
func (d *Driver) published(topics ...string) {
	d.wake(topics...)
	d.notify(topics...)
}

// wake wakes this process's subscriptions of the topics.
func (d *Driver) wake(topics ...string) {
	for _, topic := range topics {
		d.waker.wake(topic)
	}
}

// notify tells the other processes of commits to the topics, where they
// need to hear of them (notifyKind).
func (d *Driver) notify(topics ...string) {
	for _, topic := range topics {
		t, err := driver.ParseTopic(topic)
		if err != nil {
			continue // not a flow's topic (tests): nobody else listens for it
		}
		if !d.waker.has(topic) || notifyKind(t.Kind) {
			d.notifier.notify(channel(t.Namespace, t.Kind))
		}
	}
}

// notifier sends coalesced notifications from a connection of its own.
type notifier struct {
	d *Driver

	mu      sync.Mutex
	dirty   map[string]struct{}
	kick    chan struct{}
	started bool
	stop    chan struct{}
	done    chan struct{}
	pid     atomic.Uint32 // its connection's backend, whose notifications the listener ignores
	sent    prometheus.Counter
}

func (n *notifier) notify(ch string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dirty == nil {
		n.dirty = map[string]struct{}{}
	}
	n.dirty[ch] = struct{}{}
	if !n.started {
		n.started = true
		n.kick = make(chan struct{}, 1)
		n.stop, n.done = make(chan struct{}), make(chan struct{})
		go n.run()
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.dirty))
	for ch := range n.dirty {
		out = append(out, ch)
	}
	clear(n.dirty)
	return out
}

// run sends what is dirty, one round trip at a time, until closed.
func (n *notifier) run() {
	defer close(n.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-n.stop:
			return
		case <-n.kick:
		}
		chans := n.take()
		if len(chans) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = pgx.ConnectConfig(ctx, n.d.pool.Config().ConnConfig.Copy()); err != nil {
				conn = nil
				cancel()
				// The fallback poll covers what was not notified.
				n.d.logger.Debug("pgdriver: notifier cannot connect; relying on polling", map[string]any{"error": config.RedactDSN(err.Error())})
				continue
			}
			n.pid.Store(conn.PgConn().PID())
		}
		_, err := conn.Exec(ctx, `SELECT pg_notify(c, '') FROM unnest($1::text[]) AS c`, chans)
		cancel()
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		n.sent.Add(float64(len(chans)))
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if started {
		close(n.stop)
		<-n.done
	}
}

// listener holds the LISTEN connection of this driver: a direct one (LISTEN
// does not survive a transaction-pooling proxy) listening on the channels of
// the driver's namespace, reconnected with backoff.
type listener struct {
	d *Driver

	once sync.Once
	stop context.CancelFunc
	done chan struct{}

	up       atomic.Bool
	received prometheus.Counter
}

// start starts listening, once; the first subscription calls it.
func (l *listener) start() {
	l.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		l.stop, l.done = cancel, make(chan struct{})
		go l.run(ctx)
	})
}

// run keeps a listening connection until ctx ends.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	bo := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2,
		Multiplier: 2, MaxInterval: 5 * time.Second}
	for ctx.Err() == nil {
		err := l.session(ctx, bo)
		if ctx.Err() != nil {
			return
		}
		if l.up.Swap(false) {
			l.d.waker.wakeAll() // subscriptions switch to their faster poll
			l.d.logger.Error("pgdriver: the LISTEN connection is down; subscriptions poll every "+
				l.d.cfg.DownPoll.String()+" until it is back", errors.New(config.RedactDSN(err.Error())), nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(bo.NextBackOff()):
		}
	}
}

// session connects, listens and dispatches until the connection fails.
func (l *listener) session(ctx context.Context, bo *backoff.ExponentialBackOff) error {
	cfg, err := l.d.listenConfig()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	for _, k := range driver.StageKinds() {
		if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel(l.d.cfg.Namespace, k)}.Sanitize()); err != nil {
			return err
		}
	}
	bo.Reset()
	if !l.up.Swap(true) {
		l.d.logger.Info("pgdriver: listening for notifications", nil)
	}
	l.d.waker.wakeAll() // anything published while nobody listened
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.received.Inc()
		if n.PID == l.d.notifier.pid.Load() {
			continue // this process's own: its subscriptions were woken already
		}
		for _, k := range driver.StageKinds() {
			if n.Channel == channel(l.d.cfg.Namespace, k) {
				l.d.waker.wakeKind(l.d.cfg.Namespace, k)
			}
		}
	}
}

func (l *listener) close() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
}

// listening reports whether notifications arrive: false before the first
// subscription, and while the connection is down.
func (l *listener) listening() bool { return l.up.Load() }
