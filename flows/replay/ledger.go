package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The ledger: replay_runs records each run and its selection,
// replay_progress the last poll handled of every race of a run (and the last
// meetings list applied), written in the transaction that wrote it.

// newRunID names a run by its start and a random suffix.
func newRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "replay-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// lockRun makes sure one process at a time runs a run id: two would each
// replay the polls the other has not committed yet.
func (r *Replayer) lockRun(ctx context.Context) (func(), error) {
	conn, err := r.deps.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "raceflow.replay:"+r.cfg.RunID).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("replay: lock run: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("%w: %s", ErrRunBusy, r.cfg.RunID)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "raceflow.replay:"+r.cfg.RunID); err != nil {
			// A session lock must not outlive the run on a pooled connection.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}

// openRun finds or records the run and returns the filter it replays and
// whether it rebuilds. Resuming with a zero filter takes both from the run.
func (r *Replayer) openRun(ctx context.Context) (filter Filter, rebuild, resumed bool, err error) {
	want := r.cfg.Filter.canonical(r.cfg.Rebuild)
	var raw []byte
	err = r.deps.Pool.QueryRow(ctx, `SELECT filter::text FROM replay_runs WHERE run_id = $1`, r.cfg.RunID).Scan(&raw)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if r.cfg.Resume {
			return Filter{}, false, false, fmt.Errorf("%w: %s", ErrRunNotFound, r.cfg.RunID)
		}
		if !r.cfg.DryRun {
			doc, err := json.Marshal(want)
			if err != nil {
				return Filter{}, false, false, fmt.Errorf("replay: encode filter: %w", err)
			}
			if _, err := r.deps.Pool.Exec(ctx, `INSERT INTO replay_runs (run_id, filter) VALUES ($1, $2::jsonb)`, r.cfg.RunID, string(doc)); err != nil {
				return Filter{}, false, false, fmt.Errorf("replay: record run: %w", err)
			}
		}
		return want.filter(), want.Rebuild, false, nil
	case err != nil:
		return Filter{}, false, false, fmt.Errorf("replay: read run: %w", err)
	}
	var stored storedFilter
	if err := json.Unmarshal(raw, &stored); err != nil {
		return Filter{}, false, false, fmt.Errorf("replay: run %s: stored filter: %w", r.cfg.RunID, err)
	}
	if (!r.cfg.Resume || !r.cfg.Filter.IsZero() || r.cfg.Rebuild) && !stored.equal(want) {
		return Filter{}, false, false, fmt.Errorf("%w: run %s replays %s", ErrRunMismatch, r.cfg.RunID, raw)
	}
	return stored.filter(), stored.Rebuild, true, nil
}

// progressOf returns the last poll handled of every race of the run.
func (r *Replayer) progressOf(ctx context.Context) (map[string]pollKey, error) {
	rows, err := r.deps.Pool.Query(ctx, `
		SELECT race_id, last_observed_at, last_topic, last_offset FROM replay_progress WHERE run_id = $1`, r.cfg.RunID)
	if err != nil {
		return nil, fmt.Errorf("replay: read progress: %w", err)
	}
	out := map[string]pollKey{}
	var (
		raceID string
		k      pollKey
	)
	if _, err := pgx.ForEachRow(rows, []any{&raceID, &k.at, &k.topic, &k.offset}, func() error {
		out[raceID] = k
		return nil
	}); err != nil {
		return nil, fmt.Errorf("replay: read progress: %w", err)
	}
	return out, nil
}

// listsRaceID is the race id of the ledger row that holds how far a run
// got in the stored meetings lists (last_topic is listTopic): no race has
// an empty id.
const listsRaceID = ""

// progressRow is how far one race (or the lists) got in a transaction: the
// last poll handled and how many were handled.
type progressRow struct {
	raceID string
	key    pollKey
	n      int
}

// progressOfItems is the ledger rows of handled events, in order: one per
// race, holding its last event.
func progressOfItems(items []prepared) []progressRow {
	at := map[string]int{}
	var out []progressRow
	for _, it := range items {
		id := it.raceID()
		i, ok := at[id]
		if !ok {
			i = len(out)
			at[id] = i
			out = append(out, progressRow{raceID: id})
		}
		out[i].key = it.ev.key
		out[i].n++
	}
	return out
}

// sqlProgress records how far races got; it runs in the transaction that
// wrote their polls. polls counts the polls handled (the lists row: lists).
const sqlProgress = `
INSERT INTO replay_progress AS p (run_id, race_id, last_observed_at, last_topic, last_offset, polls)
SELECT $1, u.race_id, u.at, u.topic, u.off, u.n
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bigint[], $6::int[]) AS u(race_id, at, topic, off, n)
ON CONFLICT (run_id, race_id) DO UPDATE SET
    last_observed_at = EXCLUDED.last_observed_at,
    last_topic       = EXCLUDED.last_topic,
    last_offset      = EXCLUDED.last_offset,
    polls            = p.polls + EXCLUDED.polls,
    updated_at       = now()`

// saveProgress records rows in tx.
func (r *Replayer) saveProgress(ctx context.Context, tx pgx.Tx, rows []progressRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	ids, ats, topics, offsets, counts := make([]string, n), make([]time.Time, n), make([]string, n), make([]int64, n), make([]int32, n)
	for i, p := range rows {
		ids[i], ats[i], topics[i], offsets[i], counts[i] = p.raceID, p.key.at, p.key.topic, p.key.offset, int32(p.n)
	}
	if _, err := tx.Exec(ctx, sqlProgress, r.cfg.RunID, ids, ats, topics, offsets, counts); err != nil {
		return fmt.Errorf("replay: progress: %w", err)
	}
	return nil
}

// beginReplayTx starts a write transaction: READ COMMITTED like the live
// write stage, and without waiting for the WAL flush at commit. That is
// safe here: a crash can only lose the last few commits whole, data and
// progress together, and a resumed run redoes exactly those.
const beginReplayTx = `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off`

// inTx runs fn in a replay transaction and commits it.
func (r *Replayer) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := r.deps.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginReplayTx})
	if err != nil {
		return fmt.Errorf("replay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("replay: commit: %w", err)
	}
	return nil
}

// finishRun marks the run complete.
func (r *Replayer) finishRun(ctx context.Context) error {
	if _, err := r.deps.Pool.Exec(ctx, `UPDATE replay_runs SET finished_at = now() WHERE run_id = $1`, r.cfg.RunID); err != nil {
		return fmt.Errorf("replay: mark run finished: %w", err)
	}
	return nil
}
