// Package natsdriver is the NATS JetStream driver: every topic is a stream,
// every stage topic has one durable consumer that all instances share with
// at most one message outstanding (so a race's polls stay in order, each
// shard is worked by one instance at a time, and a dead instance's message
// goes to another after AckWait), and results fan out to every instance.
// PostgreSQL stays the store of record.
//
// Hand-offs are at-least-once (JetStream cannot commit with PostgreSQL): a
// stage's outputs carry ids derived from its input's, and JetStream drops a
// republished id within DuplicateWindow, so a redone stage duplicates
// nothing downstream, and the write stage is idempotent.
package natsdriver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// Config shapes the driver. Start from DefaultConfig.
type Config struct {
	// Namespace of the flow whose topics the driver carries.
	Namespace string
	// URL of the NATS server or cluster (NATS_URL); secrets in it never
	// reach the logs.
	URL string
	// AckWait is how long JetStream waits for a handler's ack before it
	// gives the message to another instance. A running handler keeps its
	// message alive (every AckWait/3), so this bounds the hand-over after an
	// instance dies, not the handling time.
	AckWait time.Duration
	// AckDeadline bounds one message's handling, retries included.
	AckDeadline time.Duration
	// CloseTimeout bounds how long closing a subscription waits for it to
	// drain.
	CloseTimeout time.Duration
	// DuplicateWindow is how long JetStream remembers message ids. A stage
	// output's id is derived from its input's, so a stage redone after a
	// crash publishes nothing twice within the window.
	DuplicateWindow time.Duration
	// StoredRetention is how long the kept topics (race.fetched, poison)
	// keep messages; replay reads them.
	StoredRetention time.Duration
	// NakBackoffMax caps the delay before a nacked message is redelivered:
	// none the first time (a shutdown hands it over at once), then doubling
	// from 100ms. 0 redelivers at once every time.
	NakBackoffMax time.Duration
	// Replicas of every stream (1 on a single server; 3 on a cluster).
	Replicas int
	// Name identifies this process's connections on the server.
	Name string
}

// DefaultConfig is a single local server.
func DefaultConfig() Config {
	return Config{
		Namespace:       config.DefaultNamespace,
		URL:             nats.DefaultURL,
		AckWait:         5 * time.Second,
		AckDeadline:     60 * time.Second,
		CloseTimeout:    30 * time.Second,
		DuplicateWindow: 10 * time.Minute,
		StoredRetention: config.DefaultRetention,
		NakBackoffMax:   2 * time.Second,
		Replicas:        1,
		Name:            "raceflow",
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := config.ValidNamespace(c.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("natsdriver: %w", err))
	}
	if c.URL == "" {
		errs = append(errs, errors.New("natsdriver: nats url is empty"))
	}
	if c.AckWait < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("natsdriver: ack wait %s must be at least 300ms", c.AckWait))
	}
	if c.AckDeadline <= 0 || c.CloseTimeout <= 0 {
		errs = append(errs, errors.New("natsdriver: ack deadline and close timeout must be positive"))
	}
	if c.DuplicateWindow < c.AckWait {
		errs = append(errs, fmt.Errorf("natsdriver: duplicate window %s must be at least the ack wait %s", c.DuplicateWindow, c.AckWait))
	}
	if c.StoredRetention <= 0 {
		errs = append(errs, errors.New("natsdriver: stored retention must be positive"))
	}
	if c.NakBackoffMax < 0 {
		errs = append(errs, errors.New("natsdriver: nak backoff must not be negative"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("natsdriver: replicas %d must be within 1..5", c.Replicas))
	}
	return errors.Join(errs...)
}

// streamPrefix starts the name of every stream and consumer raceflow owns.
const streamPrefix = "raceflow_"

// streamName is the stream (and durable consumer) name of a topic: one
// stream per topic, as the postgres driver has one table per topic. Stream
// names may not contain dots.
func streamName(topic string) string {
	return streamPrefix + strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(topic)
}

// Driver carries a flow on JetStream streams.
type Driver struct {
	pool   *pgxpool.Pool
	cfg    Config
	logger watermill.LoggerAdapter
	conn   *nats.Conn // stream and consumer management, reads of kept topics
	js     nats.JetStreamContext

	pubOnce sync.Once
	pub     *wnats.Publisher
	pubErr  error

	// kindOf resolves a topic's kind; the universal pub/sub suite pins it.
	kindOf func(topic string) driver.Kind

	ensured sync.Map // topic → struct{}: stream and consumer exist
	raw     sync.Map // *message.Message → *nats.Msg while delivered
}

var _ driver.Driver = (*Driver)(nil)

func natsOptions(cfg Config, role string) []nats.Option {
	return []nats.Option{
		nats.Name(cfg.Name + "-" + role),
		nats.RetryOnFailedConnect(false),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
}

// dial connects the management connection and checks JetStream.
func dial(cfg Config) (*nats.Conn, nats.JetStreamContext, error) {
	conn, err := nats.Connect(cfg.URL, natsOptions(cfg, "admin")...)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS is %w at %s: %w", driver.ErrUnavailable, config.RedactDSN(cfg.URL), err)
	}
	js, err := conn.JetStream()
	if err == nil {
		_, err = js.AccountInfo()
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("NATS JetStream is %w at %s (start nats-server with -js): %w", driver.ErrUnavailable, config.RedactDSN(cfg.URL), err)
	}
	return conn, js, nil
}

// Open connects to NATS; pool is the database of record, where the write
// stage's transactions run.
func Open(cfg Config, pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	conn, js, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	return &Driver{pool: pool, cfg: cfg, logger: logger, conn: conn, js: js, kindOf: driver.KindOf}, nil
}

// publisher is the driver's one publisher, connected on first use.
func (d *Driver) publisher() (*wnats.Publisher, error) {
	d.pubOnce.Do(func() { d.pub, d.pubErr = d.newPublisher() })
	return d.pub, d.pubErr
}

func (d *Driver) newPublisher() (*wnats.Publisher, error) {
	return wnats.NewPublisher(wnats.PublisherConfig{
		URL:         d.cfg.URL,
		NatsOptions: natsOptions(d.cfg, "publisher"),
		Marshaler:   &wnats.NATSMarshaler{},
		// The message's uuid is its JetStream id: a stage output's uuid is
		// derived from its input's, which makes a redone stage's publish a
		// duplicate that JetStream drops.
		JetStream: wnats.JetStreamConfig{TrackMsgId: true},
	}, d.logger)
}

// Namespace is the flow whose topics the driver carries.
func (d *Driver) Namespace() string { return d.cfg.Namespace }

// Durable is true: streams are stored on the server.
func (d *Driver) Durable() bool { return true }

// Subscriber consumes the topics of kind: stage topics through their shared
// durable consumer, results through an ephemeral consumer of this instance
// (every instance receives every result). A shard is handed out one message
// at a time across all instances, whatever parallel asks: JetStream keeps
// no order per race within a consumer that has several outstanding.
func (d *Driver) Subscriber(kind driver.Kind, _ int) (message.Subscriber, error) {
	return d.newSubscriber(kind == driver.Processed)
}

// Publisher publishes to the streams; closing it does nothing.
func (d *Driver) Publisher() message.Publisher { return lazyPublisher{d} }

// HandlerPublisher is the same shared publisher.
func (d *Driver) HandlerPublisher() message.Publisher { return lazyPublisher{d} }

// lazyPublisher lends the driver's publisher, connecting it on first use.
type lazyPublisher struct{ d *Driver }

func (p lazyPublisher) Publish(topic string, msgs ...*message.Message) error {
	pub, err := p.d.publisher()
	if err != nil {
		return err
	}
	return pub.Publish(topic, msgs...)
}

// Close does nothing: the publisher belongs to the driver.
func (lazyPublisher) Close() error { return nil }

// Middleware keeps a running handler's message alive and acks it.
func (d *Driver) Middleware() message.HandlerMiddleware { return d.holdAndAck }

// BeginWrite opens a transaction on the database of record.
func (d *Driver) BeginWrite(msg *message.Message) (pgx.Tx, error) { return d.pool.Begin(msg.Context()) }

// BeginWriteGroup opens one transaction on the database of record for the
// writes of msgs; their acks are JetStream's, outside it.
func (d *Driver) BeginWriteGroup(msgs []*message.Message) (pgx.Tx, error) {
	if len(msgs) == 0 {
		return nil, errors.New("natsdriver: a write group needs a message")
	}
	return d.pool.Begin(msgs[0].Context())
}

// Lost is false: a delivery has no transaction to lose.
func (d *Driver) Lost(*message.Message) bool { return false }

// Delivery is how often JetStream has delivered msg (durable); the broker
// keeps no reason for a failure.
func (d *Driver) Delivery(msg *message.Message) (int, string) {
	v, ok := d.raw.Load(msg)
	if !ok {
		return 0, ""
	}
	md, err := v.(*nats.Msg).Metadata()
	if err != nil {
		return 0, ""
	}
	return int(md.NumDelivered), ""
}

// Collectors are none.
func (d *Driver) Collectors() []prometheus.Collector { return nil }

// FansOutResults is true.
func (d *Driver) FansOutResults() bool { return true }

// Health reports NATS unreachable while a connection is down (the client
// reconnects on its own).
func (d *Driver) Health(context.Context) error {
	if !d.conn.IsConnected() {
		return fmt.Errorf("NATS is %w (%s)", driver.ErrUnavailable, d.conn.Status())
	}
	return nil
}

// Init creates the topics' streams and consumers.
func (d *Driver) Init(_ context.Context, topics []driver.Topic) error {
	for _, t := range topics {
		if err := d.ensure(t.String()); err != nil {
			return err
		}
	}
	return nil
}

// Prune does nothing: the kept streams expire messages themselves (MaxAge
// = StoredRetention).
func (d *Driver) Prune(context.Context, time.Time, int) (int64, error) { return 0, nil }

// Close releases the publisher and the management connection; the
// subscribers close with the router.
func (d *Driver) Close() error {
	var err error
	if d.pub != nil {
		err = d.pub.Close()
	}
	d.conn.Close()
	return err
}

// streamConfig is the stream of a topic: work queues for the hand-offs and
// the alerts (gone once acked), interest for results (gone once every
// instance has them), and limits with retention for the kept topics.
func (d *Driver) streamConfig(topic string) *nats.StreamConfig {
	sc := &nats.StreamConfig{
		Name:       streamName(topic),
		Subjects:   []string{topic},
		Storage:    nats.FileStorage,
		Replicas:   d.cfg.Replicas,
		Duplicates: d.cfg.DuplicateWindow,
		Retention:  nats.LimitsPolicy,
		Discard:    nats.DiscardOld,
	}
	switch d.kindOf(topic) {
	case driver.Poll, driver.Transformed, driver.Written:
		sc.Retention = nats.WorkQueuePolicy
	case driver.Alerts:
		// Consumed by the notifier like a hand-off; an alert no notifier
		// took within the stored topic's retention is dropped (the alerts
		// table keeps it).
		sc.Retention = nats.WorkQueuePolicy
		sc.MaxAge = d.cfg.StoredRetention
	case driver.Processed:
		sc.Retention = nats.InterestPolicy
	case driver.Fetched, driver.Poison:
		sc.MaxAge = d.cfg.StoredRetention
	}
	return sc
}

// consumerConfig is the shared durable consumer of a stage topic: one
// message outstanding at a time keeps a shard's order across instances.
func (d *Driver) consumerConfig(topic string) *nats.ConsumerConfig {
	name := streamName(topic)
	return &nats.ConsumerConfig{
		Durable:        name,
		DeliverSubject: "raceflow.deliver." + name,
		DeliverGroup:   name,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        d.cfg.AckWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
		FilterSubject:  topic,
	}
}

// ensure creates or updates the topic's stream and, for a stage topic, its
// durable consumer. Stream and consumer settings that JetStream cannot
// change in place (retention) are reported, not silently kept.
func (d *Driver) ensure(topic string) error {
	if _, ok := d.ensured.Load(topic); ok {
		return nil
	}
	sc := d.streamConfig(topic)
	info, err := d.js.StreamInfo(sc.Name)
	if errors.Is(err, nats.ErrStreamNotFound) {
		var addErr error
		if info, addErr = d.js.AddStream(sc); addErr != nil {
			// Another instance starting at the same moment may have
			// created it first: the server then answers "name already in
			// use" or, as often, "subjects overlap with an existing
			// stream". Either way, look again.
			if info, err = d.js.StreamInfo(sc.Name); err != nil {
				return fmt.Errorf("natsdriver: create stream %s: %w", sc.Name, addErr)
			}
		}
		err = nil
	}
	switch {
	case err != nil:
		return fmt.Errorf("natsdriver: stream %s: %w", sc.Name, err)
	case info.Config.Retention != sc.Retention:
		return fmt.Errorf("natsdriver: stream %s has retention %s, want %s (delete it to change)", sc.Name, info.Config.Retention, sc.Retention)
	case info.Config.MaxAge != sc.MaxAge || info.Config.Duplicates != sc.Duplicates || info.Config.Replicas != sc.Replicas:
		if _, err := d.js.UpdateStream(sc); err != nil {
			return fmt.Errorf("natsdriver: update stream %s: %w", sc.Name, err)
		}
	}
	if kind := d.kindOf(topic); kind != driver.Processed && kind != driver.Poison {
		cc := d.consumerConfig(topic)
		if _, err := d.js.ConsumerInfo(sc.Name, cc.Durable); errors.Is(err, nats.ErrConsumerNotFound) {
			if _, err := d.js.AddConsumer(sc.Name, cc); err != nil {
				// As for the stream: another instance may have been first.
				if _, again := d.js.ConsumerInfo(sc.Name, cc.Durable); again != nil {
					return fmt.Errorf("natsdriver: create consumer %s: %w", cc.Durable, err)
				}
			}
		} else if err != nil {
			return fmt.Errorf("natsdriver: consumer %s: %w", cc.Durable, err)
		} else if _, err := d.js.UpdateConsumer(sc.Name, cc); err != nil {
			return fmt.Errorf("natsdriver: update consumer %s: %w", cc.Durable, err)
		}
	}
	d.ensured.Store(topic, struct{}{})
	return nil
}

// ownStreams asks the server for the streams of the namespace's topics
// only. The server lists names a page at a time, by offset: on a server
// holding many streams, one created or deleted meanwhile shifts the pages
// and a listing of them all can miss one of ours.
func (d *Driver) ownStreams() nats.JSOpt { return nats.StreamListFilter(d.cfg.Namespace + ".>") }

// Drop deletes the streams (and so the consumers and messages) of the
// namespace's flow.
func (d *Driver) Drop(ctx context.Context) error {
	prefix := streamName(d.cfg.Namespace + ".")
	var errs []error
	for name := range d.js.StreamNames(nats.Context(ctx), d.ownStreams()) {
		if strings.HasPrefix(name, prefix) {
			if err := d.js.DeleteStream(name, nats.Context(ctx)); err != nil {
				errs = append(errs, fmt.Errorf("natsdriver: delete stream %s: %w", name, err))
			}
		}
	}
	d.ensured.Clear()
	return errors.Join(errs...)
}

// storedMessage is a message read from a stream by sequence, decoded as the
// subscribers decode it (the uuid and metadata from its headers).
func storedMessage(raw *nats.RawStreamMsg) (*message.Message, error) {
	return (&wnats.NATSMarshaler{}).Unmarshal(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
}
