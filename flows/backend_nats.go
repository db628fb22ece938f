package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/raceflow/raceflow/config"
)

// NATSConfig shapes the NATS JetStream backend. PostgreSQL stays the store
// of record; JetStream carries the messages between stages.
type NATSConfig struct {
	// URL of the NATS server or cluster (NATS_URL); secrets in it never
	// reach the logs.
	URL string
	// AckWait is how long JetStream waits for a handler's ack before it
	// gives the message to another instance. A running handler keeps its
	// message alive (every AckWait/3), so this bounds the hand-over after an
	// instance dies, not the handling time.
	AckWait time.Duration
	// DuplicateWindow is how long JetStream remembers message ids. A stage
	// output's id is derived from its input's, so a stage redone after a
	// crash publishes nothing twice within the window.
	DuplicateWindow time.Duration
	// StoredRetention is how long the stored topics (race.fetched, poison)
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

// DefaultNATSConfig is a single local server.
func DefaultNATSConfig() NATSConfig {
	return NATSConfig{
		URL:             nats.DefaultURL,
		AckWait:         5 * time.Second,
		DuplicateWindow: 10 * time.Minute,
		StoredRetention: 7 * 24 * time.Hour,
		NakBackoffMax:   2 * time.Second,
		Replicas:        1,
		Name:            "raceflow",
	}
}

// Validate checks the configuration.
func (c NATSConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("flows: nats url is empty"))
	}
	if c.AckWait < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("flows: nats ack wait %s must be at least 300ms", c.AckWait))
	}
	if c.DuplicateWindow < c.AckWait {
		errs = append(errs, fmt.Errorf("flows: nats duplicate window %s must be at least the ack wait %s", c.DuplicateWindow, c.AckWait))
	}
	if c.StoredRetention <= 0 {
		errs = append(errs, errors.New("flows: nats stored retention must be positive"))
	}
	if c.NakBackoffMax < 0 {
		errs = append(errs, errors.New("flows: nats nak backoff must not be negative"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("flows: nats replicas %d must be within 1..5", c.Replicas))
	}
	return errors.Join(errs...)
}

// streamPrefix starts the name of every stream and consumer raceflow owns.
const streamPrefix = "raceflow_"

// natsName is the stream (and durable consumer) name of a topic: one stream
// per topic, as the postgres backend has one table per topic. Stream names
// may not contain dots.
func natsName(topic string) string {
	return streamPrefix + strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(topic)
}

// topicKind is the kind of one of the flow's topics ("" for other topics).
func topicKind(topic string) string {
	parts := strings.Split(topic, ".")
	switch {
	case len(parts) == 2 && parts[1] == kindPoison:
		return kindPoison
	case len(parts) == 3:
		return parts[1]
	}
	return ""
}

// natsBackend runs the flow over NATS JetStream. Every topic is a stream;
// every stage topic has one durable consumer that all instances share with
// at most one message outstanding, so a race's polls stay in order, each
// shard is worked by one instance at a time, and a dead instance's message
// goes to another after AckWait. Results fan out: every instance has its
// own consumer of race.processed, so the leader's scheduler sees them all.
//
// Hand-offs are at-least-once (JetStream cannot commit with PostgreSQL); a
// stage's outputs carry ids derived from its input's, and JetStream drops a
// republished id within DuplicateWindow, so a redone stage duplicates
// nothing downstream, and the write stage is idempotent.
type natsBackend struct {
	pool   *pgxpool.Pool
	cfg    Config
	logger watermill.LoggerAdapter
	conn   *nats.Conn // stream and consumer management
	js     nats.JetStreamContext
	subs   map[string]*natsSubscriber
	pub    *wnats.Publisher

	// kindOf resolves a topic's kind; the universal pub/sub suite pins it.
	kindOf func(topic string) string

	ensured sync.Map // topic → struct{}: stream and consumer exist
	raw     sync.Map // *message.Message → *nats.Msg while delivered
}

func natsOptions(cfg NATSConfig, role string) []nats.Option {
	return []nats.Option{
		nats.Name(cfg.Name + "-" + role),
		nats.RetryOnFailedConnect(false),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
}

// ErrNATSUnavailable: the NATS server did not answer.
var ErrNATSUnavailable = errors.New("flows: NATS is unavailable")

// dialNATS connects the management connection and checks JetStream.
func dialNATS(cfg NATSConfig) (*nats.Conn, nats.JetStreamContext, error) {
	conn, err := nats.Connect(cfg.URL, natsOptions(cfg, "admin")...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w at %s: %w", ErrNATSUnavailable, config.RedactDSN(cfg.URL), err)
	}
	js, err := conn.JetStream()
	if err == nil {
		_, err = js.AccountInfo()
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: no JetStream at %s (start nats-server with -js): %w", ErrNATSUnavailable, config.RedactDSN(cfg.URL), err)
	}
	return conn, js, nil
}

func newNATSBackend(pool *pgxpool.Pool, cfg Config, logger watermill.LoggerAdapter) (*natsBackend, error) {
	conn, js, err := dialNATS(cfg.NATS)
	if err != nil {
		return nil, err
	}
	b := &natsBackend{pool: pool, cfg: cfg, logger: logger, conn: conn, js: js, subs: map[string]*natsSubscriber{}, kindOf: topicKind}
	for _, kind := range []string{kindPoll, kindFetched, kindTransformed, kindProcessed} {
		sub, err := b.newSubscriber(kind == kindProcessed)
		if err != nil {
			_ = b.close()
			return nil, fmt.Errorf("flows: %s subscriber: %w", kind, err)
		}
		b.subs[kind] = sub
	}
	if b.pub, err = b.newPublisher(); err != nil {
		_ = b.close()
		return nil, fmt.Errorf("flows: publisher: %w", err)
	}
	return b, nil
}

func (b *natsBackend) newPublisher() (*wnats.Publisher, error) {
	return wnats.NewPublisher(wnats.PublisherConfig{
		URL:         b.cfg.NATS.URL,
		NatsOptions: natsOptions(b.cfg.NATS, "publisher"),
		Marshaler:   &wnats.NATSMarshaler{},
		// The message's uuid is its JetStream id: a stage output's uuid is
		// derived from its input's (derivedUUID), which makes a redone
		// stage's publish a duplicate that JetStream drops.
		JetStream: wnats.JetStreamConfig{TrackMsgId: true},
	}, b.logger)
}

// newSubscriber subscribes to one kind of topic. Shared subscribers bind
// to the topic's durable consumer (created by ensure); a fan-out subscriber
// gets an ephemeral consumer of its own that starts at new messages.
func (b *natsBackend) newSubscriber(fanOut bool) (*natsSubscriber, error) {
	opts := []nats.SubOpt{nats.ManualAck()}
	durable := func(_, topic string) string { return natsName(topic) }
	group := func(topic string) string { return natsName(topic) }
	if fanOut {
		opts = append(opts, nats.DeliverNew(), nats.AckExplicit(), nats.AckWait(b.cfg.NATS.AckWait))
		durable = func(string, string) string { return "" }
		group = func(string) string { return "" }
	}
	// watermill-nats appends to this slice per subscription.
	opts = slices.Clip(opts)
	cfg := wnats.SubscriberConfig{
		SubscribersCount: 1,
		// Watermill's own wait for the handler: the whole handling, retries
		// included. JetStream's AckWait is kept alive meanwhile.
		AckWaitTimeout: b.cfg.AckDeadline,
		CloseTimeout:   b.cfg.CloseTimeout,
		Unmarshaler:    trackingUnmarshaler{raw: &b.raw},
		NakDelay:       nakBackoff{max: b.cfg.NATS.NakBackoffMax},
		SubjectCalculator: func(_, topic string) *wnats.SubjectDetail {
			return &wnats.SubjectDetail{Primary: topic, QueueGroup: group(topic)}
		},
		JetStream: wnats.JetStreamConfig{SubscribeOptions: opts, DurableCalculator: durable},
	}
	return &natsSubscriber{b: b, cfg: cfg.GetSubscriberSubscriptionConfig(), closed: make(chan struct{})}, nil
}

// natsSubscriber subscribes through watermill-nats, with our own stream and
// consumer configuration and a clean end to every subscription.
//
// watermill-nats closes a subscription's output channel (when its context
// ends or the subscriber closes) while a NATS callback may still be sending
// to it: a data race the race detector reports, and a send on a closed
// channel that panics. So every subscription here has a watermill-nats
// subscriber and a NATS connection of its own, and ends in this order:
// nack what was handed out and never settled, drain the connection (every
// callback returns, every ack is flushed), and only then let watermill-nats
// close the output. A message that arrives meanwhile is nacked, so
// JetStream gives it to another instance at once.
type natsSubscriber struct {
	b      *natsBackend
	cfg    wnats.SubscriberSubscriptionConfig
	mu     sync.Mutex
	subs   []*natsSubscription
	closed chan struct{}
}

// natsSubscription is one Subscribe call.
type natsSubscription struct {
	b          *natsBackend
	wsub       *wnats.Subscriber
	conn       *nats.Conn
	connClosed chan struct{}
	cancel     context.CancelFunc // ends watermill-nats's subscription, after the drain
	stopping   chan struct{}
	stopOnce   sync.Once
	stopped    chan struct{} // the stop is complete; stopErr is its outcome
	stopErr    error
	pumped     chan struct{} // closed with the output channel

	mu      sync.Mutex
	pending map[*message.Message]struct{} // handed out, not yet acked or nacked
}

// SubscribeInitialize creates the topic's stream and consumer.
func (s *natsSubscriber) SubscribeInitialize(topic string) error {
	return s.b.ensure(topic)
}

// Subscribe binds to the topic's consumer until ctx ends or Close.
func (s *natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.b.ensure(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return nil, errors.New("flows: nats: subscriber is closed")
	default:
	}
	sub := &natsSubscription{b: s.b, connClosed: make(chan struct{}), stopping: make(chan struct{}),
		stopped: make(chan struct{}), pumped: make(chan struct{})}
	conn, err := nats.Connect(s.b.cfg.NATS.URL, append(natsOptions(s.b.cfg.NATS, "subscriber"),
		nats.ClosedHandler(func(*nats.Conn) { close(sub.connClosed) }))...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrNATSUnavailable, config.RedactDSN(s.b.cfg.NATS.URL), err)
	}
	sub.conn = conn
	if sub.wsub, err = wnats.NewSubscriberWithNatsConn(conn, s.cfg, closingLogger{s.b.logger, sub.stopping}); err != nil {
		conn.Close()
		return nil, err
	}
	// watermill-nats gets a context only this subscription cancels, after
	// its connection has drained.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sub.cancel = cancel
	in, err := sub.wsub.Subscribe(wctx, topic)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(sub.pumped)
		defer close(out)
		for msg := range in {
			sub.hold(msg)
			select {
			case out <- msg:
			case <-sub.stopping:
				sub.b.raw.Delete(msg)
				msg.Nack()
			}
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = sub.stop()
		case <-sub.stopping:
		}
	}()
	s.subs = append(s.subs, sub)
	return out, nil
}

// Close ends every subscription; when it returns, every output channel is
// closed.
func (s *natsSubscriber) Close() error {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return nil
	default:
	}
	close(s.closed)
	subs := s.subs
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.stop())
	}
	return errors.Join(errs...)
}

// hold records msg as handed out, and forgets those settled since (a shared
// consumer has one message outstanding, so the set stays tiny).
func (s *natsSubscription) hold(msg *message.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[*message.Message]struct{}{}
	}
	for m := range s.pending {
		select {
		case <-m.Acked():
			delete(s.pending, m)
		case <-m.Nacked():
			delete(s.pending, m)
		default:
		}
	}
	s.pending[msg] = struct{}{}
}

// stop ends the subscription: nack the unsettled, drain, then let
// watermill-nats close the output. Every caller waits until the output is
// closed.
func (s *natsSubscription) stop() error {
	s.stopOnce.Do(func() {
		defer close(s.stopped)
		var err error
		defer func() { s.stopErr = err }()
		close(s.stopping)
		s.mu.Lock()
		for m := range s.pending {
			s.b.raw.Delete(m)
			m.Nack() // a no-op for a message already acked
			delete(s.pending, m)
		}
		s.mu.Unlock()
		if drainErr := s.conn.Drain(); drainErr != nil && !errors.Is(drainErr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("flows: nats: drain subscription: %w", drainErr)
		}
		timeout := time.After(s.b.cfg.CloseTimeout)
		select {
		case <-s.connClosed:
		case <-timeout:
			err = errors.Join(err, errors.New("flows: nats: subscription did not drain in time"))
			s.conn.Close()
		}
		s.cancel()
		// It drains the connection again: already closed, as intended.
		if closeErr := s.wsub.Close(); closeErr != nil && !errors.Is(closeErr, nats.ErrConnectionClosed) {
			err = errors.Join(err, closeErr)
		}
		select {
		case <-s.pumped:
		case <-timeout:
			err = errors.Join(err, errors.New("flows: nats: subscription did not close in time"))
		}
	})
	<-s.stopped
	return s.stopErr
}

// closingLogger quiets what watermill-nats reports once its connection has
// been drained on purpose (unsubscribing on a closed connection).
type closingLogger struct {
	watermill.LoggerAdapter
	stopping chan struct{}
}

func (l closingLogger) Error(msg string, err error, fields watermill.LogFields) {
	select {
	case <-l.stopping:
		if errors.Is(err, nats.ErrConnectionClosed) {
			l.LoggerAdapter.Debug(msg+": "+err.Error(), fields)
			return
		}
	default:
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l closingLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return closingLogger{l.LoggerAdapter.With(fields), l.stopping}
}

// nakBackoff delays the redelivery of a nacked message: not at all the
// first time (a shutdown hands it over at once), then doubling from 100ms up
// to max (0: never), so a message that keeps failing to publish its output (NATS in
// trouble) does not re-run its stage, and re-fetch the API, in a tight loop.
type nakBackoff struct{ max time.Duration }

func (d nakBackoff) WaitTime(delivered uint64) time.Duration {
	if delivered <= 1 || d.max <= 0 {
		return 0
	}
	wait := 100 * time.Millisecond
	for n := uint64(2); n < delivered && wait < d.max; n++ {
		wait *= 2
	}
	return min(wait, d.max)
}

// trackingUnmarshaler remembers the JetStream message behind each Watermill
// message, so a running handler can keep it alive (keepAlive).
type trackingUnmarshaler struct {
	wnats.NATSMarshaler
	raw *sync.Map
}

func (u trackingUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	msg, err := u.NATSMarshaler.Unmarshal(m)
	if err != nil {
		return nil, err
	}
	u.raw.Store(msg, m)
	return msg, nil
}

// keepAlive tells JetStream the message is being worked on while the handler
// runs, so AckWait can stay short (a quick hand-over when an instance dies)
// however long a fetch with retries takes. It also acks a handled message
// itself, synchronously, inside the engine's tracked region: watermill-nats
// would ack after the router returns, which can race a closing subscriber's
// connection drain and lose the ack (a redelivery after every shutdown).
// Clearing the reply subject tells watermill-nats the ack is done.
func (b *natsBackend) keepAlive(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		v, ok := b.raw.LoadAndDelete(msg)
		if !ok {
			return h(msg)
		}
		raw := v.(*nats.Msg)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(b.cfg.NATS.AckWait / 3)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if err := raw.InProgress(); err != nil {
						b.logger.Error("flows: nats: keep message alive", err, watermill.LogFields{"message_uuid": msg.UUID})
					}
				}
			}
		}()
		out, err := h(msg)
		close(stop)
		<-done
		if err != nil {
			return out, err // watermill-nats naks it
		}
		if ackErr := raw.AckSync(); ackErr != nil {
			// The work is done and its outputs published: a redelivery
			// redoes it, and JetStream drops the republished outputs.
			b.logger.Info("flows: nats: ack lost; the message will be redelivered", watermill.LogFields{
				"message_uuid": msg.UUID, "error": ackErr.Error()})
		}
		raw.Reply = ""
		return out, nil
	}
}

// streamConfig is the stream of a topic: work queues for the hand-offs
// (gone once acked), interest for results (gone once every instance has
// them), and limits with retention for the stored topics.
func (b *natsBackend) streamConfig(topic string) *nats.StreamConfig {
	sc := &nats.StreamConfig{
		Name:       natsName(topic),
		Subjects:   []string{topic},
		Storage:    nats.FileStorage,
		Replicas:   b.cfg.NATS.Replicas,
		Duplicates: b.cfg.NATS.DuplicateWindow,
		Retention:  nats.LimitsPolicy,
		Discard:    nats.DiscardOld,
	}
	switch b.kindOf(topic) {
	case kindPoll, kindTransformed:
		sc.Retention = nats.WorkQueuePolicy
	case kindProcessed:
		sc.Retention = nats.InterestPolicy
	case kindFetched, kindPoison:
		sc.MaxAge = b.cfg.NATS.StoredRetention
	}
	return sc
}

// consumerConfig is the shared durable consumer of a stage topic: one
// message outstanding at a time keeps a shard's order across instances.
func (b *natsBackend) consumerConfig(topic string) *nats.ConsumerConfig {
	name := natsName(topic)
	return &nats.ConsumerConfig{
		Durable:        name,
		DeliverSubject: "raceflow.deliver." + name,
		DeliverGroup:   name,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        b.cfg.NATS.AckWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
		FilterSubject:  topic,
	}
}

// ensure creates or updates the topic's stream and, for a stage topic, its
// durable consumer. Stream and consumer settings that JetStream cannot
// change in place (retention) are reported, not silently kept.
func (b *natsBackend) ensure(topic string) error {
	if _, ok := b.ensured.Load(topic); ok {
		return nil
	}
	sc := b.streamConfig(topic)
	info, err := b.js.StreamInfo(sc.Name)
	switch {
	case errors.Is(err, nats.ErrStreamNotFound):
		if _, err := b.js.AddStream(sc); err != nil && !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("flows: nats: create stream %s: %w", sc.Name, err)
		}
	case err != nil:
		return fmt.Errorf("flows: nats: stream %s: %w", sc.Name, err)
	case info.Config.Retention != sc.Retention:
		return fmt.Errorf("flows: nats: stream %s has retention %s, want %s (delete it to change)", sc.Name, info.Config.Retention, sc.Retention)
	case info.Config.MaxAge != sc.MaxAge || info.Config.Duplicates != sc.Duplicates || info.Config.Replicas != sc.Replicas:
		if _, err := b.js.UpdateStream(sc); err != nil {
			return fmt.Errorf("flows: nats: update stream %s: %w", sc.Name, err)
		}
	}
	if b.kindOf(topic) != kindProcessed && b.kindOf(topic) != kindPoison {
		cc := b.consumerConfig(topic)
		if _, err := b.js.ConsumerInfo(sc.Name, cc.Durable); errors.Is(err, nats.ErrConsumerNotFound) {
			if _, err := b.js.AddConsumer(sc.Name, cc); err != nil {
				return fmt.Errorf("flows: nats: create consumer %s: %w", cc.Durable, err)
			}
		} else if err != nil {
			return fmt.Errorf("flows: nats: consumer %s: %w", cc.Durable, err)
		} else if _, err := b.js.UpdateConsumer(sc.Name, cc); err != nil {
			return fmt.Errorf("flows: nats: update consumer %s: %w", cc.Durable, err)
		}
	}
	b.ensured.Store(topic, struct{}{})
	return nil
}

func (b *natsBackend) subscriber(kind string) message.Subscriber { return b.subs[kind] }

func (b *natsBackend) publisher() message.Publisher { return b.pub }

// handlerPublisher shares the backend's publisher (the router closes a
// handler's publisher when the handler stops).
func (b *natsBackend) handlerPublisher() message.Publisher { return nonClosingPublisher{b.pub} }

func (b *natsBackend) begin(msg *message.Message) (pgx.Tx, error) {
	return b.pool.Begin(msg.Context())
}

func (b *natsBackend) init(_ context.Context, topics map[string][]string) error {
	for _, ts := range topics {
		for _, topic := range ts {
			if err := b.ensure(topic); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *natsBackend) fanOutResults() bool { return true }

func (b *natsBackend) middleware() message.HandlerMiddleware { return b.keepAlive }

// health reports NATS unreachable while a connection is down (the client
// reconnects on its own).
func (b *natsBackend) health() error {
	if !b.conn.IsConnected() {
		return fmt.Errorf("%w: %s", ErrNATSUnavailable, b.conn.Status())
	}
	return nil
}

func (b *natsBackend) close() error {
	var errs []error
	for _, s := range b.subs {
		errs = append(errs, s.Close())
	}
	if b.pub != nil {
		errs = append(errs, b.pub.Close())
	}
	b.conn.Close()
	return errors.Join(errs...)
}

// storedMessage is a message read from a stream by sequence, decoded as the
// subscribers decode it (the uuid and metadata from its headers).
func storedMessage(raw *nats.RawStreamMsg) (*message.Message, error) {
	return (&wnats.NATSMarshaler{}).Unmarshal(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
}

// nonClosingPublisher lends a shared publisher to a router handler.
type nonClosingPublisher struct{ message.Publisher }

// Close does nothing: the publisher belongs to the backend.
func (nonClosingPublisher) Close() error { return nil }

// DeleteNATSStreams deletes the streams (and so the consumers and messages)
// of namespace's flow: for throw-away flows such as benchmarks.
func DeleteNATSStreams(cfg NATSConfig, namespace string) error {
	if err := validNamespace(namespace); err != nil {
		return err
	}
	conn, js, err := dialNATS(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	prefix := natsName(namespace + ".")
	var errs []error
	for name := range js.StreamNames() {
		if strings.HasPrefix(name, prefix) {
			if err := js.DeleteStream(name); err != nil {
				errs = append(errs, fmt.Errorf("flows: delete stream %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}
