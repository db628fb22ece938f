package memdriver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/flows/driver"
)

// poisonQueue is the in-process poison queue: the messages this process
// poisoned, by an id counted from 1.
type poisonQueue struct{ d *Driver }

func (q poisonQueue) topic() string { return driver.PoisonTopic(q.d.cfg.Namespace).String() }

// mine returns the queue's messages, oldest first.
func (q poisonQueue) mine() []driver.PoisonMessage {
	b := q.d.broker
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []driver.PoisonMessage
	for _, p := range b.poison {
		if p.topic == q.topic() {
			md := make(map[string]string, len(p.msg.Metadata))
			for k, v := range p.msg.Metadata {
				md[k] = v
			}
			out = append(out, driver.NewPoisonMessage(p.id, p.msg.UUID, p.at, slices.Clone(p.msg.Payload), md))
		}
	}
	return out
}

// List returns the poison messages f selects, newest first.
func (q poisonQueue) List(_ context.Context, f driver.PoisonFilter) ([]driver.PoisonMessage, error) {
	out := slices.DeleteFunc(q.mine(), func(m driver.PoisonMessage) bool { return !f.Match(m) })
	slices.SortFunc(out, func(a, b driver.PoisonMessage) int { return cmp.Compare(b.ID, a.ID) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Get returns one poison message.
func (q poisonQueue) Get(_ context.Context, id int64) (driver.PoisonMessage, error) {
	for _, m := range q.mine() {
		if m.ID == id {
			return m, nil
		}
	}
	return driver.PoisonMessage{}, fmt.Errorf("%w: %d", driver.ErrPoisonNotFound, id)
}

// Requeue publishes the selected messages back, oldest first, and removes
// them from the queue.
func (q poisonQueue) Requeue(ctx context.Context, sel driver.PoisonSelector) (int, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	all := q.mine()
	var msgs []driver.PoisonMessage
	if len(sel.IDs) > 0 {
		for _, id := range sel.IDs {
			m, err := q.Get(ctx, id)
			if err != nil {
				return 0, err
			}
			msgs = append(msgs, m)
		}
		slices.SortFunc(msgs, func(a, b driver.PoisonMessage) int { return cmp.Compare(a.ID, b.ID) })
	} else {
		msgs = slices.DeleteFunc(all, func(m driver.PoisonMessage) bool { return !sel.Match(m) })
	}
	for i, m := range msgs {
		topic, out, err := driver.RequeueMessage(q.d.cfg.Namespace, m)
		if err != nil {
			return i, err
		}
		if err := q.d.broker.publish(topic.String(), []*message.Message{out}); err != nil {
			return i, err
		}
		q.remove(func(id int64) bool { return id == m.ID })
	}
	return len(msgs), nil
}

// Purge deletes the messages poisoned before cutoff.
func (q poisonQueue) Purge(_ context.Context, cutoff time.Time) (int64, error) {
	var ids []int64
	for _, m := range q.mine() {
		if m.CreatedAt.Before(cutoff) {
			ids = append(ids, m.ID)
		}
	}
	q.remove(func(id int64) bool { return slices.Contains(ids, id) })
	return int64(len(ids)), nil
}

func (q poisonQueue) remove(match func(id int64) bool) {
	b := q.d.broker
	b.mu.Lock()
	defer b.mu.Unlock()
	b.poison = slices.DeleteFunc(b.poison, func(p poisoned) bool { return p.topic == q.topic() && match(p.id) })
}

// Summary counts the in-process queue.
func (q poisonQueue) Summary(context.Context) (driver.PoisonSummary, error) {
	return driver.Summarize(q.mine()), nil
}
