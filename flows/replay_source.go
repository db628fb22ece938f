package flows

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/raceflow/raceflow/handlers"
)

// storedSource is where a flow's stored topic (race.fetched) lives: the
// postgres backend's tables or the nats backend's streams. An offset is a
// table row's offset or a stream sequence.
type storedSource interface {
	// topics lists the stored topic of every shard that exists.
	topics(ctx context.Context, namespace string) ([]string, error)
	// scan calls fn with the metadata of every stored poll of topic (of
	// raceIDs only, when given).
	scan(ctx context.Context, topic string, raceIDs []string, fn func(offset int64, raceID, pollID, observedAt string)) error
	// load calls fn with the stored polls at offsets.
	load(ctx context.Context, topic string, offsets []int64, fn func(offset int64, row fetchedRow)) error
	close()
}

// pgSource reads the stored topic's tables.
type pgSource struct{ pool *pgxpool.Pool }

func (s pgSource) topics(ctx context.Context, namespace string) ([]string, error) {
	return storedTopics(ctx, s.pool, namespace)
}

func (s pgSource) scan(ctx context.Context, topic string, raceIDs []string, fn func(int64, string, string, string)) error {
	q := `SELECT "offset", COALESCE(metadata->>'race_id', ''), COALESCE(metadata->>'poll_id', ''),
		COALESCE(metadata->>'observed_at', '') FROM ` + topicTable(topic)
	var args []any
	if len(raceIDs) > 0 {
		q += ` WHERE metadata->>'race_id' = ANY($1)`
		args = append(args, raceIDs)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	var (
		offset                    int64
		raceID, pollID, observedS string
	)
	_, err = pgx.ForEachRow(rows, []any{&offset, &raceID, &pollID, &observedS}, func() error {
		fn(offset, raceID, pollID, observedS)
		return nil
	})
	return err
}

func (s pgSource) load(ctx context.Context, topic string, offsets []int64, fn func(int64, fetchedRow)) error {
	rows, err := s.pool.Query(ctx, `SELECT "offset", uuid, COALESCE(payload, ''::bytea), COALESCE(metadata::text, '{}')
		FROM `+topicTable(topic)+` WHERE "offset" = ANY($1)`, offsets)
	if err != nil {
		return err
	}
	var (
		offset int64
		row    fetchedRow
	)
	_, err = pgx.ForEachRow(rows, []any{&offset, &row.uuid, &row.payload, &row.metadata}, func() error {
		fn(offset, fetchedRow{uuid: row.uuid, payload: slices.Clone(row.payload), metadata: row.metadata})
		return nil
	})
	return err
}

func (pgSource) close() {}

// natsSource reads the stored topic's streams. Scanning reads headers only
// (an ordered consumer), loading reads messages by sequence.
type natsSource struct {
	cfg  NATSConfig
	conn *nats.Conn
	js   nats.JetStreamContext
}

func (s *natsSource) dial() error {
	if s.conn != nil {
		return nil
	}
	conn, js, err := dialNATS(s.cfg)
	if err != nil {
		return err
	}
	s.conn, s.js = conn, js
	return nil
}

func (s *natsSource) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

func (s *natsSource) topics(ctx context.Context, namespace string) ([]string, error) {
	if err := s.dial(); err != nil {
		return nil, err
	}
	prefix := natsName(namespace + "." + kindFetched + ".")
	type shardTopic struct {
		shard int
		topic string
	}
	var found []shardTopic
	for name := range s.js.StreamNames(nats.Context(ctx)) {
		n, ok := strings.CutPrefix(name, prefix)
		shard, err := strconv.Atoi(n)
		if !ok || err != nil || shard < 0 || strconv.Itoa(shard) != n {
			continue // not a shard stream of ours
		}
		found = append(found, shardTopic{shard, fmt.Sprintf("%s.%s.%d", namespace, kindFetched, shard)})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b shardTopic) int { return cmp.Compare(a.shard, b.shard) })
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.topic
	}
	return out, nil
}

func (s *natsSource) scan(ctx context.Context, topic string, raceIDs []string, fn func(int64, string, string, string)) error {
	info, err := s.js.StreamInfo(natsName(topic), nats.Context(ctx))
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	sub, err := s.js.SubscribeSync(topic, nats.OrderedConsumer(), nats.HeadersOnly(), nats.DeliverAll())
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
			fn(int64(md.Sequence.Stream), raceID, msg.Header.Get(handlers.KeyPollID), msg.Header.Get(handlers.KeyObservedAt))
		}
		if md.Sequence.Stream >= last {
			return nil
		}
	}
}

func (s *natsSource) load(ctx context.Context, topic string, offsets []int64, fn func(int64, fetchedRow)) error {
	for _, offset := range offsets {
		raw, err := s.js.GetMsg(natsName(topic), uint64(offset), nats.Context(ctx))
		if errors.Is(err, nats.ErrMsgNotFound) {
			continue // expired since the scan: reported as missing
		}
		if err != nil {
			return err
		}
		msg, err := storedMessage(raw)
		if err != nil {
			return err
		}
		doc, err := json.Marshal(msg.Metadata)
		if err != nil {
			return err
		}
		fn(offset, fetchedRow{uuid: msg.UUID, payload: msg.Payload, metadata: string(doc)})
	}
	return nil
}
