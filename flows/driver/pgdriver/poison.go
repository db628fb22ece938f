package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
)

// Poison is the poison queue: the poison topic's table. Poisoned rows keep
// the failed message's payload and metadata, plus why, where and when it
// failed; a message's id is its row's offset.
func (d *Driver) Poison() driver.PoisonQueue { return poisonQueue{d} }

type poisonQueue struct{ d *Driver }

func (q poisonQueue) table() string { return Table(driver.PoisonTopic(q.d.cfg.Namespace)) }

// exists reports whether the poison table was ever created: a flow that
// never ran has an empty poison queue, not a broken one.
func (q poisonQueue) exists(ctx context.Context) (bool, error) {
	var ok bool
	if err := q.d.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, q.table()).Scan(&ok); err != nil {
		return false, fmt.Errorf("pgdriver: poison queue: %w", err)
	}
	return ok, nil
}

const poisonColumns = `"offset", uuid, payload, metadata, created_at`

func scanPoison(row pgx.Row) (driver.PoisonMessage, error) {
	var (
		id        int64
		uuid      string
		payload   []byte
		md        []byte
		createdAt time.Time
	)
	if err := row.Scan(&id, &uuid, &payload, &md, &createdAt); err != nil {
		return driver.PoisonMessage{}, err
	}
	var meta map[string]string
	if len(md) > 0 {
		decoded, err := decodeMetadata(md)
		if err != nil {
			return driver.PoisonMessage{}, fmt.Errorf("pgdriver: poison message %d: %w", id, err)
		}
		meta = decoded
	}
	return driver.NewPoisonMessage(id, uuid, createdAt, payload, meta), nil
}

func collectPoison(rows pgx.Rows) ([]driver.PoisonMessage, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (driver.PoisonMessage, error) { return scanPoison(r) })
}

// List returns the poison messages f selects, newest first.
func (q poisonQueue) List(ctx context.Context, f driver.PoisonFilter) ([]driver.PoisonMessage, error) {
	if ok, err := q.exists(ctx); err != nil || !ok {
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
	sql := `SELECT ` + poisonColumns + ` FROM ` + q.table() + ` WHERE ` + strings.Join(where, " AND ") + ` ORDER BY "offset" DESC`
	if f.Limit > 0 {
		sql += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	rows, err := q.d.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("pgdriver: list poison queue: %w", err)
	}
	out, err := collectPoison(rows)
	if err != nil {
		return nil, fmt.Errorf("pgdriver: list poison queue: %w", err)
	}
	return out, nil
}

// Get returns one poison message, payload included.
func (q poisonQueue) Get(ctx context.Context, id int64) (driver.PoisonMessage, error) {
	if ok, err := q.exists(ctx); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: %d", driver.ErrPoisonNotFound, id)
		}
		return driver.PoisonMessage{}, err
	}
	m, err := scanPoison(q.d.pool.QueryRow(ctx, `SELECT `+poisonColumns+` FROM `+q.table()+` WHERE "offset" = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return driver.PoisonMessage{}, fmt.Errorf("%w: %d", driver.ErrPoisonNotFound, id)
	}
	return m, err
}

// requeueBatch bounds one requeue transaction of a race or all, so a
// large queue neither holds many locks nor loads every payload at once.
const requeueBatch = 100

// Requeue publishes each selected message back to the topic it failed on
// and deletes its poison row in the same transaction: a message is never
// both requeued and still poisoned, nor lost. Explicit IDs go in one
// transaction and must all exist. A race or all covers the messages
// poisoned before it started, in batches, oldest first, so one race's
// messages keep their order.
func (q poisonQueue) Requeue(ctx context.Context, sel driver.PoisonSelector) (int, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	if ok, err := q.exists(ctx); err != nil || !ok {
		if err == nil && len(sel.IDs) > 0 {
			err = fmt.Errorf("%w: %v", driver.ErrPoisonNotFound, sel.IDs)
		}
		return 0, err
	}
	if len(sel.IDs) > 0 {
		return q.requeueIDs(ctx, sel.IDs)
	}
	var last int64
	if err := q.d.pool.QueryRow(ctx, `SELECT coalesce(max("offset"), 0) FROM `+q.table()).Scan(&last); err != nil {
		return 0, fmt.Errorf("pgdriver: requeue: %w", err)
	}
	cond, args := `"offset" <= $1`, []any{last}
	if sel.RaceID != "" {
		cond, args = cond+` AND metadata->>'race_id' = $2`, append(args, sel.RaceID)
	}
	sql := `SELECT ` + poisonColumns + ` FROM ` + q.table() + ` WHERE ` + cond +
		` ORDER BY "offset" LIMIT ` + strconv.Itoa(requeueBatch) + ` FOR UPDATE SKIP LOCKED`
	total := 0
	for {
		n, err := q.requeueTx(ctx, func(tx pgx.Tx) ([]driver.PoisonMessage, error) {
			rows, err := tx.Query(ctx, sql, args...)
			if err != nil {
				return nil, err
			}
			return collectPoison(rows)
		})
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

func (q poisonQueue) requeueIDs(ctx context.Context, ids []int64) (int, error) {
	return q.requeueTx(ctx, func(tx pgx.Tx) ([]driver.PoisonMessage, error) {
		rows, err := tx.Query(ctx, `SELECT `+poisonColumns+` FROM `+q.table()+` WHERE "offset" = ANY($1) ORDER BY "offset" FOR UPDATE`, ids)
		if err != nil {
			return nil, err
		}
		msgs, err := collectPoison(rows)
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
			return nil, fmt.Errorf("%w: %v", driver.ErrPoisonNotFound, missing)
		}
		return msgs, nil
	})
}

// requeueTx runs one requeue transaction over the messages selectFn locks.
func (q poisonQueue) requeueTx(ctx context.Context, selectFn func(pgx.Tx) ([]driver.PoisonMessage, error)) (int, error) {
	tx, err := q.d.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("pgdriver: requeue: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	msgs, err := selectFn(tx)
	if err != nil {
		return 0, fmt.Errorf("pgdriver: requeue: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(msgs))
	var topics []string
	for i, m := range msgs {
		topic, out, err := driver.RequeueMessage(q.d.cfg.Namespace, m)
		if err != nil {
			return 0, err
		}
		if err := q.d.ensureTable(ctx, topic.String()); err != nil {
			return 0, err
		}
		if err := publishTx(ctx, tx, topic.String(), out); err != nil {
			return 0, fmt.Errorf("pgdriver: requeue poison message %d to %s: %w", m.ID, topic, err)
		}
		ids[i] = m.ID
		topics = append(topics, topic.String())
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+q.table()+` WHERE "offset" = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("pgdriver: requeue: delete poison rows: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("pgdriver: requeue: commit: %w", err)
	}
	q.d.published(topics...)
	return len(msgs), nil
}

// Purge deletes poison messages poisoned before cutoff and returns how many.
func (q poisonQueue) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	if ok, err := q.exists(ctx); err != nil || !ok {
		return 0, err
	}
	tag, err := q.d.pool.Exec(ctx, `DELETE FROM `+q.table()+` WHERE created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("pgdriver: purge poison queue: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Summary counts the queue by race in one query.
func (q poisonQueue) Summary(ctx context.Context) (driver.PoisonSummary, error) {
	s := driver.PoisonSummary{ByRace: map[string]int{}}
	if ok, err := q.exists(ctx); err != nil || !ok {
		return s, err
	}
	rows, err := q.d.pool.Query(ctx, `SELECT coalesce(metadata->>'race_id', ''), count(*), min(created_at) FROM `+q.table()+
		` GROUP BY 1`)
	if err != nil {
		return s, fmt.Errorf("pgdriver: poison summary: %w", err)
	}
	var (
		race   string
		n      int
		oldest time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&race, &n, &oldest}, func() error {
		s.Count += int64(n)
		s.ByRace[race] += n
		if s.Oldest.IsZero() || oldest.Before(s.Oldest) {
			s.Oldest = oldest
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("pgdriver: poison summary: %w", err)
	}
	return s, nil
}
