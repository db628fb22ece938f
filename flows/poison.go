package flows

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/handlers"
)

// KeyRequeued counts how many times a message was requeued from the poison
// queue; it travels in the metadata of the requeued message.
const KeyRequeued = "requeued"

// poisonKeys are the metadata a message gains on the way into the poison
// queue; requeueing strips them so the message is as it was published.
var poisonKeys = []string{
	middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
	middleware.PoisonedSubscriberKey, handlers.KeyStage, handlers.KeyErrorKind,
}

// Sentinel errors of the poison store.
var (
	// ErrPoisonNotFound: no poison message has the id.
	ErrPoisonNotFound = errors.New("flows: poison message not found")
	// ErrBadRequeueTopic: a poison message names a topic outside its flow,
	// so it is not requeued anywhere.
	ErrBadRequeueTopic = errors.New("flows: poison message names no topic of this flow")
)

// PoisonQueue inspects and manages the poison queue of one flow, wherever
// its backend keeps it: PoisonStore (postgres) or NATSPoisonStore (nats).
type PoisonQueue interface {
	// Topic is the poison topic.
	Topic() string
	// List returns the messages f selects, newest first.
	List(ctx context.Context, f PoisonFilter) ([]PoisonMessage, error)
	// Get returns one message, payload included.
	Get(ctx context.Context, id int64) (PoisonMessage, error)
	// Requeue sends the selected messages back to the topics they failed on.
	Requeue(ctx context.Context, sel PoisonSelector) (int, error)
	// Purge deletes the messages poisoned before cutoff.
	Purge(ctx context.Context, cutoff time.Time) (int64, error)
}

var (
	_ PoisonQueue = PoisonStore{}
	_ PoisonQueue = (*NATSPoisonStore)(nil)
)

// PoisonStore inspects and manages the poison queue of one PostgreSQL-backed
// flow. Poisoned rows keep the failed message's payload and metadata, plus
// why, where and when it failed.
type PoisonStore struct {
	Pool *pgxpool.Pool
	// Namespace is the flow's (Config.Namespace); "" means the default.
	Namespace string
}

// PoisonMessage is one row of the poison queue.
type PoisonMessage struct {
	ID        int64             `json:"id"` // the row's offset
	UUID      string            `json:"uuid"`
	CreatedAt time.Time         `json:"created_at"` // when it was poisoned
	RaceID    string            `json:"race_id"`
	PollID    string            `json:"poll_id"`
	Stage     string            `json:"stage"`
	Kind      string            `json:"kind"`
	Reason    string            `json:"reason"`
	Topic     string            `json:"topic"` // where it failed, and where requeue sends it
	Requeued  int               `json:"requeued"`
	Metadata  map[string]string `json:"metadata"`
	Payload   []byte            `json:"-"`
}

// PoisonFilter selects poison messages; zero fields select everything.
type PoisonFilter struct {
	RaceID string
	Stage  string
	Since  time.Time // poisoned at or after
	Limit  int       // newest first; 0 means no limit
}

// PoisonSelector chooses what Requeue sends back: the listed IDs, or every
// message of RaceID, or All. Exactly one must be set.
type PoisonSelector struct {
	IDs    []int64
	RaceID string
	All    bool
}

func (s PoisonSelector) validate() error {
	n := 0
	if len(s.IDs) > 0 {
		n++
	}
	if s.RaceID != "" {
		n++
	}
	if s.All {
		n++
	}
	if n != 1 {
		return errors.New("flows: requeue needs exactly one of IDs, a race id or all")
	}
	return nil
}

func (s PoisonStore) namespace() string {
	if s.Namespace == "" {
		return DefaultConfig().Namespace
	}
	return s.Namespace
}

func (s PoisonStore) schema() readCommittedQueue { return queueSchema(DefaultConfig()) }

// Topic is the poison topic of the store's flow.
func (s PoisonStore) Topic() string { return s.namespace() + "." + kindPoison }

func (s PoisonStore) table() string { return s.schema().MessagesTable(s.Topic()) }

// exists reports whether the poison table was ever created: a flow that
// never ran has an empty poison queue, not a broken one.
func (s PoisonStore) exists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.table()).Scan(&ok); err != nil {
		return false, fmt.Errorf("flows: poison queue: %w", err)
	}
	return ok, nil
}

const poisonColumns = `"offset", uuid, payload, metadata, created_at`

func scanPoison(row pgx.Row) (PoisonMessage, error) {
	var m PoisonMessage
	var md []byte
	if err := row.Scan(&m.ID, &m.UUID, &m.Payload, &md, &m.CreatedAt); err != nil {
		return m, err
	}
	if len(md) > 0 {
		if err := json.Unmarshal(md, &m.Metadata); err != nil {
			return m, fmt.Errorf("flows: poison message %d: metadata: %w", m.ID, err)
		}
	}
	if m.Metadata == nil {
		m.Metadata = map[string]string{}
	}
	m.fill()
	return m, nil
}

// fill derives the named fields from the metadata.
func (m *PoisonMessage) fill() {
	m.RaceID = m.Metadata[handlers.KeyRaceID]
	m.PollID = m.Metadata[handlers.KeyPollID]
	m.Stage = m.Metadata[handlers.KeyStage]
	m.Kind = m.Metadata[handlers.KeyErrorKind]
	m.Reason = m.Metadata[middleware.ReasonForPoisonedKey]
	m.Topic = m.Metadata[middleware.PoisonedTopicKey]
	m.Requeued, _ = strconv.Atoi(m.Metadata[KeyRequeued])
}

// List returns the poison messages f selects, newest first.
func (s PoisonStore) List(ctx context.Context, f PoisonFilter) ([]PoisonMessage, error) {
	if ok, err := s.exists(ctx, s.Pool); err != nil || !ok {
		return nil, err
	}
	where, args := []string{"TRUE"}, []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.RaceID != "" {
		add(`metadata->>'race_id' = $%d`, f.RaceID)
	}
	if f.Stage != "" {
		add(`metadata->>'stage' = $%d`, f.Stage)
	}
	if !f.Since.IsZero() {
		add(`created_at >= $%d`, f.Since)
	}
	q := `SELECT ` + poisonColumns + ` FROM ` + s.table() + ` WHERE ` + strings.Join(where, " AND ") + ` ORDER BY "offset" DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	rows, err := s.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("flows: list poison queue: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PoisonMessage, error) { return scanPoison(r) })
	if err != nil {
		return nil, fmt.Errorf("flows: list poison queue: %w", err)
	}
	return out, nil
}

// Get returns one poison message, payload included.
func (s PoisonStore) Get(ctx context.Context, id int64) (PoisonMessage, error) {
	if ok, err := s.exists(ctx, s.Pool); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: %d", ErrPoisonNotFound, id)
		}
		return PoisonMessage{}, err
	}
	m, err := scanPoison(s.Pool.QueryRow(ctx, `SELECT `+poisonColumns+` FROM `+s.table()+` WHERE "offset" = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return PoisonMessage{}, fmt.Errorf("%w: %d", ErrPoisonNotFound, id)
	}
	return m, err
}

// requeueBatch bounds one requeue transaction of --race or --all, so a
// large queue neither holds many locks nor loads every payload at once.
const requeueBatch = 100

// Requeue publishes each selected message back to the topic it failed on,
// with its original payload and metadata (the poison keys removed, the
// requeued count raised), and deletes its poison row in the same
// transaction: a message is never both requeued and still poisoned, nor
// lost. Explicit IDs go in one transaction and must all exist. A --race or
// --all requeue covers the messages poisoned before it started, in batches,
// oldest first, so one race's messages keep their order. It returns how
// many messages were requeued.
func (s PoisonStore) Requeue(ctx context.Context, sel PoisonSelector) (int, error) {
	if err := sel.validate(); err != nil {
		return 0, err
	}
	if ok, err := s.exists(ctx, s.Pool); err != nil || !ok {
		if err == nil && len(sel.IDs) > 0 {
			err = fmt.Errorf("%w: %v", ErrPoisonNotFound, sel.IDs)
		}
		return 0, err
	}
	if len(sel.IDs) > 0 {
		return s.requeueIDs(ctx, sel.IDs)
	}
	var last int64
	if err := s.Pool.QueryRow(ctx, `SELECT coalesce(max("offset"), 0) FROM `+s.table()).Scan(&last); err != nil {
		return 0, fmt.Errorf("flows: requeue: %w", err)
	}
	cond, args := `"offset" <= $1`, []any{last}
	if sel.RaceID != "" {
		cond, args = cond+` AND metadata->>'race_id' = $2`, append(args, sel.RaceID)
	}
	q := `SELECT ` + poisonColumns + ` FROM ` + s.table() + ` WHERE ` + cond +
		` ORDER BY "offset" LIMIT ` + strconv.Itoa(requeueBatch) + ` FOR UPDATE SKIP LOCKED`
	total := 0
	for {
		n, err := s.requeueTx(ctx, func(tx pgx.Tx) ([]PoisonMessage, error) {
			rows, err := tx.Query(ctx, q, args...)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PoisonMessage, error) { return scanPoison(r) })
		})
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

func (s PoisonStore) requeueIDs(ctx context.Context, ids []int64) (int, error) {
	return s.requeueTx(ctx, func(tx pgx.Tx) ([]PoisonMessage, error) {
		rows, err := tx.Query(ctx, `SELECT `+poisonColumns+` FROM `+s.table()+` WHERE "offset" = ANY($1) ORDER BY "offset" FOR UPDATE`, ids)
		if err != nil {
			return nil, err
		}
		msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PoisonMessage, error) { return scanPoison(r) })
		if err != nil {
			return nil, err
		}
		found := make(map[int64]bool, len(msgs))
		for _, m := range msgs {
			found[m.ID] = true
		}
		var missing []int64
		for _, id := range ids {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%w: %v", ErrPoisonNotFound, missing)
		}
		return msgs, nil
	})
}

// requeueTx runs one requeue transaction over the messages selectFn locks.
func (s PoisonStore) requeueTx(ctx context.Context, selectFn func(pgx.Tx) ([]PoisonMessage, error)) (int, error) {
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("flows: requeue: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	msgs, err := selectFn(tx)
	if err != nil {
		return 0, fmt.Errorf("flows: requeue: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	// The publisher writes through the wrapper, but the pgx transaction is
	// committed directly: the wrapper made by TxFromPgx carries no context.
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: s.schema()}, watermill.NopLogger{})
	if err != nil {
		return 0, fmt.Errorf("flows: requeue: %w", err)
	}
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		out, err := s.requeueMessage(m)
		if err != nil {
			return 0, err
		}
		out.SetContext(ctx)
		if err := pub.Publish(m.Topic, out); err != nil {
			return 0, fmt.Errorf("flows: requeue poison message %d to %s: %w", m.ID, m.Topic, err)
		}
		ids[i] = m.ID
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.table()+` WHERE "offset" = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("flows: requeue: delete poison rows: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("flows: requeue: commit: %w", err)
	}
	return len(msgs), nil
}

// requeueMessage rebuilds the message as it was published, under a new
// uuid (the poison row keeps the old one until it is deleted).
func (s PoisonStore) requeueMessage(m PoisonMessage) (*message.Message, error) {
	return requeueMessage(s.namespace(), m)
}

func requeueMessage(namespace string, m PoisonMessage) (*message.Message, error) {
	prefix := namespace + "."
	if !strings.HasPrefix(m.Topic, prefix) || m.Topic == namespace+"."+kindPoison {
		return nil, fmt.Errorf("%w: message %d, topic %q", ErrBadRequeueTopic, m.ID, m.Topic)
	}
	out := message.NewMessage(watermill.NewUUID(), m.Payload)
	for k, v := range m.Metadata {
		out.Metadata.Set(k, v)
	}
	for _, k := range poisonKeys {
		delete(out.Metadata, k)
	}
	out.Metadata.Set(KeyRequeued, strconv.Itoa(m.Requeued+1))
	return out, nil
}

// Purge deletes poison messages poisoned before cutoff and returns how many.
func (s PoisonStore) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	if ok, err := s.exists(ctx, s.Pool); err != nil || !ok {
		return 0, err
	}
	tag, err := s.Pool.Exec(ctx, `DELETE FROM `+s.table()+` WHERE created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("flows: purge poison queue: %w", err)
	}
	return tag.RowsAffected(), nil
}

// maxDecoded bounds a decompressed payload, so a hostile row cannot exhaust
// memory.
const maxDecoded = 64 << 20

// DecodedPayload returns the payload as it was before the flow stored it:
// race.fetched bodies are gunzipped, and JSON is indented for reading.
func (m PoisonMessage) DecodedPayload() ([]byte, error) {
	body := m.Payload
	if m.Metadata[handlers.KeyEncoding] == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("flows: poison message %d: gunzip: %w", m.ID, err)
		}
		defer zr.Close()
		if body, err = io.ReadAll(io.LimitReader(zr, maxDecoded+1)); err != nil {
			return nil, fmt.Errorf("flows: poison message %d: gunzip: %w", m.ID, err)
		}
		if len(body) > maxDecoded {
			return nil, fmt.Errorf("flows: poison message %d: payload exceeds %d bytes decompressed", m.ID, maxDecoded)
		}
	}
	if json.Valid(body) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err == nil {
			return buf.Bytes(), nil
		}
	}
	return body, nil
}
