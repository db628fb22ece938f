package flows

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// backend is a message transport: where handlers subscribe, how they
// publish, and which transaction the write stage uses.
type backend interface {
	// subscriber consumes the topics of one kind.
	subscriber(kind string) message.Subscriber
	// handlerPublisher is a new publisher for one router handler (the router
	// closes it when the handler stops). It publishes inside the input
	// message's transaction when there is one.
	handlerPublisher() message.Publisher
	// publisher publishes from outside a handler (poll requests).
	publisher() message.Publisher
	// begin opens the write stage's transaction for msg.
	begin(msg *message.Message) (pgx.Tx, error)
	// init prepares the topics before anything publishes to them.
	init(ctx context.Context, topics map[string][]string) error
	// fanOutResults says every instance receives every result (otherwise
	// each result reaches one consumer).
	fanOutResults() bool
	// middleware wraps every handler, outermost.
	middleware() message.HandlerMiddleware
	// health reports a lost connection to the message broker.
	health() error
	close() error
}

func noMiddleware(h message.HandlerFunc) message.HandlerFunc { return h }

// Topic kinds.
const (
	kindPoll        = "poll"
	kindFetched     = "fetched"
	kindTransformed = "transformed"
	kindProcessed   = "processed"
	kindPoison      = "poison"
)

// ---- PostgreSQL ----

// errTxLost means the subscriber's transaction lost its connection: no retry
// inside it can help; the message is redelivered on a new one (drain.go).
var errTxLost = errors.New("flows: the subscriber transaction lost its connection")

// postgresBackend runs every topic on the watermill-sql queue schema. The
// queue schema does not depend on transaction ids, so an unrelated long
// transaction cannot stall delivery (watermill-notes.md §0.6), and each
// stage publishes its output in the subscriber's own transaction, which
// makes every hand-off exactly-once. race.fetched keeps acked rows: it is the
// stored topic that replay reads.
type postgresBackend struct {
	pool   *pgxpool.Pool
	db     wsql.Beginner
	cfg    Config
	logger watermill.LoggerAdapter
	subs   map[string]*wsql.Subscriber
	pub    *wsql.Publisher
}

func keepsRows(kind string) bool { return kind == kindFetched || kind == kindPoison }

// readCommittedQueue is the queue schema with READ COMMITTED subscriber
// transactions. The write stage runs inside the subscriber's transaction,
// and under the upstream default (REPEATABLE READ) two shards upserting the
// same meeting row fail with serialization errors that no retry inside the
// same transaction can fix. The queue schema does not need a snapshot: one
// subscriber owns each table and rows are locked FOR UPDATE.
type readCommittedQueue struct{ wsql.PostgreSQLQueueSchema }

func (readCommittedQueue) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelReadCommitted
}

// schemaLock serialises topic table creation: upstream's queue schema runs
// CREATE TABLE IF NOT EXISTS without a lock, and two processes (or two
// subscriptions) creating the same table at once fail with a duplicate
// pg_class entry.
const schemaLock = 0x72616365 // "race"

// SchemaInitializingQueries creates the topic table under an advisory lock.
func (q readCommittedQueue) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	queries, err := q.PostgreSQLQueueSchema.SchemaInitializingQueries(p)
	if err != nil {
		return nil, err
	}
	return append([]wsql.Query{{Query: "SELECT pg_advisory_xact_lock($1)", Args: []any{schemaLock}}}, queries...), nil
}

// RequiresTransaction makes watermill-sql run the initialisation in a
// transaction, so the advisory lock is held until the table exists.
func (readCommittedQueue) RequiresTransaction() bool { return true }

func queueSchema(cfg Config) readCommittedQueue {
	return readCommittedQueue{wsql.PostgreSQLQueueSchema{
		GeneratePayloadType: func(string) string { return "BYTEA" },
		SubscribeBatchSize:  cfg.SubscribeBatchSize,
	}}
}

func newPostgresBackend(pool *pgxpool.Pool, cfg Config, logger watermill.LoggerAdapter) (*postgresBackend, error) {
	b := &postgresBackend{pool: pool, db: wsql.BeginnerFromPgx(pool), cfg: cfg, logger: logger, subs: map[string]*wsql.Subscriber{}}
	for _, kind := range []string{kindPoll, kindFetched, kindTransformed, kindProcessed} {
		sub, err := newSQLSubscriber(b.db, cfg, keepsRows(kind), logger)
		if err != nil {
			return nil, fmt.Errorf("flows: %s subscriber: %w", kind, err)
		}
		b.subs[kind] = sub
	}
	pub, err := wsql.NewPublisher(b.db, wsql.PublisherConfig{SchemaAdapter: queueSchema(cfg)}, logger)
	if err != nil {
		return nil, fmt.Errorf("flows: publisher: %w", err)
	}
	b.pub = pub
	return b, nil
}

// newSQLSubscriber is the subscriber configuration every postgres topic
// uses (and the universal pub/sub suite checks).
func newSQLSubscriber(db wsql.Beginner, cfg Config, keep bool, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	ack := cfg.AckDeadline
	return wsql.NewSubscriber(db, wsql.SubscriberConfig{
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.PollInterval,
		RetryInterval:  100 * time.Millisecond,
		AckDeadline:    &ack,
		SchemaAdapter:  queueSchema(cfg),
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: !keep},
	}, logger)
}

func (b *postgresBackend) subscriber(kind string) message.Subscriber { return b.subs[kind] }

func (b *postgresBackend) publisher() message.Publisher { return b.pub }

func (b *postgresBackend) handlerPublisher() message.Publisher {
	return &txPublisher{schema: queueSchema(b.cfg), logger: b.logger, fallback: b.pub}
}

func (b *postgresBackend) begin(msg *message.Message) (pgx.Tx, error) {
	if tx, ok := wsql.TxFromContext(msg.Context()); ok {
		if ptx, ok := tx.(*wsql.PgxTx); ok {
			if ptx.Tx.Conn().IsClosed() {
				return nil, errTxLost
			}
			// A savepoint: a failed write rolls back to it and leaves the
			// subscriber's transaction usable for the poison message and ack.
			return ptx.Tx.Begin(msg.Context())
		}
	}
	return b.pool.Begin(msg.Context())
}

func (b *postgresBackend) init(ctx context.Context, topics map[string][]string) error {
	sub := b.subs[kindPoll]
	for kind, ts := range topics {
		for _, topic := range ts {
			if err := sub.SubscribeInitialize(topic); err != nil {
				return fmt.Errorf("flows: initialise topic %s: %w", topic, err)
			}
			if keepsRows(kind) {
				// Acked rows stay; without this index every poll would scan them.
				table := queueSchema(b.cfg).MessagesTable(topic)
				idx := pgx.Identifier{"watermill_" + topic + "_unacked"}.Sanitize()
				if _, err := b.pool.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+idx+` ON `+table+` ("offset") WHERE NOT acked`); err != nil {
					return fmt.Errorf("flows: index topic %s: %w", topic, err)
				}
			}
		}
	}
	return nil
}

func (b *postgresBackend) fanOutResults() bool { return false }

func (b *postgresBackend) middleware() message.HandlerMiddleware { return noMiddleware }

// health is nil: the database check covers this backend.
func (b *postgresBackend) health() error { return nil }

func (b *postgresBackend) close() error {
	var errs []error
	for _, s := range b.subs {
		errs = append(errs, s.Close())
	}
	errs = append(errs, b.pub.Close())
	return errors.Join(errs...)
}

// txPublisher publishes inside the transaction of the message being handled
// (the subscriber's), so the output commits atomically with the input's
// ack. Outside a handler it falls back to a pool publisher.
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

// Close does nothing: the fallback publisher belongs to the backend.
func (p *txPublisher) Close() error { return nil }

// ---- memory ----

// memoryBackend runs the flow on Go channels inside one process: fastest,
// but nothing survives the process and nothing is stored for replay.
type memoryBackend struct {
	pool   *pgxpool.Pool
	ch     *gochannel.GoChannel
	poison *gochannel.GoChannel
}

func newMemoryBackend(pool *pgxpool.Pool, logger watermill.LoggerAdapter) *memoryBackend {
	return &memoryBackend{
		pool: pool,
		ch:   gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, logger),
		// Poisoned messages have no subscriber; keep them for inspection.
		poison: gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger),
	}
}

func (b *memoryBackend) subscriber(string) message.Subscriber { return b.ch }
func (b *memoryBackend) publisher() message.Publisher         { return memoryPublisher{b} }
func (b *memoryBackend) handlerPublisher() message.Publisher  { return memoryPublisher{b} }
func (b *memoryBackend) begin(msg *message.Message) (pgx.Tx, error) {
	return b.pool.Begin(msg.Context())
}
func (b *memoryBackend) init(context.Context, map[string][]string) error { return nil }
func (b *memoryBackend) fanOutResults() bool                             { return false }
func (b *memoryBackend) middleware() message.HandlerMiddleware           { return noMiddleware }
func (b *memoryBackend) health() error                                   { return nil }
func (b *memoryBackend) close() error {
	return errors.Join(b.ch.Close(), b.poison.Close())
}

// memoryPublisher routes poison to its own channel and never closes the
// shared channel when the router closes a handler's publisher.
type memoryPublisher struct{ b *memoryBackend }

func (p memoryPublisher) Publish(topic string, msgs ...*message.Message) error {
	if isPoisonTopic(topic) {
		return p.b.poison.Publish(topic, msgs...)
	}
	return p.b.ch.Publish(topic, msgs...)
}
func (p memoryPublisher) Close() error { return nil }
