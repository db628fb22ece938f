// Package pgdriver is the PostgreSQL driver. Every topic is a table of the
// database of record. A message is handed out under a lease, handled in a
// transaction of its delivery, and acknowledged in that same transaction
// together with everything its handler published and wrote, so every
// hand-off happens exactly once. Subscriptions sleep until woken: in the
// process by the publishing commit, across processes by LISTEN/NOTIFY,
// with a slow poll as the safety net (notify.go). Results are read by every
// instance (fanout.go). The stored topic keeps its handled rows for
// replay; the poison queue is a table the poison tools read and requeue
// from transactionally.
package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// Config shapes the driver. Start from DefaultConfig.
type Config struct {
	// Namespace of the flow whose topics the driver carries.
	Namespace string
	// AckDeadline bounds one message's handling, retries included.
	AckDeadline time.Duration
	// Lease is how long a handed-out message is held for its subscription;
	// it is renewed while the handler runs (up to AckDeadline), so this is
	// the hand-over time after an instance dies, not the handling time.
	Lease time.Duration
	// FallbackPoll is how often an idle subscription looks for work it was
	// not woken for (RACEFLOW_FALLBACK_POLL): a lost notification delays a
	// message by at most this much.
	FallbackPoll time.Duration
	// DownPoll is the poll interval while the LISTEN connection is down.
	DownPoll time.Duration
	// RedeliveryMax caps the delay before a nacked message is handed out
	// again: none the first time, then doubling from 100ms.
	RedeliveryMax time.Duration
	// ResultRetention is how long results are kept for every instance to
	// read.
	ResultRetention time.Duration
	// ListenURL is the database to LISTEN on (RACEFLOW_LISTEN_DATABASE_URL):
	// a direct connection, where the pool goes through a transaction-pooling
	// proxy such as PgBouncer; empty: the pool's own settings.
	ListenURL string
}

// DefaultConfig wakes on notifications and polls every second besides.
func DefaultConfig() Config {
	return Config{
		Namespace:       config.DefaultNamespace,
		AckDeadline:     60 * time.Second,
		Lease:           5 * time.Second,
		FallbackPoll:    config.DefaultFallbackPoll,
		DownPoll:        100 * time.Millisecond,
		RedeliveryMax:   2 * time.Second,
		ResultRetention: 10 * time.Minute,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := config.ValidNamespace(c.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("pgdriver: %w", err))
	}
	if c.AckDeadline <= 0 {
		errs = append(errs, errors.New("pgdriver: ack deadline must be positive"))
	}
	if c.Lease < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("pgdriver: lease %s must be at least 300ms", c.Lease))
	}
	if c.FallbackPoll <= 0 || c.DownPoll <= 0 {
		errs = append(errs, errors.New("pgdriver: poll intervals must be positive"))
	}
	if c.RedeliveryMax < 0 {
		errs = append(errs, errors.New("pgdriver: redelivery backoff must not be negative"))
	}
	if c.ResultRetention < time.Minute {
		errs = append(errs, errors.New("pgdriver: result retention must be at least a minute"))
	}
	if c.ListenURL != "" {
		if _, err := pgx.ParseConfig(c.ListenURL); err != nil {
			errs = append(errs, fmt.Errorf("pgdriver: listen database URL: %s", config.RedactDSN(err.Error())))
		}
	}
	return errors.Join(errs...)
}

// Driver carries a flow on PostgreSQL tables.
type Driver struct {
	cfg    Config
	pool   *pgxpool.Pool
	logger watermill.LoggerAdapter

	ensured  sync.Map // topic → struct{}: its table exists; topic#keyed: and its keyed index
	waker    waker
	claimers claimers
	notifier notifier
	listener listener
	looker   looker
	up       prometheus.GaugeFunc
}

var _ driver.Driver = (*Driver)(nil)

// Open builds the driver on pool; it connects nothing until used.
func Open(cfg Config, pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("pgdriver: the postgres backend needs a database (DATABASE_URL)")
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	d := &Driver{cfg: cfg, pool: pool, logger: logger}
	d.notifier.d, d.listener.d, d.looker.d = d, d, d
	d.notifier.sent = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "raceflow", Name: "notify_sent_total",
		Help: "Notifications sent to other processes (coalesced: one per topic kind per round trip)."})
	d.listener.received = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "raceflow", Name: "notify_received_total",
		Help: "Notifications received on the LISTEN connection, this process's own included."})
	d.up = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "raceflow", Name: "notify_listener_up",
		Help: "1 while the LISTEN connection is up; 0 while subscriptions fall back to polling."}, func() float64 {
		if d.listener.listening() {
			return 1
		}
		return 0
	})
	return d, nil
}

// Collectors are the driver's metrics.
func (d *Driver) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.up, d.notifier.sent, d.listener.received}
}

// listenConfig is where the listener connects; its session is named
// "<application name>-listen", so an operator can tell it apart.
func (d *Driver) listenConfig() (*pgx.ConnConfig, error) {
	cfg := d.pool.Config().ConnConfig.Copy()
	if d.cfg.ListenURL != "" {
		var err error
		if cfg, err = pgx.ParseConfig(d.cfg.ListenURL); err != nil {
			return nil, err
		}
	}
	name := cfg.RuntimeParams["application_name"]
	if name == "" {
		name = "raceflow"
	}
	cfg.RuntimeParams["application_name"] = name + "-listen"
	return cfg, nil
}

// pollInterval is how long an idle subscription sleeps when not woken.
func (d *Driver) pollInterval() time.Duration {
	if d.listener.listening() {
		return d.cfg.FallbackPoll
	}
	return d.cfg.DownPoll
}

// redeliveryDelay is the wait before a message delivered n times is handed
// out again: none after the first delivery (a shutdown hands it over at
// once), then 100ms doubling up to RedeliveryMax.
func (d *Driver) redeliveryDelay(n int) time.Duration {
	if n <= 1 || d.cfg.RedeliveryMax <= 0 {
		return 0
	}
	wait := 100 * time.Millisecond
	for i := 2; i < n && wait < d.cfg.RedeliveryMax; i++ {
		wait *= 2
	}
	return min(wait, d.cfg.RedeliveryMax)
}

// Namespace is the flow whose topics the driver carries.
func (d *Driver) Namespace() string { return d.cfg.Namespace }

// Durable is true: every message is a committed row.
func (d *Driver) Durable() bool { return true }

// Subscriber consumes the topics of kind: a work queue for the stages (the
// stored topic keeping its handled rows), every result for every instance.
// parallel is how many messages of one topic are handled at once, never
// two of one race.
func (d *Driver) Subscriber(kind driver.Kind, parallel int) (message.Subscriber, error) {
	if kind == driver.Processed {
		return &fanOut{d: d}, nil
	}
	return d.NewSubscriber(kind.Kept(), parallel), nil
}

// NewSubscriber is a work-queue subscriber: the configuration every stage
// topic runs on (and the universal pub/sub suite checks); keep leaves
// handled rows in the table.
func (d *Driver) NewSubscriber(keep bool, parallel int) message.Subscriber {
	return &subscriber{d: d, keep: keep, parallel: max(parallel, 1)}
}

// Publisher publishes in transactions of its own; closing it does nothing.
func (d *Driver) Publisher() message.Publisher { return publisher{d} }

// HandlerPublisher publishes inside the delivery of the message being
// handled (its context says which).
func (d *Driver) HandlerPublisher() message.Publisher { return publisher{d} }

// Middleware adds nothing: a delivery is atomic on its own.
func (d *Driver) Middleware() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc { return h }
}

// BeginWrite gives the write stage the delivery's transaction, so the
// domain rows commit with the hand-off: the transaction's Commit leaves
// them to the acknowledgement, its Rollback undoes them.
func (d *Driver) BeginWrite(msg *message.Message) (pgx.Tx, error) {
	if dl, ok := deliveryOf(msg.Context()); ok {
		if dl.lost() {
			return nil, driver.ErrDeliveryLost
		}
		return dl.write(msg.Context())
	}
	return d.pool.Begin(msg.Context())
}

// BeginWriteGroup gives the write stage one transaction for the messages
// being delivered, in which every one of their hand-offs commits once the
// last of them is acknowledged (txGroup): several polls pay for one
// transaction and one synchronous commit. Messages handled outside a
// subscription get a plain transaction, as with BeginWrite.
func (d *Driver) BeginWriteGroup(msgs []*message.Message) (pgx.Tx, error) {
	if len(msgs) == 0 {
		return nil, errors.New("pgdriver: a write group needs a message")
	}
	dls := make([]*delivery, 0, len(msgs))
	for _, m := range msgs {
		if dl, ok := deliveryOf(m.Context()); ok {
			if dl.lost() {
				return nil, driver.ErrDeliveryLost
			}
			dls = append(dls, dl)
		}
	}
	ctx := msgs[0].Context()
	switch len(dls) {
	case 0:
		return d.pool.Begin(ctx)
	case len(msgs):
	default:
		return nil, errors.New("pgdriver: a write group mixes delivered messages with others")
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	g := newGroup(conn, len(dls))
	for i, dl := range dls {
		if err := dl.join(g); err != nil {
			// Nothing was written: the members that joined go back to
			// writing alone, as after a rollback.
			_ = g.rollback(ctx)
			return nil, fmt.Errorf("pgdriver: message %d of the write group: %w", i, err)
		}
	}
	return g.wtx, nil
}

// Lost reports that msg's transaction lost its connection: nothing it did
// can commit; acknowledging it lets the subscription find out at once and
// hand the message out again.
func (d *Driver) Lost(msg *message.Message) bool {
	dl, ok := deliveryOf(msg.Context())
	return ok && dl.lost()
}

// Delivery is how often msg has been handed out, this time included,
// counted durably, and why its previous handling failed.
func (d *Driver) Delivery(msg *message.Message) (int, string) {
	info, _ := msg.Context().Value(infoKey{}).(deliveryInfo)
	return info.count, info.lastError
}

// FansOutResults is true: every instance reads every result.
func (d *Driver) FansOutResults() bool { return true }

// Health is nil: the service's database check covers this driver.
func (d *Driver) Health(context.Context) error { return nil }

// Close stops notifying and listening; the subscribers close with the
// router, and the pool belongs to the caller.
func (d *Driver) Close() error {
	d.looker.close()
	d.listener.close()
	d.notifier.close()
	return nil
}
