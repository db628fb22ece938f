package memdriver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// errClosed: the driver was closed.
var errClosed = errors.New("memdriver: closed")

// broker holds every topic's queue. A topic is worked as the postgres
// driver works it: strictly in order, one message at a time, or (keyed) up
// to a subscription's parallel at a time, never two of one race; a nacked
// or unfinished message goes back to where it was.
type broker struct {
	now func() time.Time

	mu      sync.Mutex
	queues  map[string]*queue
	poison  []poisoned
	nextID  int64
	closed  bool
	closing chan struct{}
	changed chan struct{} // closed and replaced whenever a message can be taken
}

// entry is one message in a queue.
type entry struct {
	msg        *message.Message
	at         time.Time
	race       string
	deliveries int
	lastError  string
}

type queue struct {
	entries  []*entry
	inflight map[*entry]struct{}
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
	return &broker{now: now, queues: map[string]*queue{}, closing: make(chan struct{}), changed: make(chan struct{})}
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
			q.entries = append(q.entries, &entry{msg: m.Copy(), at: now, race: m.Metadata.Get(handlers.KeyRaceID)})
		}
	}
	b.signal()
	return nil
}

func (b *broker) queue(topic string) *queue {
	q, ok := b.queues[topic]
	if !ok {
		q = &queue{inflight: map[*entry]struct{}{}}
		b.queues[topic] = q
	}
	return q
}

// signal wakes every waiting subscription; b.mu is held.
func (b *broker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// take hands out the next message of topic that may go now (the oldest;
// keyed: the oldest whose race has nothing earlier waiting or in flight),
// or says what to wait on.
func (b *broker) take(topic string, keyed bool) (*entry, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(topic)
	if !keyed {
		if len(q.inflight) > 0 || len(q.entries) == 0 {
			return nil, b.changed
		}
		return q.hand(0), nil
	}
	busy := map[string]bool{}
	for e := range q.inflight {
		busy[e.race] = true
	}
	for i, e := range q.entries {
		if !busy[e.race] {
			return q.hand(i), nil
		}
		busy[e.race] = true // later messages of the race wait behind this one
	}
	return nil, b.changed
}

// hand moves entry i in flight; b.mu is held.
func (q *queue) hand(i int) *entry {
	e := q.entries[i]
	q.entries = slices.Delete(q.entries, i, i+1)
	q.inflight[e] = struct{}{}
	e.deliveries++
	return e
}

// settle ends a delivery: an unacked message goes back to its place (the
// front: nothing of its race was handed out meanwhile).
func (b *broker) settle(topic string, e *entry, acked bool, lastError string, handedOut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue(topic)
	delete(q.inflight, e)
	if !handedOut {
		e.deliveries-- // taken but never handed to a handler
	}
	if !acked {
		if lastError != "" {
			e.lastError = lastError
		}
		q.entries = slices.Insert(q.entries, 0, e)
	}
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
		st := driver.QueueStat{Topic: t, Backlog: int64(len(q.entries) + len(q.inflight))}
		oldest := time.Time{}
		for _, e := range q.entries {
			if oldest.IsZero() || e.at.Before(oldest) {
				oldest = e.at
			}
		}
		for e := range q.inflight {
			if oldest.IsZero() || e.at.Before(oldest) {
				oldest = e.at
			}
		}
		if !oldest.IsZero() {
			st.OldestAge = now.Sub(oldest)
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
	b        *broker
	parallel int
	mu       sync.Mutex
	closed   bool
	closing  chan struct{}
	wg       sync.WaitGroup
}

func (b *broker) subscriber(parallel int) *subscriber {
	return &subscriber{b: b, parallel: max(parallel, 1), closing: make(chan struct{})}
}

// infoKey keys a delivery's count and last error in its message's context.
type infoKey struct{}

type deliveryInfo struct {
	count     int
	lastError string
}

// Subscribe hands out topic's messages until ctx ends or the subscriber
// closes; the output channel is closed then.
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
		s.run(sctx, topic, out)
	}()
	return out, nil
}

// run hands out messages, at most parallel at a time, until ctx ends.
func (s *subscriber) run(ctx context.Context, topic string, out chan<- *message.Message) {
	slots := make(chan struct{}, s.parallel)
	var deliveries sync.WaitGroup
	defer deliveries.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		e, wait := s.b.take(topic, s.parallel > 1)
		if e == nil {
			<-slots
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return
			}
		}
		deliveries.Add(1)
		go func() {
			defer deliveries.Done()
			defer func() { <-slots }()
			s.deliver(ctx, topic, e, out)
		}()
	}
}

// deliver hands e out and waits until it is settled.
func (s *subscriber) deliver(ctx context.Context, topic string, e *entry, out chan<- *message.Message) {
	msg := e.msg.Copy()
	mctx, cancel := context.WithCancel(context.WithValue(ctx, infoKey{}, deliveryInfo{count: e.deliveries, lastError: e.lastError}))
	defer cancel()
	msg.SetContext(mctx)
	select {
	case out <- msg:
	case <-ctx.Done():
		s.b.settle(topic, e, false, "", false)
		return
	}
	select {
	case <-msg.Acked():
		s.b.settle(topic, e, true, "", true)
	case <-msg.Nacked():
		s.b.settle(topic, e, false, msg.Metadata.Get(handlers.KeyLastError), true)
	case <-ctx.Done():
		s.b.settle(topic, e, false, "", true)
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
