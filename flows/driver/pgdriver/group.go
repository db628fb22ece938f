package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txGroup is the write stage's transaction on a connection of its own,
// shared by the deliveries whose hand-offs commit in it: one delivery's
// (BeginWrite), or those of several messages handled at once
// (BeginWriteGroup), whose polls then pay for one transaction and one
// commit between them. It ends when its last member settles: if every
// member committed, their outputs, acknowledgements and next claims and
// the COMMIT go in one round trip; if any did not (a nack, a shutdown),
// it rolls back, and every member's message is handed out again.
type txGroup struct {
	wtx     *writeTx
	members int

	mu   sync.Mutex
	conn *pgxpool.Conn
	// tx is the transaction once BEGIN has gone to the server. The
	// connection is used outside mu, so that abandon can close it under a
	// handler stuck on the server.
	tx      pgx.Tx
	state   groupState
	waiting int        // members yet to settle
	failed  bool       // a member settled without committing
	batch   *pgx.Batch // the committed members' statements
	ended   chan struct{}
	err     error // the outcome, once ended is closed
}

type groupState int

const (
	groupOpen       groupState = iota
	groupRolledBack            // by the handler: its members wrote nothing
	groupOver                  // ended, or abandoned: no more use
)

// errGroupCommit: a group of several deliveries did not commit. Which
// member's statement failed is not known, so none of them takes the error
// for its own (an acknowledgement that lost its lease, say).
var errGroupCommit = errors.New("pgdriver: the write group did not commit")

func newGroup(conn *pgxpool.Conn, members int) *txGroup {
	g := &txGroup{conn: conn, members: members, waiting: members, batch: &pgx.Batch{}, ended: make(chan struct{})}
	g.wtx = &writeTx{g: g}
	return g
}

// rolledBack reports that the handler rolled the group back: its members
// wrote nothing, and may write again in a group of their own.
func (g *txGroup) rolledBack() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == groupRolledBack
}

// lost reports that the group's connection is closed.
func (g *txGroup) lost() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conn != nil && g.conn.Conn().IsClosed()
}

// rollback undoes what the handler wrote and returns the connection; the
// members settle outside the group, as deliveries that wrote nothing.
func (g *txGroup) rollback(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case groupOver:
		return errDeliveryOver
	case groupRolledBack:
		return pgx.ErrTxClosed
	}
	var err error
	if g.tx != nil {
		err = g.tx.Rollback(context.WithoutCancel(ctx))
	}
	g.releaseLocked()
	if g.waiting < g.members {
		// A member has settled already (a handler wrote again after its
		// group's write): it waits for an outcome the group can no longer
		// have, and so does everyone settling after it.
		g.state = groupOver
		g.err = fmt.Errorf("%w: rolled back after a member settled", errGroupCommit)
		close(g.ended)
		return err
	}
	g.state = groupRolledBack
	return err
}

// commit is a member's settlement by acknowledgement: queue adds its
// statements to the group's batch. It returns once the group has ended,
// with the outcome; the last member to settle ends it.
func (g *txGroup) commit(ctx context.Context, queue func(*pgx.Batch)) error {
	g.mu.Lock()
	if g.state != groupOpen {
		g.mu.Unlock()
		return errDeliveryOver
	}
	queue(g.batch)
	ended := g.settleLocked(ctx)
	<-ended
	return g.err
}

// leave is a member's settlement without committing (nack, shutdown): the
// group will roll back. It does not wait for the group to end.
func (g *txGroup) leave(ctx context.Context) {
	g.mu.Lock()
	if g.state != groupOpen {
		g.mu.Unlock()
		return // rolled back (the member is no longer part of it) or over
	}
	g.failed = true
	g.settleLocked(ctx)
}

// abandon closes the group's connection, which rolls the transaction back
// on the server and makes any further use by a handler still running fail
// instead of racing it (shutdown); the member then leaves.
func (g *txGroup) abandon() {
	g.mu.Lock()
	if g.state == groupOpen && g.conn != nil {
		_ = g.conn.Conn().Close(context.Background())
	}
	g.mu.Unlock()
	g.leave(context.Background())
}

// settleLocked counts a member settled and, for the last one, ends the
// group; it unlocks g.mu and returns the channel closed at the end.
func (g *txGroup) settleLocked(ctx context.Context) <-chan struct{} {
	g.waiting--
	ended := g.ended
	if g.waiting > 0 {
		g.mu.Unlock()
		return ended
	}
	g.state = groupOver
	failed, batch := g.failed, g.batch
	g.mu.Unlock()
	// Nobody else uses the group now: every member has settled.
	g.err = g.end(ctx, failed, batch)
	close(ended)
	return ended
}

// end commits the batch, or rolls back when a member failed, and returns
// the connection.
func (g *txGroup) end(ctx context.Context, failed bool, batch *pgx.Batch) error {
	defer g.release()
	if failed {
		if g.tx != nil {
			_ = g.tx.Rollback(context.WithoutCancel(ctx))
		}
		return fmt.Errorf("%w: a member was not acknowledged", errGroupCommit)
	}
	if g.tx != nil {
		// COMMIT rides in the same round trip and runs only if every
		// statement before it succeeded, since an error skips the rest of
		// a batch. Without BEGIN the batch is a transaction of its own.
		batch.Queue(`COMMIT`)
	}
	err := sendTx(ctx, g.conn, batch)
	if err != nil && g.members > 1 {
		return fmt.Errorf("%w (%d deliveries): %w", errGroupCommit, g.members, err)
	}
	return err
}

func (g *txGroup) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
}

func (g *txGroup) releaseLocked() {
	if g.conn != nil {
		g.conn.Release()
		g.conn = nil
	}
}
