package natsdriver

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// Stored reads the stored topic's streams. Scanning reads headers only (an
// ordered consumer), loading reads messages by sequence.
func (d *Driver) Stored() (driver.StoredTopic, error) { return stored{d}, nil }

type stored struct{ d *Driver }

// streams lists the namespace's topics that have a stream.
func (d *Driver) streams(ctx context.Context) ([]driver.Topic, error) {
	prefix := streamName(d.cfg.Namespace + ".")
	var out []driver.Topic
	for name := range d.js.StreamNames(nats.Context(ctx), d.ownStreams()) {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		// Stream names replace the topic's dots: rebuild the topic.
		t, err := driver.ParseTopic(d.cfg.Namespace + "." + strings.ReplaceAll(rest, "_", "."))
		if err == nil {
			out = append(out, t)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b driver.Topic) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Shard, b.Shard))
	})
	return out, nil
}

// Topics lists the stored topic of every shard that has a stream.
func (s stored) Topics(ctx context.Context) ([]driver.Topic, error) {
	all, err := s.d.streams(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(t driver.Topic) bool { return t.Kind != driver.Fetched }), nil
}

func (s stored) Scan(ctx context.Context, topic driver.Topic, raceIDs []string, fn func(driver.StoredPoll)) error {
	info, err := s.d.js.StreamInfo(streamName(topic.String()), nats.Context(ctx))
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	sub, err := s.d.js.SubscribeSync(topic.String(), nats.OrderedConsumer(), nats.HeadersOnly(), nats.DeliverAll())
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	last := info.State.LastSeq
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		raceID := msg.Header.Get(handlers.KeyRaceID)
		if len(raceIDs) == 0 || slices.Contains(raceIDs, raceID) {
			fn(driver.StoredPoll{Offset: int64(md.Sequence.Stream), RaceID: raceID,
				PollID: msg.Header.Get(handlers.KeyPollID), ObservedAt: msg.Header.Get(handlers.KeyObservedAt)})
		}
		if md.Sequence.Stream >= last {
			return nil
		}
	}
}

func (s stored) Load(ctx context.Context, topic driver.Topic, offsets []int64, fn func(int64, *message.Message, error)) error {
	for _, offset := range offsets {
		raw, err := s.d.js.GetMsg(streamName(topic.String()), uint64(offset), nats.Context(ctx))
		if errors.Is(err, nats.ErrMsgNotFound) {
			continue // expired since the scan: reported as missing
		}
		if err != nil {
			return err
		}
		msg, err := storedMessage(raw)
		fn(offset, msg, err)
	}
	return nil
}

// QueueStats reads each stream of the flow: for a stage topic, what its
// consumer has yet to deliver or have acked, and the age of the stream's
// first message (a work queue keeps only unhandled ones); for poison, the
// stream's messages.
func (d *Driver) QueueStats(ctx context.Context) ([]driver.QueueStat, error) {
	topics, err := d.streams(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []driver.QueueStat
	for _, t := range topics {
		name := streamName(t.String())
		info, err := d.js.StreamInfo(name, nats.Context(ctx))
		if err != nil {
			return nil, err
		}
		st := driver.QueueStat{Topic: t}
		switch t.Kind {
		case driver.Poison:
			st.Backlog = int64(info.State.Msgs)
		case driver.Processed:
			continue // one ephemeral consumer per instance: no shared backlog
		default:
			ci, err := d.js.ConsumerInfo(name, name, nats.Context(ctx))
			if errors.Is(err, nats.ErrConsumerNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			st.Backlog = int64(ci.NumPending) + int64(ci.NumAckPending)
		}
		if st.Backlog > 0 && !info.State.FirstTime.IsZero() && t.Kind != driver.Fetched {
			st.OldestAge = now.Sub(info.State.FirstTime)
		}
		out = append(out, st)
	}
	return out, nil
}
