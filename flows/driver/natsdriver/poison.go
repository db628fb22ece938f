package natsdriver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raceflow/raceflow/flows/driver"
)

// Poison is the poison queue: the poison stream, where a message's id is
// its stream sequence. Requeue publishes, then deletes: a crash in between
// leaves the message requeued and still listed (requeueing it again is
// harmless, the writes being idempotent), never lost.
func (d *Driver) Poison() driver.PoisonQueue { return poisonQueue{d} }

type poisonQueue struct{ d *Driver }

func (q poisonQueue) stream() string {
	return streamName(driver.PoisonTopic(q.d.cfg.Namespace).String())
}

// all reads the stream's messages, oldest first. A flow that never ran has
// no stream: an empty queue.
func (q poisonQueue) all(ctx context.Context) ([]driver.PoisonMessage, error) {
	info, err := q.d.js.StreamInfo(q.stream(), nats.Context(ctx))
	if errors.Is(err, nats.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natsdriver: poison stream: %w", err)
	}
	var out []driver.PoisonMessage
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := q.get(ctx, seq)
		if errors.Is(err, driver.ErrPoisonNotFound) {
			continue // deleted: requeued or purged
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (q poisonQueue) get(ctx context.Context, seq uint64) (driver.PoisonMessage, error) {
	raw, err := q.d.js.GetMsg(q.stream(), seq, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) || errors.Is(err, nats.ErrStreamNotFound) {
		return driver.PoisonMessage{}, fmt.Errorf("%w: %d", driver.ErrPoisonNotFound, seq)
	}
	if err != nil {
		return driver.PoisonMessage{}, fmt.Errorf("natsdriver: poison message %d: %w", seq, err)
	}
	msg, err := storedMessage(raw)
	if err != nil {
		return driver.PoisonMessage{}, fmt.Errorf("natsdriver: poison message %d: %w", seq, err)
	}
	return driver.NewPoisonMessage(int64(seq), msg.UUID, raw.Time, msg.Payload, msg.Metadata), nil
}

// List returns the poison messages f selects, newest first.
func (q poisonQueue) List(ctx context.Context, f driver.PoisonFilter) ([]driver.PoisonMessage, error) {
	msgs, err := q.all(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(msgs, func(m driver.PoisonMessage) bool { return !f.Match(m) })
	slices.SortFunc(out, func(a, b driver.PoisonMessage) int { return cmp.Compare(b.ID, a.ID) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Get returns one poison message, payload included.
func (q poisonQueue) Get(ctx context.Context, id int64) (driver.PoisonMessage, error) {
	if id <= 0 {
		return driver.PoisonMessage{}, fmt.Errorf("%w: %d", driver.ErrPoisonNotFound, id)
	}
	return q.get(ctx, uint64(id))
}

// Requeue publishes each selected message back to the topic it failed on,
// oldest first, and then deletes it from the poison stream. Explicit IDs
// must all exist.
func (q poisonQueue) Requeue(ctx context.Context, sel driver.PoisonSelector) (int, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
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
		all, err := q.all(ctx)
		if err != nil {
			return 0, err
		}
		msgs = slices.DeleteFunc(all, func(m driver.PoisonMessage) bool { return !sel.Match(m) })
	}
	pub := q.d.Publisher()
	for i, m := range msgs {
		topic, out, err := driver.RequeueMessage(q.d.cfg.Namespace, m)
		if err != nil {
			return i, err
		}
		if err := pub.Publish(topic.String(), out); err != nil {
			return i, fmt.Errorf("natsdriver: requeue poison message %d to %s: %w", m.ID, topic, err)
		}
		if err := q.d.js.DeleteMsg(q.stream(), uint64(m.ID), nats.Context(ctx)); err != nil {
			return i + 1, fmt.Errorf("natsdriver: requeue: delete poison message %d (it was requeued): %w", m.ID, err)
		}
	}
	return len(msgs), nil
}

// Purge deletes poison messages poisoned before cutoff and returns how many.
func (q poisonQueue) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	msgs, err := q.all(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range msgs {
		if !m.CreatedAt.Before(cutoff) {
			continue
		}
		if err := q.d.js.DeleteMsg(q.stream(), uint64(m.ID), nats.Context(ctx)); err != nil {
			return n, fmt.Errorf("natsdriver: purge poison message %d: %w", m.ID, err)
		}
		n++
	}
	return n, nil
}

// Summary reads the stream's messages (the stream keeps no index by race).
func (q poisonQueue) Summary(ctx context.Context) (driver.PoisonSummary, error) {
	msgs, err := q.all(ctx)
	return driver.Summarize(msgs), err
}
