// Package pgdriver is the PostgreSQL driver: every topic is a table of the
// database of record, each stage publishes its output inside the
// transaction that consumes its input (so every hand-off is exactly once),
// the stored topic keeps its handled rows for replay, and the poison queue
// is a table that the poison tools read and requeue from transactionally.
package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// Config shapes the driver. Start from DefaultConfig.
type Config struct {
	// Namespace of the flow whose topics the driver carries.
	Namespace string
	// PollInterval is how long an idle subscription waits before asking
	// again; it bounds the latency each hop adds.
	PollInterval time.Duration
	// SubscribeBatchSize is how many messages one subscriber transaction
	// takes. 1 keeps hand-off latency lowest and redelivery after a crash at
	// one message per subscription.
	SubscribeBatchSize int
	// AckDeadline bounds one message's handling, retries included.
	AckDeadline time.Duration
}

// DefaultConfig polls every 10ms, one message per transaction.
func DefaultConfig() Config {
	return Config{
		Namespace:          config.DefaultNamespace,
		PollInterval:       10 * time.Millisecond,
		SubscribeBatchSize: 1,
		AckDeadline:        60 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := config.ValidNamespace(c.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("pgdriver: %w", err))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("pgdriver: poll interval must be positive"))
	}
	if c.SubscribeBatchSize < 1 {
		errs = append(errs, errors.New("pgdriver: subscribe batch size must be at least 1"))
	}
	if c.AckDeadline <= 0 {
		errs = append(errs, errors.New("pgdriver: ack deadline must be positive"))
	}
	return errors.Join(errs...)
}

// Driver carries a flow on PostgreSQL tables (watermill-sql's queue schema).
type Driver struct {
	cfg    Config
	pool   *pgxpool.Pool
	db     wsql.Beginner
	logger watermill.LoggerAdapter
	pub    *wsql.Publisher
}

var _ driver.Driver = (*Driver)(nil)

// Open builds the driver on pool; it opens nothing until used.
func Open(cfg Config, pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("pgdriver: Open needs a pool")
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	d := &Driver{cfg: cfg, pool: pool, db: wsql.BeginnerFromPgx(pool), logger: logger}
	pub, err := wsql.NewPublisher(d.db, wsql.PublisherConfig{SchemaAdapter: queueSchema(cfg.SubscribeBatchSize)}, logger)
	if err != nil {
		return nil, fmt.Errorf("pgdriver: publisher: %w", err)
	}
	d.pub = pub
	return d, nil
}

// Durable is true: every message is a committed row.
func (d *Driver) Durable() bool { return true }

// Subscriber consumes the topics of one kind; the stored topic keeps its
// handled rows.
func (d *Driver) Subscriber(kind driver.Kind) (message.Subscriber, error) {
	return NewSubscriber(d.db, d.cfg, kind.Kept(), d.logger)
}

// NewSubscriber is the subscriber configuration every topic uses (and the
// universal pub/sub suite checks); keep leaves handled rows in the table.
func NewSubscriber(db wsql.Beginner, cfg Config, keep bool, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	ack := cfg.AckDeadline
	return wsql.NewSubscriber(db, wsql.SubscriberConfig{
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.PollInterval,
		RetryInterval:  100 * time.Millisecond,
		AckDeadline:    &ack,
		SchemaAdapter:  queueSchema(cfg.SubscribeBatchSize),
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: !keep},
	}, logger)
}

// NewPublisher publishes to the driver's tables; the universal pub/sub
// suite uses it with autoInit.
func NewPublisher(db wsql.ContextExecutor, cfg Config, autoInit bool, logger watermill.LoggerAdapter) (*wsql.Publisher, error) {
	return wsql.NewPublisher(db, wsql.PublisherConfig{SchemaAdapter: queueSchema(cfg.SubscribeBatchSize), AutoInitializeSchema: autoInit}, logger)
}

// Publisher publishes in its own transaction.
func (d *Driver) Publisher() message.Publisher { return nonClosing{d.pub} }

// HandlerPublisher publishes inside the transaction of the message being
// handled (the subscriber's), so the output commits atomically with the
// input's ack; outside a handler it publishes in its own.
func (d *Driver) HandlerPublisher() message.Publisher {
	return &txPublisher{schema: queueSchema(d.cfg.SubscribeBatchSize), logger: d.logger, fallback: d.pub}
}

// Middleware makes each delivery attempt atomic: the subscriber keeps its
// transaction when a message is nacked and hands the same message over
// again, so an attempt runs inside a savepoint, and a failed one (nacked)
// leaves nothing behind that it published or wrote.
func (d *Driver) Middleware() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			tx, ok := deliveryTx(msg)
			if !ok || tx.Conn().IsClosed() {
				return h(msg)
			}
			ctx := msg.Context()
			attempt, err := tx.Begin(ctx)
			if err != nil {
				return nil, fmt.Errorf("pgdriver: savepoint: %w", err)
			}
			out, err := h(msg)
			if err != nil {
				if rbErr := attempt.Rollback(context.WithoutCancel(ctx)); rbErr != nil && !tx.Conn().IsClosed() {
					err = errors.Join(err, fmt.Errorf("pgdriver: roll back the attempt: %w", rbErr))
				}
				return out, err
			}
			if err := attempt.Commit(ctx); err != nil {
				return nil, fmt.Errorf("pgdriver: release the attempt's savepoint: %w", err)
			}
			return out, nil
		}
	}
}

// BeginWrite opens a savepoint in the delivery's transaction: a failed
// write rolls back to it and leaves the transaction usable for the poison
// message and the ack.
func (d *Driver) BeginWrite(msg *message.Message) (pgx.Tx, error) {
	if tx, ok := deliveryTx(msg); ok {
		if tx.Conn().IsClosed() {
			return nil, driver.ErrDeliveryLost
		}
		return tx.Begin(msg.Context())
	}
	return d.pool.Begin(msg.Context())
}

// Lost reports that msg's transaction lost its connection: nothing it did
// can commit; acking lets the subscriber find out at once (its ack fails,
// the transaction rolls back) and take the message again on a new one.
func (d *Driver) Lost(msg *message.Message) bool {
	tx, ok := deliveryTx(msg)
	return ok && tx.Conn().IsClosed()
}

// deliveryTx is the subscriber's transaction msg is handled in.
func deliveryTx(msg *message.Message) (pgx.Tx, bool) {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return nil, false
	}
	ptx, ok := tx.(*wsql.PgxTx)
	if !ok {
		return nil, false
	}
	return ptx.Tx, true
}

// FansOutResults is false: a result row is consumed by one instance.
func (d *Driver) FansOutResults() bool { return false }

// Health is nil: the database check of the service covers this driver.
func (d *Driver) Health(context.Context) error { return nil }

// Close releases the shared publisher; the pool belongs to the caller.
func (d *Driver) Close() error { return d.pub.Close() }

// txPublisher publishes inside the transaction of the message being
// handled. Outside a handler it falls back to a pool publisher.
type txPublisher struct {
	schema   wsql.SchemaAdapter
	logger   watermill.LoggerAdapter
	fallback message.Publisher
}

func (p *txPublisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) > 0 {
		if tx, ok := wsql.TxFromContext(msgs[0].Context()); ok {
			pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: p.schema}, p.logger)
			if err != nil {
				return err
			}
			return pub.Publish(topic, msgs...)
		}
	}
	return p.fallback.Publish(topic, msgs...)
}

// Close does nothing: the fallback publisher belongs to the driver.
func (p *txPublisher) Close() error { return nil }

// nonClosing lends the driver's publisher.
type nonClosing struct{ message.Publisher }

// Close does nothing: the publisher belongs to the driver.
func (nonClosing) Close() error { return nil }
