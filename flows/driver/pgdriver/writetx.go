package pgdriver

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// writeTx is the write group's transaction as the write and detect stages
// hold it (BeginWrite, BeginWriteGroup). Its rows commit with the members'
// hand-offs: Commit leaves them to the acknowledgements, Rollback undoes
// them, which is all the transaction holds, and returns the connection, so
// each member can still publish (a failure result, say) or write alone.
//
// BEGIN is not a round trip of its own: it goes to the server at the head
// of the transaction's first batch (pgx's Batch.BeginTx; both stages start
// with a batch), or with the hand-off's batch when the handler sent
// nothing; only a first single statement waits for it. A savepoint per
// write would cost two more round trips, for the rare failed write only.
type writeTx struct{ g *txGroup }

// current returns the connection and the transaction if begun (nil: not
// yet).
func (t *writeTx) current() (*pgxpool.Conn, pgx.Tx, error) {
	g := t.g
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case groupOver:
		return nil, nil, errDeliveryOver
	case groupRolledBack:
		return nil, nil, pgx.ErrTxClosed
	}
	return g.conn, g.tx, nil
}

// begun records the transaction BEGIN opened.
func (t *writeTx) begun(tx pgx.Tx) {
	t.g.mu.Lock()
	defer t.g.mu.Unlock()
	t.g.tx = tx
}

// open returns the transaction, beginning it first if need be.
func (t *writeTx) open(ctx context.Context) (pgx.Tx, error) {
	conn, tx, err := t.current()
	if err != nil || tx != nil {
		return tx, err
	}
	if tx, err = conn.Begin(ctx); err != nil {
		return nil, err
	}
	t.begun(tx)
	return tx, nil
}

// SendBatch sends b, led by BEGIN if it is the transaction's first.
func (t *writeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	conn, tx, err := t.current()
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	if tx != nil {
		return tx.SendBatch(ctx, b)
	}
	withBegin := &pgx.Batch{}
	withBegin.BeginTx(pgx.TxOptions{})
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := conn.SendBatch(ctx, withBegin)
	t.begun(br.Tx())
	if _, err := br.Exec(); err != nil { // BEGIN's own result
		_ = br.Close()
		return pgx.FailedBatchResults(b, err)
	}
	return br
}

// Exec runs one statement in the transaction.
func (t *writeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tx, err := t.open(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

// Query runs one query in the transaction.
func (t *writeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

// QueryRow runs one query in the transaction.
func (t *writeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.open(ctx)
	if err != nil {
		return failedRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

// CopyFrom copies rows in the transaction.
func (t *writeTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	tx, err := t.open(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, table, columns, src)
}

// Prepare prepares a statement on the transaction's connection.
func (t *writeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

// Begin opens a savepoint in the transaction.
func (t *writeTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

// LargeObjects begins the transaction if need be (it has no context to
// bound that by); should that fail, the large objects are those of a
// closed transaction, whose every call fails.
func (t *writeTx) LargeObjects() pgx.LargeObjects {
	tx, err := t.open(context.Background())
	if err != nil {
		failed := &pgx.Batch{}
		failed.BeginTx(pgx.TxOptions{})
		return pgx.FailedBatchResults(failed, err).Tx().LargeObjects()
	}
	return tx.LargeObjects()
}

// Conn is the transaction's connection (nil once the group is over).
func (t *writeTx) Conn() *pgx.Conn {
	conn, _, err := t.current()
	if err != nil || conn == nil {
		return nil
	}
	return conn.Conn()
}

// Commit leaves the rows to commit with the hand-offs (txGroup.commit).
func (t *writeTx) Commit(context.Context) error {
	_, _, err := t.current()
	return err
}

// Rollback undoes what the handler wrote and returns the connection.
func (t *writeTx) Rollback(ctx context.Context) error { return t.g.rollback(ctx) }

// failedRow is a row whose query could not be sent.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }
