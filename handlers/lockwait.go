package handlers

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// sqlLockWait sets the transaction's lock_timeout until it ends.
const sqlLockWait = `SELECT set_config('lock_timeout', $1, true)`

// lockWaitTx is a transaction whose statements wait on a lock at most a
// given time, then fail (SQLSTATE 55P03). The setting rides at the head of
// the first batch, so it costs no round trip of its own where the first
// thing sent is a batch (as write.WriteBatch's is).
type lockWaitTx struct {
	pgx.Tx
	timeout string // lock_timeout's value, in milliseconds
	set     bool
}

// boundLockWait returns tx with its lock waits bounded by d (at least 1ms:
// a lock_timeout of 0 would mean no bound).
func boundLockWait(tx pgx.Tx, d time.Duration) pgx.Tx {
	return &lockWaitTx{Tx: tx, timeout: strconv.FormatInt(max(d.Milliseconds(), 1), 10)}
}

// ensure sets the bound with a statement of its own, for a first call that
// is not a batch.
func (t *lockWaitTx) ensure(ctx context.Context) error {
	if t.set {
		return nil
	}
	if _, err := t.Tx.Exec(ctx, sqlLockWait, t.timeout); err != nil {
		return err
	}
	t.set = true
	return nil
}

// SendBatch sends b, led by the setting if it is the first thing sent.
func (t *lockWaitTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.set {
		return t.Tx.SendBatch(ctx, b)
	}
	t.set = true
	led := &pgx.Batch{}
	led.Queue(sqlLockWait, t.timeout)
	led.QueuedQueries = append(led.QueuedQueries, b.QueuedQueries...)
	br := t.Tx.SendBatch(ctx, led)
	if _, err := br.Exec(); err != nil { // the setting's own result
		_ = br.Close()
		return pgx.FailedBatchResults(b, err)
	}
	return br
}

// Exec runs one statement with the bound set.
func (t *lockWaitTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ensure(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

// Query runs one query with the bound set.
func (t *lockWaitTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.ensure(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

// QueryRow runs one query with the bound set.
func (t *lockWaitTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.ensure(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

// CopyFrom copies rows with the bound set.
func (t *lockWaitTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.ensure(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, columns, src)
}

// errRow is a row that failed before its query was sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
