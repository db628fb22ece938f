package memdriver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/flows/driver"
)

// errClosed: the driver was closed.
var errClosed = errors.New("memdriver: closed")

// broker holds every topic's queue. A topic's messages are delivered one at
// a time per subscription, in publishing order; a nacked or unfinished
// message goes back to the front of its queue.
type broker struct {
	now func() time.Time

	mu       sync.Mutex
	queues   map[string]*queue
	poison   []poisoned
	nextID   int64
	closed   bool
	closing  chan struct{}
	changed  chan struct{} // closed and replaced whenever a queue gains a message
	inflight map[string]int
}

type entry struct {
	msg *message.Message
	at  time.Time
}

type queue struct {
	entries []entry
	// seen remembers the last ids published, oldest first in order: a
	// stage redone after a failure republishes its outputs under the same
	// ids, and they are dropped, as JetStream drops a repeat within its
	// duplicate window.
	seen  map[string]struct{}
	order []string
}

// dedupWindow is how many recent ids of a topic are remembered.
const dedupWindow = 10_000

// fresh records id and reports whether it was not seen recently.
func (q *queue) fresh(id string) bool {
	if _, ok := q.seen[id]; ok {
		return false
	}
	if q.seen == nil {
		q.seen = map[string]struct{}{}
	}
	q.seen[id] = struct{}{}
	q.order = append(q.order, id)
	if len(q.order) > dedupWindow {
		delete(q.seen, q.order[0])
		q.order = q.order[1:]
	}
	return true
}

type poisoned struct {
	id    int64
	at    time.Time
	topic string
	msg   *message.Message
}

func newBroker(now func() time.Time) *broker {
	return &broker{now: now, queues: map[string]*queue{}, closing: make(chan struct{}),
		changed: make(chan struct{}), inflight: map[string]int{}}
}

func (b *broker) publish(topic string, msgs []*message.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	now := b.now()
	if driver.KindOf(topic) == driver.Poison {
		for _, m := range msgs {
			b.nextID++
			b.poison = append(b.poison, poisoned{id: b.nextID, at: now, topic: topic, msg: m.Copy()})
		}
		return nil
	}
	q := b.queue(topic)
	for _, m := range msgs {
		if q.fresh(m.UUID) {
			q.entries = append(q.entries, entry{msg: m.Copy(), at: now})
		}
	}
	b.signal()
	return nil
}

func (b *broker) queue(topic string) *queue {
	q, ok := b.queues[topic]
	if !ok {
		q = &queue{}
		b.queues[topic] = q
	}
	return q
}

// signal wakes every waiting subscription; b.mu is held.
func (b *broker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// take removes the head of topic's queue, or says what to wait on.
func (b *broker) take(topic string) (entry, bool, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(topic)
	if len(q.entries) == 0 {
		return entry{}, false, b.changed
	}
	e := q.entries[0]
	q.entries = q.entries[1:]
	b.inflight[topic]++
	return e, true, nil
}

// settle ends a delivery: an unacked message goes back to the front.
func (b *broker) settle(topic string, e entry, acked bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight[topic]--
	if acked {
		return
	}
	q := b.queue(topic)
	q.entries = append([]entry{e}, q.entries...)
	b.signal()
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.closing)
	}
}

func (b *broker) drop(namespace string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range b.queues {
		if t, err := driver.ParseTopic(name); err == nil && t.Namespace == namespace {
			delete(b.queues, name)
		}
	}
	b.poison = slices.DeleteFunc(b.poison, func(p poisoned) bool {
		t, err := driver.ParseTopic(p.topic)
		return err == nil && t.Namespace == namespace
	})
}

func (b *broker) stats(namespace string) []driver.QueueStat {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var out []driver.QueueStat
	for name, q := range b.queues {
		t, err := driver.ParseTopic(name)
		if err != nil || t.Namespace != namespace {
			continue
		}
		st := driver.QueueStat{Topic: t, Backlog: int64(len(q.entries) + b.inflight[name])}
		if len(q.entries) > 0 {
			st.OldestAge = now.Sub(q.entries[0].at)
		}
		out = append(out, st)
	}
	pt := driver.PoisonTopic(namespace)
	st := driver.QueueStat{Topic: pt}
	for _, p := range b.poison {
		if p.topic == pt.String() {
			if st.Backlog == 0 {
				st.OldestAge = now.Sub(p.at)
			}
			st.Backlog++
		}
	}
	return append(out, st)
}

// publisher publishes to the broker; closing it does nothing.
type publisher struct{ b *broker }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	return p.b.publish(topic, msgs)
}

// Close does nothing: the broker belongs to the driver.
func (publisher) Close() error { return nil }

// subscriber is one router's (or test's) view of the broker: closing it ends
// its own subscriptions.
type subscriber struct {
	b       *broker
	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

func (b *broker) subscriber() *subscriber { return &subscriber{b: b, closing: make(chan struct{})} }

// Subscribe delivers topic's messages one at a time until ctx ends or the
// subscriber closes; the output channel is closed then.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	out := make(chan *message.Message)
	sctx, cancel := context.WithCancel(ctx)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		select {
		case <-sctx.Done():
		case <-s.closing:
		case <-s.b.closing:
		}
		cancel()
	}()
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer cancel()
		for s.deliver(sctx, topic, out) {
		}
	}()
	return out, nil
}

// deliver hands out one message and waits until it is settled; false ends
// the subscription (ctx ended: the subscription's context, the subscriber's
// or the driver's close).
func (s *subscriber) deliver(ctx context.Context, topic string, out chan<- *message.Message) bool {
	var e entry
	for {
		got, ok, wait := s.b.take(topic)
		if ok {
			e = got
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		}
	}
	msg := e.msg.Copy()
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(mctx)
	select {
	case out <- msg:
	case <-ctx.Done():
		s.b.settle(topic, e, false)
		return false
	}
	select {
	case <-msg.Acked():
		s.b.settle(topic, e, true)
		return true
	case <-msg.Nacked():
		s.b.settle(topic, e, false)
		return true
	case <-ctx.Done():
		s.b.settle(topic, e, false)
		return false
	}
}

// Close ends the subscriber's subscriptions and waits for them.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
