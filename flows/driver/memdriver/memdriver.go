// Package memdriver is the in-memory driver: the flow's topics are queues
// inside one process. It is the fastest driver and the simplest to run, but
// nothing outlives the process: no stored topic for replay, and a poison
// queue that only this process can inspect.
package memdriver

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// Config shapes the driver.
type Config struct {
	// Namespace of the flow whose topics the driver carries.
	Namespace string
}

// DefaultConfig is the default namespace.
func DefaultConfig() Config { return Config{Namespace: config.DefaultNamespace} }

// Validate checks the configuration.
func (c Config) Validate() error { return config.ValidNamespace(c.Namespace) }

// Driver carries a flow on in-process queues.
type Driver struct {
	cfg    Config
	pool   *pgxpool.Pool
	broker *broker
}

var _ driver.Driver = (*Driver)(nil)

// Open builds the driver; pool is the database of record, where the write
// stage's transactions run (nil for a driver that only moves messages).
func Open(cfg Config, pool *pgxpool.Pool) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, pool: pool, broker: newBroker(time.Now)}, nil
}

// Namespace is the flow whose topics the driver carries.
func (d *Driver) Namespace() string { return d.cfg.Namespace }

// Durable is false: nothing outlives the process.
func (d *Driver) Durable() bool { return false }

// Init does nothing: a queue exists once something is published to it.
func (d *Driver) Init(context.Context, []driver.Topic) error { return nil }

// Subscriber consumes topics from the in-process queues, parallel messages
// of a topic at a time, never two of one race.
func (d *Driver) Subscriber(_ driver.Kind, parallel int) (message.Subscriber, error) {
	return d.broker.subscriber(parallel), nil
}

// Publisher publishes to the in-process queues; closing it does nothing.
func (d *Driver) Publisher() message.Publisher { return publisher{d.broker} }

// HandlerPublisher is the same publisher.
func (d *Driver) HandlerPublisher() message.Publisher { return publisher{d.broker} }

// Middleware adds nothing.
func (d *Driver) Middleware() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc { return h }
}

// errNoPool: BeginWrite on a driver opened without a database.
var errNoPool = errors.New("memdriver: no database to write to")

// BeginWrite opens a transaction on the database of record.
func (d *Driver) BeginWrite(msg *message.Message) (pgx.Tx, error) {
	if d.pool == nil {
		return nil, errNoPool
	}
	return d.pool.Begin(msg.Context())
}

// BeginWriteGroup opens one transaction on the database of record for the
// writes of msgs; their hand-offs are not transactional here anyway.
func (d *Driver) BeginWriteGroup(msgs []*message.Message) (pgx.Tx, error) {
	if len(msgs) == 0 {
		return nil, errNoMessages
	}
	return d.BeginWrite(msgs[0])
}

// errNoMessages: BeginWriteGroup without a message.
var errNoMessages = errors.New("memdriver: a write group needs a message")

// Lost is false: a delivery has no transaction to lose.
func (d *Driver) Lost(*message.Message) bool { return false }

// Delivery is how often msg has been handed out in this process, and why
// its previous handling failed.
func (d *Driver) Delivery(msg *message.Message) (int, string) {
	info, _ := msg.Context().Value(infoKey{}).(deliveryInfo)
	return info.count, info.lastError
}

// Collectors are none.
func (d *Driver) Collectors() []prometheus.Collector { return nil }

// FansOutResults is false: one process has every result anyway.
func (d *Driver) FansOutResults() bool { return false }

// Health is nil: nothing to lose a connection to.
func (d *Driver) Health(context.Context) error { return nil }

// Stored is ErrNotStored: nothing is kept for replay.
func (d *Driver) Stored() (driver.StoredTopic, error) { return nil, driver.ErrNotStored }

// Poison is the in-process poison queue.
func (d *Driver) Poison() driver.PoisonQueue { return poisonQueue{d} }

// Prune does nothing: nothing is kept.
func (d *Driver) Prune(context.Context, time.Time, int) (int64, error) { return 0, nil }

// QueueStats reads the in-process queues of the flow.
func (d *Driver) QueueStats(context.Context) ([]driver.QueueStat, error) {
	return d.broker.stats(d.cfg.Namespace), nil
}

// Drop forgets every message of the namespace.
func (d *Driver) Drop(context.Context) error {
	d.broker.drop(d.cfg.Namespace)
	return nil
}

// Close ends every subscription and refuses further publishing.
func (d *Driver) Close() error {
	d.broker.close()
	return nil
}

// WithNamespace is a driver of another namespace on the same in-process
// queues, as a second flow in this process would see them; closing either
// closes the queues.
func (d *Driver) WithNamespace(namespace string) (*Driver, error) {
	cfg := Config{Namespace: namespace}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, pool: d.pool, broker: d.broker}, nil
}
