package natsdriver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// newSubscriber subscribes to one kind of topic. Shared subscribers bind
// to the topic's durable consumer (created by ensure); a fan-out subscriber
// gets an ephemeral consumer of its own that starts at new messages.
func (d *Driver) newSubscriber(fanOut bool) (*natsSubscriber, error) {
	opts := []nats.SubOpt{nats.ManualAck()}
	durable := func(_, topic string) string { return streamName(topic) }
	group := func(topic string) string { return streamName(topic) }
	if fanOut {
		opts = append(opts, nats.DeliverNew(), nats.AckExplicit(), nats.AckWait(d.cfg.AckWait))
		durable = func(string, string) string { return "" }
		group = func(string) string { return "" }
	}
	// watermill-nats appends to this slice per subscription.
	opts = slices.Clip(opts)
	cfg := wnats.SubscriberConfig{
		SubscribersCount: 1,
		// Watermill's own wait for the handler: the whole handling, retries
		// included. JetStream's AckWait is kept alive meanwhile.
		AckWaitTimeout: d.cfg.AckDeadline,
		CloseTimeout:   d.cfg.CloseTimeout,
		Unmarshaler:    trackingUnmarshaler{raw: &d.raw},
		NakDelay:       nakBackoff{max: d.cfg.NakBackoffMax},
		SubjectCalculator: func(_, topic string) *wnats.SubjectDetail {
			return &wnats.SubjectDetail{Primary: topic, QueueGroup: group(topic)}
		},
		JetStream: wnats.JetStreamConfig{SubscribeOptions: opts, DurableCalculator: durable},
	}
	return &natsSubscriber{d: d, cfg: cfg.GetSubscriberSubscriptionConfig(), closed: make(chan struct{})}, nil
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
	d      *Driver
	cfg    wnats.SubscriberSubscriptionConfig
	mu     sync.Mutex
	subs   []*natsSubscription
	closed chan struct{}
}

// natsSubscription is one Subscribe call.
type natsSubscription struct {
	d          *Driver
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
	return s.d.ensure(topic)
}

// Subscribe binds to the topic's consumer until ctx ends or Close.
func (s *natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.d.ensure(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return nil, errors.New("natsdriver: subscriber is closed")
	default:
	}
	sub := &natsSubscription{d: s.d, connClosed: make(chan struct{}), stopping: make(chan struct{}),
		stopped: make(chan struct{}), pumped: make(chan struct{})}
	conn, err := nats.Connect(s.d.cfg.URL, append(natsOptions(s.d.cfg, "subscriber"),
		nats.ClosedHandler(func(*nats.Conn) { close(sub.connClosed) }))...)
	if err != nil {
		return nil, fmt.Errorf("NATS is %w at %s: %w", driver.ErrUnavailable, config.RedactDSN(s.d.cfg.URL), err)
	}
	sub.conn = conn
	if sub.wsub, err = wnats.NewSubscriberWithNatsConn(conn, s.cfg, closingLogger{s.d.logger, sub.stopping}); err != nil {
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
				sub.d.raw.Delete(msg)
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
			s.d.raw.Delete(m)
			m.Nack() // a no-op for a message already acked
			delete(s.pending, m)
		}
		s.mu.Unlock()
		if drainErr := s.conn.Drain(); drainErr != nil && !errors.Is(drainErr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("natsdriver: drain subscription: %w", drainErr)
		}
		timeout := time.After(s.d.cfg.CloseTimeout)
		select {
		case <-s.connClosed:
		case <-timeout:
			err = errors.Join(err, errors.New("natsdriver: subscription did not drain in time"))
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
			err = errors.Join(err, errors.New("natsdriver: subscription did not close in time"))
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
// message, so a running handler can keep it alive (holdAndAck).
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

// holdAndAck tells JetStream the message is being worked on while the handler
// runs, so AckWait can stay short (a quick hand-over when an instance dies)
// however long a fetch with retries takes. It also acks a handled message
// itself, synchronously, inside the engine's tracked region: watermill-nats
// would ack after the router returns, which can race a closing subscriber's
// connection drain and lose the ack (a redelivery after every shutdown).
// Clearing the reply subject tells watermill-nats the ack is done.
func (d *Driver) holdAndAck(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		v, ok := d.raw.Load(msg)
		if !ok {
			return h(msg)
		}
		defer d.raw.Delete(msg) // after the handler: Delivery reads it
		raw := v.(*nats.Msg)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(d.cfg.AckWait / 3)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if err := raw.InProgress(); err != nil {
						d.logger.Error("natsdriver: keep message alive", err, watermill.LogFields{"message_uuid": msg.UUID})
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
			d.logger.Info("natsdriver: ack lost; the message will be redelivered", watermill.LogFields{
				"message_uuid": msg.UUID, "error": ackErr.Error()})
		}
		raw.Reply = ""
		return out, nil
	}
}

// streamConfig is the stream of a topic: work queues for the hand-offs
// (gone once acked), interest for results (gone once every instance has
