package flows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
)

// NATSPoisonStore inspects and manages the poison queue of a flow on the
// nats backend: the poison stream, where a message's id is its stream
// sequence. Requeue publishes, then deletes: a crash in between leaves the
// message requeued and still listed (requeueing it again is harmless, the
// writes being idempotent), never lost.
type NATSPoisonStore struct {
	// Namespace is the flow's (Config.Namespace); "" means the default.
	Namespace string
	conn      *nats.Conn
	js        nats.JetStreamContext
	pub       *wnats.Publisher
}

// OpenNATSPoisonStore connects to the poison stream of namespace's flow.
func OpenNATSPoisonStore(cfg NATSConfig, namespace string) (*NATSPoisonStore, error) {
	if namespace == "" {
		namespace = DefaultConfig().Namespace
	}
	if err := validNamespace(namespace); err != nil {
		return nil, err
	}
	conn, js, err := dialNATS(cfg)
	if err != nil {
		return nil, err
	}
	pub, err := wnats.NewPublisherWithNatsConn(conn, wnats.PublisherPublishConfig{
		Marshaler: &wnats.NATSMarshaler{}, SubjectCalculator: wnats.DefaultSubjectCalculator,
		JetStream: wnats.JetStreamConfig{TrackMsgId: true},
	}, watermill.NopLogger{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("flows: poison: publisher: %w", err)
	}
	return &NATSPoisonStore{Namespace: namespace, conn: conn, js: js, pub: pub}, nil
}

// Close closes the connection.
func (s *NATSPoisonStore) Close() { s.conn.Close() }

// Topic is the poison topic of the store's flow.
func (s *NATSPoisonStore) Topic() string { return s.Namespace + "." + kindPoison }

func (s *NATSPoisonStore) stream() string { return natsName(s.Topic()) }

// all reads the stream's messages up to sequence last (0: the end), oldest
// first. A flow that never ran has no stream: an empty queue.
func (s *NATSPoisonStore) all(ctx context.Context, last uint64) ([]PoisonMessage, error) {
	info, err := s.js.StreamInfo(s.stream(), nats.Context(ctx))
	if errors.Is(err, nats.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("flows: poison stream: %w", err)
	}
	if last == 0 || last > info.State.LastSeq {
		last = info.State.LastSeq
	}
	var out []PoisonMessage
	for seq := info.State.FirstSeq; seq <= last && info.State.Msgs > 0; seq++ {
		m, err := s.get(ctx, seq)
		if errors.Is(err, ErrPoisonNotFound) {
			continue // deleted: requeued or purged
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *NATSPoisonStore) get(ctx context.Context, seq uint64) (PoisonMessage, error) {
	raw, err := s.js.GetMsg(s.stream(), seq, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) || errors.Is(err, nats.ErrStreamNotFound) {
		return PoisonMessage{}, fmt.Errorf("%w: %d", ErrPoisonNotFound, seq)
	}
	if err != nil {
		return PoisonMessage{}, fmt.Errorf("flows: poison message %d: %w", seq, err)
	}
	msg, err := storedMessage(raw)
	if err != nil {
		return PoisonMessage{}, fmt.Errorf("flows: poison message %d: %w", seq, err)
	}
	m := PoisonMessage{ID: int64(seq), UUID: msg.UUID, CreatedAt: raw.Time, Payload: msg.Payload, Metadata: msg.Metadata}
	m.fill()
	return m, nil
}

// List returns the poison messages f selects, newest first.
func (s *NATSPoisonStore) List(ctx context.Context, f PoisonFilter) ([]PoisonMessage, error) {
	msgs, err := s.all(ctx, 0)
	if err != nil {
		return nil, err
	}
	out := msgs[:0]
	for _, m := range msgs {
		if (f.RaceID == "" || m.RaceID == f.RaceID) && (f.Stage == "" || m.Stage == f.Stage) &&
			(f.Since.IsZero() || !m.CreatedAt.Before(f.Since)) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b PoisonMessage) int { return cmp.Compare(b.ID, a.ID) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Get returns one poison message, payload included.
func (s *NATSPoisonStore) Get(ctx context.Context, id int64) (PoisonMessage, error) {
	if id <= 0 {
		return PoisonMessage{}, fmt.Errorf("%w: %d", ErrPoisonNotFound, id)
	}
	return s.get(ctx, uint64(id))
}

// Requeue publishes each selected message back to the topic it failed on
// (poison keys removed, requeued count raised, a new id), oldest first, and
// then deletes it from the poison stream. Explicit IDs must all exist. A
// race or all covers the messages poisoned before it started.
func (s *NATSPoisonStore) Requeue(ctx context.Context, sel PoisonSelector) (int, error) {
	if err := sel.validate(); err != nil {
		return 0, err
	}
	var msgs []PoisonMessage
	if len(sel.IDs) > 0 {
		for _, id := range sel.IDs {
			m, err := s.Get(ctx, id)
			if err != nil {
				return 0, err
			}
			msgs = append(msgs, m)
		}
		slices.SortFunc(msgs, func(a, b PoisonMessage) int { return cmp.Compare(a.ID, b.ID) })
	} else {
		all, err := s.all(ctx, 0)
		if err != nil {
			return 0, err
		}
		for _, m := range all {
			if sel.All || m.RaceID == sel.RaceID {
				msgs = append(msgs, m)
			}
		}
	}
	for i, m := range msgs {
		out, err := requeueMessage(s.Namespace, m)
		if err != nil {
			return i, err
		}
		if err := s.pub.Publish(m.Topic, out); err != nil {
			return i, fmt.Errorf("flows: requeue poison message %d to %s: %w", m.ID, m.Topic, err)
		}
		if err := s.js.DeleteMsg(s.stream(), uint64(m.ID), nats.Context(ctx)); err != nil {
			return i + 1, fmt.Errorf("flows: requeue: delete poison message %d (it was requeued): %w", m.ID, err)
		}
	}
	return len(msgs), nil
}

// Purge deletes poison messages poisoned before cutoff and returns how many.
func (s *NATSPoisonStore) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	msgs, err := s.all(ctx, 0)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range msgs {
		if !m.CreatedAt.Before(cutoff) {
			continue
		}
		if err := s.js.DeleteMsg(s.stream(), uint64(m.ID), nats.Context(ctx)); err != nil {
			return n, fmt.Errorf("flows: purge poison message %d: %w", m.ID, err)
		}
		n++
	}
	return n, nil
}

// ErrNoPoisonStore: the memory backend keeps nothing to inspect.
var ErrNoPoisonStore = errors.New("flows: the memory backend keeps no poison queue to inspect")

// OpenPoisonQueue opens the poison queue of the flow cfg describes, on its
// backend; close releases what it opened.
func OpenPoisonQueue(cfg Config, pool *pgxpool.Pool) (q PoisonQueue, close func(), err error) {
	switch cfg.Backend {
	case BackendPostgres:
		return PoisonStore{Pool: pool, Namespace: cfg.Namespace}, func() {}, nil
	case BackendNATS:
		s, err := OpenNATSPoisonStore(cfg.NATS, cfg.Namespace)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	return nil, nil, ErrNoPoisonStore
}
