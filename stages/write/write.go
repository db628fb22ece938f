// Package write persists polls of races (transform.RaceSnapshot) in
// PostgreSQL: state-table upserts, the race_polls ledger row, money-flow
// history with incremental amounts derived in SQL, odds history with change
// detection in SQL, and results.
//
// The stored result depends only on the set of polls written, not on how
// often or in which order they arrive: redelivery is a no-op, and a late
// earlier poll is slotted into history with its neighbours corrected (see
// Write for the one documented exception in odds history). State rows record
// the observation they were last written from, so writing the stored polls
// again in their order rebuilds every row exactly, whichever tables were
// emptied or left stale. A poll (or a batch of polls, WriteBatch) takes two
// round trips: one pipelined lookup of where its history series end, so
// that series it only extends (a live poll's usual case) are appended
// without per-row neighbour probes, then every statement in one pipelined
// batch. A writer that keeps an Ends (WithEnds) remembers those ends from
// one write of a race to the next and looks up only what it cannot vouch
// for. The stage never runs DDL: partitions must exist beforehand.
package write

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raceflow/raceflow/stages/transform"
)

// Table names, also the keys of Rows.Durations.
const (
	TableMeetings    = "meetings"
	TableRaces       = "races"
	TableEntrants    = "entrants"
	TableRacePools   = "race_pools"
	TableRacePolls   = "race_polls"
	TableMoneyFlow   = "money_flow_history"
	TableOdds        = "odds_history"
	TableRaceResults = "race_results"
)

// Extra keys of Rows.Durations besides the table names.
const (
	// DurationTotal is the client-side wall time of the whole batch.
	DurationTotal = "total"
	// DurationCommit is the commit's wall time (WriteTx and WriteBatchTx).
	DurationCommit = "commit"
)

// Rows says what one poll changed. Counts are rows really inserted or
// changed: an upsert whose values equal the stored row counts 0, and so does
// a redelivered history row.
type Rows struct {
	Meetings  int `json:"meetings"`
	Races     int `json:"races"`
	Entrants  int `json:"entrants"`
	RacePools int `json:"race_pools"`
	// MoneyFlow counts inserted money_flow_history rows.
	MoneyFlow int `json:"money_flow"`
	// MoneyFlowCorrected counts stored later rows whose increments were
	// recomputed because this poll slotted in before them.
	MoneyFlowCorrected int `json:"money_flow_corrected"`
	// Odds counts inserted odds_history rows.
	Odds int `json:"odds"`
	// OddsDeleted counts stored later odds rows removed because, next to
	// this poll's earlier value, they are no longer changes.
	OddsDeleted int `json:"odds_deleted"`
	Results     int `json:"results"`
	// Polls is 1 when the race_polls ledger row was new, 0 on redelivery.
	Polls int `json:"polls"`
	// Durations holds each table's execution time as the server measured it
	// (keys are the Table* names; layers of one table add up), DurationTotal
	// and, from WriteTx, DurationCommit. Per-statement times rely on the
	// extended protocol, pgx's default: under the simple protocol the whole
	// batch is one query and the times accumulate. Nil in the per-poll Rows
	// of a batch, whose Durations cover the whole batch.
	Durations map[string]time.Duration `json:"durations"`
}

// Poll is one poll to write: its snapshot and the id the race_polls ledger
// records for it.
type Poll struct {
	Snapshot transform.RaceSnapshot
	// PollID is recorded in the race_polls ledger; empty derives it from
	// the snapshot's race and observation instant (PollID).
	PollID string
}

// id is the poll id the ledger records.
func (p Poll) id() string {
	if p.PollID != "" {
		return p.PollID
	}
	return PollID(p.Snapshot.RaceID, p.Snapshot.ObservedAt)
}

// Beginner opens a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx (for a
// savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// PollID names the poll of raceID at instant t: the race id, "@", and the
// instant in UTC with fixed-width nanoseconds, so ids sort as their
// instants do. It is the one rule for poll ids: the flow names a requested
// poll by its request instant, and Write names a poll given without an id by
// its observation instant.
func PollID(raceID string, t time.Time) string {
	return raceID + "@" + t.UTC().Format("20060102T150405.000000000Z")
}

// Write persists one poll inside the caller's transaction, so the flow can
// commit it together with its next message. On error the transaction is
// unusable and the caller must roll it back; the error is a *DBError and
// the returned Rows carry no counts.
//
// Semantics:
//   - meetings, races, entrants, race_pools and race_results are upserted:
//     a row changes only when a value differs (its updated_at stays put
//     otherwise), a value the poll lacks never replaces a stored one, and an
//     observation older than the one the row was written from does not
//     update it; nor does a poll arriving for the first time after a later
//     poll of its race (it may still insert a missing row). Each row's
//     observed_at is the instant of the observation it was last written from;
//   - money_flow_history increments are the change since the latest earlier
//     poll of that race and runner, kept right when polls arrive late;
//   - odds_history gets a row only when the odds moved by more than 0.01
//     from the latest earlier row; a late earlier poll deletes later rows
//     that are no longer changes. Known residual limit: an observation
//     dropped earlier (within 0.01 of its then-predecessor) cannot be
//     resurrected when a later-arriving earlier poll would make it a change,
//     e.g. 2.50@t1, 2.51@t2, 2.52@t3 stores t1 and t3 in order but only t1
//     when they arrive t2, t3, t1.
//
// A poll's history series that only extend the stored ones are appended as
// WriteBatch does; the rest take the general statements. Several polls go
// into one transaction with WriteBatch, with the same result.
func Write(ctx context.Context, tx pgx.Tx, poll Poll, opts ...Option) (Rows, error) {
	rows := Rows{Durations: make(map[string]time.Duration, 10)}
	if err := validate(poll.Snapshot); err != nil {
		return rows, &DBError{Table: "snapshot", Err: err}
	}
	start := time.Now()
	if _, err := writePending(ctx, tx, newSession(opts), []*pending{newPending(poll, &rows)}, rows.Durations); err != nil {
		return failed(rows, err)
	}
	rows.Durations[DurationTotal] = time.Since(start)
	return rows, nil
}

// WriteTx writes one poll with Write in its own transaction of db and
// commits it. Any error rolls the whole poll back.
func WriteTx(ctx context.Context, db Beginner, poll Poll) (Rows, error) {
	var rows Rows
	durations, err := inTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		rows, err = Write(ctx, tx, poll)
		return err
	})
	if err != nil {
		return failed(rows, err)
	}
	rows.Durations[DurationCommit] = durations
	return rows, nil
}

// inTx runs fn in a transaction of db and commits it, returning the commit's
// wall time. Any error rolls back.
func inTx(ctx context.Context, db Beginner, fn func(pgx.Tx) error) (time.Duration, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, newDBError("begin", err)
	}
	if err := fn(tx); err != nil {
		// The caller's context may be what failed; the rollback must still
		// reach the server so the connection returns to the pool clean.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
		return 0, err
	}
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return 0, newDBError("commit", err)
	}
	return time.Since(start), nil
}

// failed drops the counts of a write that will be rolled back (nothing of it
// is stored) but keeps the durations, which help explain the failure.
func failed(rows Rows, err error) (Rows, error) {
	return Rows{Durations: rows.Durations}, err
}

// Two planner settings are switched for the stage's statements, inside the
// transaction, and the caller's restored after them:
//   - enable_sort off. The history statements find each row's neighbours with
//     per-row "ORDER BY ... LIMIT 1" probes across the daily partitions of
//     the window. The planner estimates about one row per series and
//     partition, so it prefers reading every row of the series and sorting
//     them over an ordered index scan that stops at the first row: 3-4 times
//     slower once a day's history has built up, and worse as it grows.
//   - plan_cache_mode force_generic_plan. Given the arrays, the planner sees
//     how many rows each unnest yields and the custom plan always looks
//     cheaper than the generic one, so every execution would be planned
//     again (about as long as executing it, for these statements); the plans
//     do not depend on the values.
//
// A plan is built when its statement executes, so both hold for planning too.
// They are switched once for a write's two round trips (the lookup of the
// series' ends, then every statement) and restored at its end: between the
// two nothing else runs in the transaction, and each switch is a statement.
// The same statements bound the write's lock waits when the caller asks
// (LockWait; $1 is lock_timeout's value, NULL to leave it as it is).
const (
	sqlPlannerOn = `SELECT set_config('raceflow.enable_sort', current_setting('enable_sort'), true),
       set_config('raceflow.plan_cache_mode', current_setting('plan_cache_mode'), true),
       set_config('raceflow.lock_timeout', current_setting('lock_timeout'), true),
       set_config('enable_sort', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('lock_timeout', coalesce($1::text, current_setting('lock_timeout')), true)`
	sqlPlannerRestore = `SELECT set_config('enable_sort', current_setting('raceflow.enable_sort'), true),
       set_config('plan_cache_mode', current_setting('raceflow.plan_cache_mode'), true),
       set_config('lock_timeout', current_setting('raceflow.lock_timeout'), true)`
)

// session is how the write's statements run beyond the planner settings.
type session struct {
	lockWait *string // lock_timeout for the write's statements; nil: the transaction's
	ends     *Ends   // remembers series' ends across writes (WithEnds); nil: none
}

func newSession(opts []Option) session {
	var s session
	for _, o := range opts {
		o(&s)
	}
	return s
}

// queueOn queues the statement that switches the settings.
func (s session) queueOn(b *pgx.Batch) { b.Queue(sqlPlannerOn, s.lockWait) }

// execute sends every statement of every round in one pipelined batch and
// adds each statement's counters to the Rows of the poll its key belongs to.
// Statements run in order, each seeing the effects of those before it, as if
// sent one by one. The batch switches the planner settings unless the lookup
// before it did (switched), and restores them. After the statements it
// reads the ledger marks of marksOf, if any (for Ends).
func execute(ctx context.Context, tx pgx.Tx, sess session, rounds [][]stmt, switched bool,
	durations map[string]time.Duration, marksOf []string) (map[string]ledgerMark, error) {
	batch := &pgx.Batch{}
	if !switched {
		sess.queueOn(batch)
	}
	for _, r := range rounds {
		for _, s := range r {
			batch.Queue(s.sql, s.args...)
		}
	}
	if marksOf != nil {
		batch.Queue(sqlLedgerMarks, marksOf)
	}
	batch.Queue(sqlPlannerRestore)
	br := tx.SendBatch(ctx, batch)
	if !switched {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, newDBError("batch", err)
		}
	}
	var (
		keys    []string
		a, b    []int64
		elapsed int64
	)
	for _, r := range rounds {
		for _, s := range r {
			if err := br.QueryRow().Scan(&keys, &a, &b, &elapsed); err != nil {
				_ = br.Close()
				var pg *pgconn.PgError
				if s.owner == nil && errors.As(err, &pg) && pg.Code == "23505" {
					return nil, &DBError{Table: s.table, Retryable: true, Err: fmt.Errorf("%w: %w", ErrAppendRace, err)}
				}
				return nil, newDBError(s.table, err)
			}
			if s.owner == nil {
				var n int64
				for _, v := range a {
					n += v
				}
				if n != int64(s.expect) {
					_ = br.Close()
					return nil, newDBError(s.table, fmt.Errorf("inserted %d rows, expected %d", n, s.expect))
				}
				durations[s.table] += time.Duration(elapsed) * time.Microsecond
				continue
			}
			for i, k := range keys {
				rows := s.owner[k]
				if rows == nil {
					_ = br.Close()
					return nil, newDBError(s.table, fmt.Errorf("statement counted key %q of no poll", k))
				}
				*s.a(rows) += int(a[i])
				if s.b != nil {
					*s.b(rows) += int(b[i])
				}
			}
			// Several layers of one history table add up.
			durations[s.table] += time.Duration(elapsed) * time.Microsecond
		}
	}
	var marks map[string]ledgerMark
	if marksOf != nil {
		var err error
		if marks, err = readLedgerMarks(br); err != nil {
			_ = br.Close()
			return nil, newDBError(TableRacePolls, err)
		}
	}
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, newDBError("batch", err)
	}
	if err := br.Close(); err != nil {
		return nil, newDBError("batch", err)
	}
	return marks, nil
}
