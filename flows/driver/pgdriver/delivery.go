package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// delivery is one handing out of one message: the transaction its handler
// works in, begun only when the handler first needs the database, and the
// outputs it published, inserted when the message is acknowledged. The
// outputs, the handler's writes and the acknowledgement commit together, or
// none of them do.
//
// A delivery that wrote domain rows (BeginWrite) commits synchronously: its
// rows are the store of record. Every other hand-off commits without
// waiting for the disk: should the server crash, it loses the last moments
// of hand-offs whole (input unacknowledged, output never published), and
// their inputs are handed out again; since later commits flush earlier
// ones, nothing a durable commit depends on can be lost.
type delivery struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	conn    *pgxpool.Conn
	tx      pgx.Tx
	wrote   bool
	pending []published
	done    bool // committed, rolled back or abandoned: no more use
}

// published is what a handler published during its delivery.
type published struct {
	topic string
	rows  []row
}

type deliveryKey struct{}

func withDelivery(ctx context.Context, d *delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

func deliveryOf(ctx context.Context) (*delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	return d, ok
}

// errDeliveryOver: the delivery was settled (or abandoned at shutdown)
// while its handler still used it.
var errDeliveryOver = errors.New("pgdriver: the message's delivery is over")

// begin returns the delivery's transaction, beginning it on first use.
func (d *delivery) begin(ctx context.Context) (pgx.Tx, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil, errDeliveryOver
	}
	if d.tx != nil {
		return d.tx, nil
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Release()
		return nil, err
	}
	d.conn, d.tx = conn, tx
	return tx, nil
}

// write gives the write stage the delivery's transaction (deliveryTx). It
// holds nothing else until the delivery commits, so a failed write can undo
// the whole of it and the delivery still publish a failure result and
// poison, in a transaction of its own; a savepoint would cost every
// successful write two more round trips for that rare case.
func (d *delivery) write(ctx context.Context) (pgx.Tx, error) {
	tx, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.wrote = true
	d.mu.Unlock()
	return deliveryTx{Tx: tx, d: d}, nil
}

// deliveryTx is the delivery's transaction as the write stage holds it: its
// rows commit with the hand-off, not before.
type deliveryTx struct {
	pgx.Tx
	d *delivery
}

// Commit leaves the rows to commit with the hand-off (delivery.commit).
func (t deliveryTx) Commit(context.Context) error { return t.d.current(t.Tx) }

// Rollback undoes what the handler wrote, which is all the transaction
// holds, and returns its connection.
func (t deliveryTx) Rollback(ctx context.Context) error {
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.currentLocked(t.Tx); err != nil {
		return err
	}
	err := d.tx.Rollback(context.WithoutCancel(ctx))
	d.release()
	d.wrote = false
	return err
}

// current says whether tx is still the delivery's open transaction.
func (d *delivery) current(tx pgx.Tx) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.currentLocked(tx)
}

func (d *delivery) currentLocked(tx pgx.Tx) error {
	switch {
	case d.done:
		return errDeliveryOver
	case d.tx != tx:
		return pgx.ErrTxClosed
	}
	return nil
}

// publish records outputs to insert at commit.
func (d *delivery) publish(topic string, rows []row) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return errDeliveryOver
	}
	d.pending = append(d.pending, published{topic: topic, rows: rows})
	return nil
}

// lost reports that the transaction lost its connection.
func (d *delivery) lost() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil && d.conn.Conn().IsClosed()
}

// commit inserts the outputs, acknowledges the delivered message c (which
// must find it still leased to sub, or it fails and everything rolls back),
// claims what comes after it for sub (nextSQL) and commits; it returns the
// message claimed, if any. Without a transaction begun, it all goes to
// the server in one round trip.
func (d *delivery) commit(ctx context.Context, sub *subscription, c *claimed) (*claimed, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil, errDeliveryOver
	}
	d.done = true
	batch := &pgx.Batch{}
	if d.tx == nil {
		batch.Queue(`BEGIN`)
		batch.Queue(`SET LOCAL synchronous_commit TO OFF`)
	}
	out := sub.s.d.queueOutputs(batch, d.pending)
	batch.Queue(sub.ack, c.offset, sub.owner)
	next := sub.queueNext(batch, c)
	if err := d.send(ctx, batch); err != nil {
		out.failed()
		return nil, err
	}
	out.committed()
	return next.result(), nil
}

// send runs batch in the delivery's transaction, or in one of its own, and
// commits: the COMMIT goes in the same round trip, after every statement of
// the batch has succeeded (an error skips the rest of a pipelined batch).
func (d *delivery) send(ctx context.Context, batch *pgx.Batch) error {
	if d.tx == nil {
		batch.Queue(`COMMIT`)
		return sendOwnTx(ctx, d.pool, batch)
	}
	defer d.release()
	if !d.wrote {
		batch.Queue(`SET LOCAL synchronous_commit TO OFF`)
	}
	batch.Queue(`COMMIT`)
	err := d.tx.SendBatch(ctx, batch).Close()
	if err == nil && d.conn.Conn().PgConn().TxStatus() != 'I' {
		err = errors.New("pgdriver: the transaction did not commit")
	}
	if err != nil {
		_ = d.tx.Rollback(context.WithoutCancel(ctx))
	}
	return err
}

// sendOwnTx sends a batch that begins and commits its own transaction on a
// pooled connection; should a statement fail, the transaction is rolled
// back before the connection returns to the pool.
func sendOwnTx(ctx context.Context, pool *pgxpool.Pool, batch *pgx.Batch) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	err = conn.SendBatch(ctx, batch).Close()
	if conn.Conn().PgConn().TxStatus() != 'I' {
		if _, rbErr := conn.Exec(context.WithoutCancel(ctx), `ROLLBACK`); rbErr != nil {
			// A connection in an unknown state must not serve anyone else.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}
	return err
}

// rollback ends the delivery without committing anything.
func (d *delivery) rollback(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	if d.tx != nil {
		_ = d.tx.Rollback(context.WithoutCancel(ctx))
		d.release()
	}
}

// abandon ends a delivery whose handler may still be running (shutdown):
// its connection is closed, which rolls the transaction back on the server
// and makes any further use by the handler fail instead of racing it.
func (d *delivery) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	if d.conn != nil {
		_ = d.conn.Conn().Close(context.Background())
		d.release()
	}
}

// release returns the connection to the pool; d.mu is held.
func (d *delivery) release() {
	if d.conn != nil {
		d.conn.Release()
		d.conn, d.tx = nil, nil
	}
}

// ackSQL is the acknowledgement of a delivered row: it fails (division by
// zero) when the row is no longer leased to this delivery, because another
// instance took it over, so that the delivery's outputs roll back with it.
func ackSQL(topic string, keep bool) string {
	t := tableOf(topic)
	change := `DELETE FROM ` + t
	if keep {
		change = `UPDATE ` + t + ` SET acked = TRUE, lease_owner = NULL, lease_until = NULL`
	}
	return `WITH a AS (` + change + ` WHERE "offset" = $1 AND lease_owner = $2 RETURNING 1) SELECT 1 / count(*) FROM a`
}

// errLeaseLost: the acknowledgement found the row leased to someone else.
func leaseLost(err error) error {
	return fmt.Errorf("pgdriver: the message was taken over by another subscription (lease expired): %w", err)
}
