package pgdriver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raceflow/raceflow/handlers"
)

// subscriber consumes topics as work queues: each message is handed to one
// subscription at a time under a lease, in topic order, and leaves its table
// when acknowledged (or is marked handled, where the topic keeps its rows).
//
// With parallel 1 only the oldest unhandled message of a topic can be
// leased, so a topic is worked strictly in order, one message at a time,
// whichever process holds the lease. With parallel > 1 a subscription
// holds up to that many leases at once, never two of one race, and a
// message is leased only once every earlier message of its race is
// handled: races run in parallel, each one's messages in order.
type subscriber struct {
	d        *Driver
	keep     bool
	parallel int

	mu     sync.Mutex
	closed bool
	subs   []*subscription
	wg     sync.WaitGroup
}

// subscription is one Subscribe call.
type subscription struct {
	s     *subscriber
	topic string
	owner string // this subscription's leases
	claim string // the claim statement of its topic
	next  string // the claim a delivery's commit makes (nextSQL)
	keyed bool
	// ack and ackAsync acknowledge a delivery that wrote domain rows and one
	// that did not (ackSQL).
	ack, ackAsync string
	signal        *signal
	ctx           context.Context
	cancel        context.CancelFunc
	out           chan *message.Message

	// slots holds a token per message being handled (at most parallel).
	slots chan struct{}
	// mu guards stopped; a slot is taken for a claim made elsewhere
	// (reserve) only while the subscription runs, so that deliveries is
	// never added to once run waits for it.
	mu         sync.Mutex
	stopped    bool
	deliveries sync.WaitGroup
	// waiting: run waits for a slot, as there may be more to claim, so a
	// settling delivery of a keyed topic claims the oldest free head of
	// any race for its slot, not only its race's next (queueNext).
	waiting atomic.Bool
}

// Subscribe hands out topic's messages until ctx ends or Close.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ensure := s.d.ensureTable
	if s.parallel > 1 {
		ensure = s.d.ensureKeyed
	}
	if err := ensure(ctx, topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("pgdriver: subscriber is closed")
	}
	sctx, cancel := context.WithCancel(ctx)
	sub := &subscription{s: s, topic: topic, owner: watermill.NewShortUUID(), claim: claimSQL(topic, s.parallel > 1),
		next: nextSQL(topic, s.parallel > 1), keyed: s.parallel > 1,
		ack: ackSQL(topic, s.keep, false), ackAsync: ackSQL(topic, s.keep, true),
		signal: newSignal(), ctx: sctx, cancel: cancel, out: make(chan *message.Message),
		slots: make(chan struct{}, s.parallel)}
	s.subs = append(s.subs, sub)
	s.d.waker.add(topic, sub.signal)
	s.d.claimers.add(sub)
	s.d.listener.start()
	s.d.looker.start()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(sub.out)
		defer s.d.waker.remove(topic, sub.signal)
		defer s.d.claimers.remove(sub)
		sub.run(sctx)
	}()
	return sub.out, nil
}

// SubscribeInitialize creates the topic's table.
func (s *subscriber) SubscribeInitialize(topic string) error {
	return s.d.ensureTable(context.Background(), topic)
}

// Close ends every subscription; when it returns, their channels are
// closed and their leases released.
func (s *subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	subs := s.subs
	s.mu.Unlock()
	for _, sub := range subs {
		sub.cancel()
	}
	s.wg.Wait()
	return nil
}

// run claims and hands out messages until ctx ends, at most parallel at a
// time: it claims at once while a slot is free and there is work, else when
// woken (a commit, a notification, the driver's fallback look for work that
// nobody announced: look.go). One claimer per subscription keeps idle
// slots from asking the database in vain. Most messages never need it: a
// settling delivery claims its topic's next message, and a commit that
// publishes claims for this subscription when it has a free slot
// (claims.go); run claims what those did not.
func (sub *subscription) run(ctx context.Context) {
	d := sub.s.d
	defer sub.stop()
	var wait <-chan struct{}
	due := true
	for {
		if !due {
			// Woken by a commit of this process, a notification, or the
			// driver's fallback look (look.go), which finds work nobody
			// told this process about.
			select {
			case <-ctx.Done():
			case <-wait:
			}
		}
		if !sub.takeSlot(ctx) {
			return
		}
		wait = sub.signal.wait() // taken before the claim: a wake during it is not lost
		c, err := sub.claimOne(ctx)
		if c != nil {
			sub.deliveries.Add(1)
			go sub.serve(c)
			// More may wait: claim again as soon as a slot is free. On a
			// strictly ordered topic the next message is claimed by this
			// one's settling, so a slot freed later is no reason to claim;
			// on a keyed one that claims only this race's next, and other
			// races may be waiting.
			due = sub.keyed || len(sub.slots) < cap(sub.slots)
			continue
		}
		<-sub.slots
		if err != nil && ctx.Err() == nil {
			d.logger.Error("pgdriver: claim a message", err, watermill.LogFields{"topic": sub.topic})
		}
		due = false
	}
}

// takeSlot waits for a free slot; false when ctx ends first.
func (sub *subscription) takeSlot(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case sub.slots <- struct{}{}:
		return true
	default:
	}
	sub.waiting.Store(true)
	defer sub.waiting.Store(false)
	select {
	case sub.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// serve delivers c, then each message its settling claimed next, on the
// slot it was given, which it frees when there is no next.
func (sub *subscription) serve(c *claimed) {
	defer sub.deliveries.Done()
	defer func() { <-sub.slots }()
	for c != nil {
		c = sub.deliver(sub.ctx, c)
	}
}

// stop ends reservations and waits for every delivery.
func (sub *subscription) stop() {
	sub.mu.Lock()
	sub.stopped = true
	sub.mu.Unlock()
	sub.deliveries.Wait()
}

// reserve takes a free slot for a message to be claimed elsewhere; false
// when none is free or the subscription is ending. The slot goes on to
// handOver.
func (sub *subscription) reserve() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.stopped || sub.ctx.Err() != nil {
		return false
	}
	select {
	case sub.slots <- struct{}{}:
		sub.deliveries.Add(1)
		return true
	default:
		return false
	}
}

// handOver delivers c, claimed elsewhere on a slot reserve took; nil gives
// the slot back.
func (sub *subscription) handOver(c *claimed) {
	if c == nil {
		<-sub.slots
		sub.deliveries.Done()
		return
	}
	go sub.serve(c)
}

// claimed is a leased message.
type claimed struct {
	offset     int64
	msg        *message.Message
	deliveries int
	lastError  string
	raceID     string
}

// claimSQL leases the next message of topic to $1 for $2 seconds and
// counts the delivery; without a message to lease it returns no row. It
// runs in a transaction of its own that does not wait for the disk (a lease
// lost in a server crash is simply not there), or inside the commit of a
// delivery (claims.go). It never waits for a lock: a message locked by
// another transaction is being claimed or settled there, and whoever
// settles it claims the next. So a claim riding in a commit cannot
// deadlock with another.
func claimSQL(topic string, keyed bool) string {
	t := tableOf(topic)
	// Strictly ordered: the oldest unhandled message, only that one.
	next := `SELECT "offset" FROM ` + t + ` WHERE "offset" = (SELECT "offset" FROM ` + t + ` WHERE NOT acked ORDER BY "offset" LIMIT 1)
			AND (lease_until IS NULL OR lease_until <= now()) FOR UPDATE SKIP LOCKED`
	if keyed {
		// The oldest free head of a race: the races with unhandled messages
		// are found by skipping through the (race_id, offset) index, one
		// probe per race, so a long queue of one race costs one probe, not
		// a scan; each race's head is its oldest unhandled message.
		next = `WITH RECURSIVE races AS (
				(SELECT race_id FROM ` + t + ` WHERE NOT acked ORDER BY race_id LIMIT 1)
				UNION ALL
				SELECT (SELECT race_id FROM ` + t + ` WHERE NOT acked AND race_id > races.race_id ORDER BY race_id LIMIT 1)
				FROM races WHERE races.race_id IS NOT NULL),
			heads AS (
				SELECT (SELECT "offset" FROM ` + t + ` WHERE NOT acked AND race_id = races.race_id ORDER BY "offset" LIMIT 1) AS "offset"
				FROM races WHERE races.race_id IS NOT NULL)
			SELECT "offset" FROM ` + t + ` WHERE "offset" IN (SELECT "offset" FROM heads)
				AND NOT acked AND (lease_until IS NULL OR lease_until <= now())
			ORDER BY "offset" LIMIT 1 FOR UPDATE SKIP LOCKED`
	}
	return leaseSQL(t, next)
}

// nextSQL is the claim a delivery's commit makes for the slot it frees: on
// a strictly ordered topic the topic's next message (claimSQL); on a keyed
// one only the next message of the race just handled ($3), found with one
// index probe: that one waited for this delivery, while the heads of other
// races are the run loop's to claim, unless it waits for a slot
// (queueNext).
func nextSQL(topic string, keyed bool) string {
	if !keyed {
		return claimSQL(topic, false)
	}
	t := tableOf(topic)
	return leaseSQL(t, `SELECT "offset" FROM `+t+` WHERE "offset" = (SELECT "offset" FROM `+t+` WHERE NOT acked AND race_id = $3 ORDER BY "offset" LIMIT 1)
			AND (lease_until IS NULL OR lease_until <= now()) FOR UPDATE SKIP LOCKED`)
}

// leaseSQL leases the row next selects (and locks). The conditions on the
// row itself are checked again on the row locked.
func leaseSQL(table, next string) string {
	return `UPDATE ` + table + ` SET deliveries = deliveries + 1, lease_owner = $1,
			lease_until = now() + make_interval(secs => $2)
		WHERE "offset" = (` + next + `) AND NOT acked AND (lease_until IS NULL OR lease_until <= now())
		RETURNING "offset", uuid, payload, metadata, deliveries, coalesce(last_error, ''), race_id`
}

func (sub *subscription) claimOne(ctx context.Context) (*claimed, error) {
	batch := &pgx.Batch{}
	batch.Queue(sqlOwnTx)
	cl := sub.queueClaim(batch)
	if err := sendOwnTx(ctx, sub.s.d.pool, batch); err != nil {
		return nil, err
	}
	return cl.result(), nil
}

// claim is a claim queued in a batch; got is what it leased, once the
// batch has run.
type claim struct {
	sub       *subscription
	got       *claimed
	decodeErr error
}

// queueClaim adds a claim for sub to batch.
func (sub *subscription) queueClaim(batch *pgx.Batch) *claim {
	return sub.queue(batch, sub.claim, sub.owner, sub.s.d.cfg.Lease.Seconds())
}

// queueNext adds to batch the claim of what comes after c (nextSQL). On a
// keyed topic whose run loop waits for a slot, other races' heads are
// waiting: the topic-wide claim takes the oldest (c's next among them,
// c being acknowledged before it), and the slot goes on to it at once,
// where freeing it would have the run loop claim it in a transaction of
// its own.
func (sub *subscription) queueNext(batch *pgx.Batch, c *claimed) *claim {
	if sub.keyed && sub.waiting.Load() {
		return sub.queueClaim(batch)
	}
	if sub.keyed {
		return sub.queue(batch, sub.next, sub.owner, sub.s.d.cfg.Lease.Seconds(), c.raceID)
	}
	return sub.queue(batch, sub.next, sub.owner, sub.s.d.cfg.Lease.Seconds())
}

// queue adds the claim statement q to batch.
func (sub *subscription) queue(batch *pgx.Batch, q string, args ...any) *claim {
	cl := &claim{sub: sub}
	batch.Queue(q, args...).QueryRow(func(r pgx.Row) error {
		var (
			uuid        string
			payload, md []byte
			got         claimed
		)
		err := r.Scan(&got.offset, &uuid, &payload, &md, &got.deliveries, &got.lastError, &got.raceID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if got.msg, cl.decodeErr = decode(uuid, payload, md); cl.decodeErr != nil {
			// Unreadable metadata: hand the message out without it, so the
			// flow poisons it rather than the topic stalling on it.
			got.msg = message.NewMessage(uuid, payload)
		}
		cl.got = &got
		return nil
	})
	return cl
}

// result is the claimed message, once its transaction committed.
func (cl *claim) result() *claimed {
	if cl.decodeErr != nil {
		cl.sub.s.d.logger.Error("pgdriver: message metadata unreadable", cl.decodeErr, watermill.LogFields{"topic": cl.sub.topic})
		cl.decodeErr = nil
	}
	return cl.got
}

// deliveryInfo is what the driver tells of a delivery (Driver.Delivery).
type deliveryInfo struct {
	count     int
	lastError string
}

type infoKey struct{}

// deliver hands c to the subscription's reader and settles it: commit on
// ack, roll back and release the lease on nack; a message whose handler
// ran past the ack deadline, or is still running when the subscription
// closes, is abandoned to its lease. The commit of an ack also claims the
// topic's next message for this slot, which deliver returns (nil: none).
func (sub *subscription) deliver(ctx context.Context, c *claimed) *claimed {
	d := sub.s.d
	dl := &delivery{pool: d.pool}
	mctx, cancel := context.WithTimeout(withDelivery(ctx, dl), d.cfg.AckDeadline)
	defer cancel()
	mctx = context.WithValue(mctx, infoKey{}, deliveryInfo{count: c.deliveries, lastError: c.lastError})
	msg := c.msg
	msg.SetContext(mctx)

	select {
	case sub.out <- msg:
	case <-ctx.Done():
		sub.release(c, 0, "", false) // never handed out: not a delivery
		return nil
	}
	renew := sub.keepLeased(mctx, c)
	defer renew()
	select {
	case <-msg.Acked():
		renew()
		next, err := dl.commit(mctx, sub, c)
		if err == nil {
			return next
		}
		var pgErr *pgconn.PgError
		if !errors.Is(err, errGroupCommit) && errors.As(err, &pgErr) && pgErr.Code == "22012" { // the ack found no lease of ours
			d.logger.Info("pgdriver: acknowledgement dropped", watermill.LogFields{"topic": sub.topic,
				"offset": c.offset, "reason": leaseLost(err).Error()})
			return nil
		}
		// The handling is lost with its transaction; it is redone.
		sub.release(c, c.deliveries, "commit: "+err.Error(), true)
	case <-msg.Nacked():
		renew()
		dl.rollback(mctx)
		sub.release(c, c.deliveries, msg.Metadata.Get(handlers.KeyLastError), true)
	case <-ctx.Done():
		// Shutdown with the message unsettled: whatever its handler still
		// does cannot commit; another subscription takes it over at once.
		renew()
		dl.abandon()
		sub.release(c, 0, "", true)
	}
	return nil
}

// keepLeased renews c's lease while it is handled, until the ack deadline;
// the returned function stops renewing and waits for the renewer. Stopping
// cuts a renewal short: the delivery that stops it is about to settle, and
// may hold one of the pool's connections that the renewal waits for (a
// pool held entirely by settling deliveries would otherwise stall each of
// them until its renewal timed out).
func (sub *subscription) keepLeased(ctx context.Context, c *claimed) func() {
	d := sub.s.d
	stopped, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stopped.Done():
				return
			case <-ctx.Done():
				return // past the deadline the lease runs out: the message is handed over
			case <-t.C:
				rctx, cancel := context.WithTimeout(stopped, d.cfg.Lease/3)
				_, err := d.pool.Exec(rctx, `UPDATE `+tableOf(sub.topic)+` SET lease_until = now() + make_interval(secs => $3)
					WHERE "offset" = $1 AND lease_owner = $2`, c.offset, sub.owner, d.cfg.Lease.Seconds())
				cancel()
				if err != nil && stopped.Err() == nil {
					d.logger.Error("pgdriver: renew a lease", err, watermill.LogFields{"topic": sub.topic, "offset": c.offset})
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			<-done
		})
	}
}

// release gives c's lease up: it can be handed out again after the
// redelivery backoff of its delivery count (0: at once), and keeps why its
// handling failed; a message never handed out does not count as delivered.
// It runs on a fresh connection, so a message whose transaction lost its
// connection is released all the same.
func (sub *subscription) release(c *claimed, deliveries int, lastError string, handedOut bool) {
	d := sub.s.d
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if lastError == "" {
		lastError = c.lastError
	}
	_, err := d.pool.Exec(ctx, `UPDATE `+tableOf(sub.topic)+` SET lease_owner = NULL,
			lease_until = now() + make_interval(secs => $3), last_error = nullif($4, ''),
			deliveries = deliveries - CASE WHEN $5 THEN 0 ELSE 1 END
		WHERE "offset" = $1 AND lease_owner = $2`,
		c.offset, sub.owner, d.redeliveryDelay(deliveries).Seconds(), truncate(lastError, 1000), handedOut)
	if err != nil {
		// The lease runs out on its own.
		d.logger.Error("pgdriver: release a lease", err, watermill.LogFields{"topic": sub.topic, "offset": c.offset})
	}
	if delay := d.redeliveryDelay(deliveries); delay > 0 {
		time.AfterFunc(delay, sub.signal.wake)
		return
	}
	sub.signal.wake()
}

// truncate bounds a stored text.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
