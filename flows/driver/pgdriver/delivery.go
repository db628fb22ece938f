package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// delivery is one handing out of one message: the write transaction its
// handler works in (a txGroup, begun only when the handler first needs the
// database, and maybe shared with other deliveries), and the outputs it
// published, inserted when the message is acknowledged. The outputs, the
// handler's writes and the acknowledgement commit together, or none of
// them do.
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
	group   *txGroup // the write transaction, once the handler asked for one
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

// sqlOwnTx opens a batch that is a transaction of its own, as a statement
// or in the batch's first (queueOutputs): the transaction commits without
// waiting for the disk (see delivery) and plans the statements after it
// generically (genericPlans). The driver's batches rely on how
// PostgreSQL runs a pipeline: the statements of a batch sent without BEGIN
// form one transaction, committed once the last has run (pgx ends a batch
// with one Sync), and an error skips the rest and rolls them all back. So
// BEGIN and COMMIT are left out, and the settings go with set_config (SET
// LOCAL warns outside BEGIN), or in a hand-off's acknowledgement itself
// (ackSQL).
//
// genericPlans: the plans of the claims and acknowledgements do not depend
// on their values (offsets, owners, race ids), but PostgreSQL's default
// (plan_cache_mode auto) keeps planning most of them again at every
// execution, since a plan made for the values looks cheaper than the
// generic one (the keyed claim's walk took half as long to plan as to
// run). A generic plan is made once per connection and statement, and
// made again when the table's statistics change; every plan of these
// statements reads the topic through its indexes, young table or not (at
// worst a scan of the index of unhandled rows).
const (
	sqlOwnTx      = sqlNoDiskWait + `, ` + genericPlans
	sqlNoDiskWait = `SELECT ` + noDiskWait
	noDiskWait    = `set_config('synchronous_commit', 'off', true)`
	genericPlans  = `set_config('plan_cache_mode', 'force_generic_plan', true)`
)

// errDeliveryOver: the delivery was settled (or abandoned at shutdown)
// while its handler still used it.
var errDeliveryOver = errors.New("pgdriver: the message's delivery is over")

// write gives the write stage the delivery's transaction (writeTx), on a
// connection of its own until the delivery ends: its group's, if it has
// one still open, else a new group of one.
func (d *delivery) write(ctx context.Context) (pgx.Tx, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil, errDeliveryOver
	}
	if d.group == nil || d.group.rolledBack() {
		conn, err := d.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		d.group = newGroup(conn, 1)
	}
	return d.group.wtx, nil
}

// join makes the delivery a member of g, which must be its first write
// transaction or follow one rolled back.
func (d *delivery) join(g *txGroup) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.done:
		return errDeliveryOver
	case d.writingLocked() != nil:
		return errAlreadyWriting
	}
	d.group = g
	return nil
}

// errAlreadyWriting: BeginWriteGroup for a delivery whose write
// transaction is open.
var errAlreadyWriting = errors.New("pgdriver: the message's delivery already has a write transaction open")

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
	g := d.group
	d.mu.Unlock()
	return g != nil && g.lost()
}

// writingLocked is the group the delivery wrote in, unless none or rolled
// back; d.mu is held. (A group over before the delivery settled fails its
// commit, txGroup.commit.)
func (d *delivery) writingLocked() *txGroup {
	if d.group != nil && !d.group.rolledBack() {
		return d.group
	}
	return nil
}

// commit inserts the outputs, acknowledges the delivered message c (which
// must find it still leased to sub, or it fails and everything rolls back),
// claims what comes after it for sub (nextSQL) and commits; it returns the
// message claimed, if any: one round trip, in the write stage's
// transaction if the handler opened one (BeginWrite), else in its own. In
// a group of several, the round trip is the last member's, and the
// outcome every member's.
func (d *delivery) commit(ctx context.Context, sub *subscription, c *claimed) (*claimed, error) {
	d.mu.Lock()
	if d.done {
		d.mu.Unlock()
		return nil, errDeliveryOver
	}
	d.done = true
	g, pending := d.writingLocked(), d.pending
	d.mu.Unlock()

	var (
		out  *outputs
		next *claim
	)
	queue := func(batch *pgx.Batch) {
		out = sub.s.d.queueOutputs(batch, pending, `SELECT `+genericPlans)
		ack := sub.ackAsync
		if g != nil {
			ack = sub.ack
		}
		batch.Queue(ack, c.offset, sub.owner)
		next = sub.queueNext(batch, c)
	}
	var err error
	if g != nil {
		err = g.commit(ctx, queue)
	} else {
		batch := &pgx.Batch{}
		queue(batch)
		err = sendOwnTx(ctx, d.pool, batch)
	}
	if out == nil { // the group was over before this member could queue
		return nil, err
	}
	if err != nil {
		out.failed()
		return nil, err
	}
	out.committed()
	return next.result(), nil
}

// sendOwnTx sends a batch that is a transaction of its own
// (sqlOwnTx) on a pooled connection.
func sendOwnTx(ctx context.Context, pool *pgxpool.Pool, batch *pgx.Batch) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return sendTx(ctx, conn, batch)
}

// sendTx sends a batch that commits: a batch of its own transaction
// (sqlOwnTx), or the end of an explicit one, ending with COMMIT.
// Should it not commit, the transaction is rolled back before the
// connection returns to the pool.
func sendTx(ctx context.Context, conn *pgxpool.Conn, batch *pgx.Batch) error {
	err := conn.SendBatch(ctx, batch).Close()
	if conn.Conn().PgConn().TxStatus() != 'I' {
		if err == nil {
			err = errors.New("pgdriver: the transaction did not commit")
		}
		if _, rbErr := conn.Exec(context.WithoutCancel(ctx), `ROLLBACK`); rbErr != nil {
			// A connection in an unknown state must not serve anyone else.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}
	return err
}

// rollback ends the delivery without committing anything; a group it
// wrote in rolls back.
func (d *delivery) rollback(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	if d.group != nil {
		d.group.leave(ctx)
	}
}

// abandon ends a delivery whose handler may still be running (shutdown):
// its write transaction's connection is closed, which rolls it back on the
// server and makes any further use by the handler fail instead of racing
// it.
func (d *delivery) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	if d.group != nil {
		d.group.abandon()
	}
}

// ackSQL is the acknowledgement of a delivered row: it fails (division by
// zero) when the row is no longer leased to this delivery, because another
// instance took it over, so that the delivery's outputs roll back with it.
// It switches to generic plans for the claim after it (sqlOwnTx); with
// async it also commits without waiting for the disk, one statement fewer
// for a hand-off that wrote nothing.
func ackSQL(topic string, keep, async bool) string {
	t := tableOf(topic)
	change := `DELETE FROM ` + t
	if keep {
		change = `UPDATE ` + t + ` SET acked = TRUE, lease_owner = NULL, lease_until = NULL`
	}
	result := `1 / count(*), ` + genericPlans
	if async {
		result += `, ` + noDiskWait
	}
	return `WITH a AS (` + change + ` WHERE "offset" = $1 AND lease_owner = $2 RETURNING 1) SELECT ` + result + ` FROM a`
}

// errLeaseLost: the acknowledgement found the row leased to someone else.
func leaseLost(err error) error {
	return fmt.Errorf("pgdriver: the message was taken over by another subscription (lease expired): %w", err)
}
