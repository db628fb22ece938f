package flows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// Shutdown order matters where handlers run inside the subscriber's
// transaction (postgres): a subscriber that is closed stops waiting for the
// in-flight message and ends its transaction at once, while the handler may
// still be using that connection (pgx connections are not safe for
// concurrent use). So the engine closes a subscriber only after
// every handler invocation has returned, and refuses new messages (they are
// redelivered) while it waits.

// errClosing refuses a message that arrives while the engine shuts down.
var errClosing = errors.New("flows: engine is closing")

// track counts handler invocations in flight and turns messages away while
// closing. It is the outermost middleware.
func (e *Engine) track(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		e.flight.Lock()
		if e.closing {
			e.flight.Unlock()
			return nil, &redeliver{errClosing}
		}
		e.inFlight++
		e.flight.Unlock()
		defer func() {
			e.flight.Lock()
			e.inFlight--
			if e.inFlight == 0 && e.idle != nil {
				close(e.idle)
				e.idle = nil
			}
			e.flight.Unlock()
		}()
		out, err := h(msg)
		if err != nil {
			// The driver keeps it for the message's next delivery (and a
			// message that keeps failing is poisoned with it).
			msg.Metadata.Set(handlers.KeyLastError, err.Error())
		}
		if err != nil && e.drv.Lost(msg) {
			// Nothing the message did can commit any more. A nack would make
			// the subscriber resend it into the same dead transaction until
			// the ack deadline (refetching the API each time); an ack lets it
			// find out at once (its ack query fails, the batch rolls back)
			// and take the message again on a new connection.
			e.log.WithError(err).WithField("handler", message.HandlerNameFromCtx(msg.Context())).
				Warn("flows: the message's transaction lost its connection; it is redelivered")
			return nil, nil
		}
		return out, err
	}
}

// quiesce stops new handler invocations and waits for running ones, at most
// the close timeout.
func (e *Engine) quiesce() {
	e.flight.Lock()
	e.closing = true
	if e.inFlight == 0 {
		e.flight.Unlock()
		return
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
	}
	idle := e.idle
	e.flight.Unlock()
	select {
	case <-idle:
	case <-time.After(e.cfg.CloseTimeout):
		e.log.Warn("flows: handlers still running at close timeout")
	}
}

// drainingSubscriber quiesces the engine before closing the subscriber.
// The router cancels its subscriptions' context as soon as it starts closing,
// so subscriptions get a context without that cancellation and end only when
// Close has let running handlers finish.
type drainingSubscriber struct {
	message.Subscriber
	e *Engine
}

func (s drainingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.Subscriber.Subscribe(context.WithoutCancel(ctx), topic)
}

func (s drainingSubscriber) Close() error {
	s.e.quiesce()
	return s.Subscriber.Close()
}

// publishOutputs publishes what a stage produced itself, to the handler's
// output topic, instead of leaving it to the router: the router publishes
// after the middleware chain has returned, which is outside track and so
// could race a closing subscriber's commit on the same connection. A failed
// publish is not poison: the message is redelivered.
func (e *Engine) publishOutputs(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil || len(out) == 0 {
			return nil, err
		}
		return nil, e.publishDerived(msg, message.PublishTopicFromCtx(msg.Context()), out)
	}
}

// publishDerived publishes the outputs of msg to topic, with ids derived
// from msg's (derivedUUID). A failed publish is not poison: the message is
// redelivered.
func (e *Engine) publishDerived(msg *message.Message, topic string, out []*message.Message) error {
	for i, m := range out {
		m.UUID = derivedUUID(msg.UUID, fmt.Sprintf("%s#%d", topic, i))
		if driver.KindOf(topic) == driver.Processed {
			m.Metadata.Set(keyProducer, e.instance)
		}
	}
	if err := e.outputPub.Publish(topic, out...); err != nil {
		return &redeliver{err}
	}
	return nil
}
