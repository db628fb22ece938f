package pgdriver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// fanOut reads a results topic as every instance must: each subscription
// reads every message published after it started (and any that no
// instance has read yet), in offset order, whoever handled the poll, and
// marks what it delivered as read, so the backlog shows results no instance
// has read. Rows stay until pruned.
//
// Offsets are taken when a row is inserted but become visible when its
// transaction commits, so a later offset can be read before an earlier one
// commits. A subscription remembers the offsets it skipped (gaps) and looks
// for them again at every read until they appear or are older than any
// transaction that could still commit them (a rolled-back insert leaves a
// gap forever).
type fanOut struct {
	d *Driver

	mu     sync.Mutex
	closed bool
	cancel []context.CancelFunc
	wg     sync.WaitGroup
}

// gapWait is how long a skipped offset is looked for.
func (f *fanOut) gapWait() time.Duration { return f.d.cfg.AckDeadline + time.Minute }

// markEvery is how long delivered results may wait to be marked read by
// a reader that keeps reading (queueMarks): a busy reader marks a batch of
// them at a time, instead of planning and running a marking per read.
const markEvery = 100 * time.Millisecond

// readBatch bounds one read.
const readBatch = 500

// maxGaps bounds the offsets looked for again after a jump of the sequence.
const maxGaps = 1000

// Subscribe reads topic's messages published from now on.
func (f *fanOut) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := f.d.ensureTable(ctx, topic); err != nil {
		return nil, err
	}
	// From the oldest result no instance has read (one published while no
	// instance ran, or read by none yet), else the newest committed one;
	// offsets taken but not yet committed (the sequence is ahead) may still
	// appear: they start as gaps.
	var start, taken int64
	var seq string
	t := tableOf(topic)
	if err := f.d.pool.QueryRow(ctx, `SELECT coalesce((SELECT min("offset") - 1 FROM `+t+` WHERE NOT acked),
			(SELECT max("offset") FROM `+t+`), 0), pg_get_serial_sequence($1, 'offset')`, t).Scan(&start, &seq); err != nil {
		return nil, fmt.Errorf("pgdriver: start reading %s: %w", topic, err)
	}
	// pg_get_serial_sequence returns the name quoted as needed.
	if err := f.d.pool.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM `+seq).Scan(&taken); err != nil {
		return nil, fmt.Errorf("pgdriver: start reading %s: %w", topic, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("pgdriver: subscriber is closed")
	}
	sctx, cancel := context.WithCancel(ctx)
	f.cancel = append(f.cancel, cancel)
	sig := newSignal()
	f.d.waker.add(topic, sig)
	f.d.listener.start()
	out := make(chan *message.Message)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(out)
		defer f.d.waker.remove(topic, sig)
		r := &tailReader{f: f, topic: topic, next: start, gaps: map[int64]time.Time{}}
		for off := max(start+1, taken-maxGaps+1); off <= taken; off++ {
			r.gaps[off] = time.Now()
		}
		r.run(sctx, sig, out)
	}()
	return out, nil
}

// Close ends every subscription and waits for them.
func (f *fanOut) Close() error {
	f.mu.Lock()
	f.closed = true
	cancels := f.cancel
	f.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	f.wg.Wait()
	return nil
}

// tailReader is one subscription's position in its topic.
type tailReader struct {
	f        *fanOut
	topic    string
	next     int64               // every offset up to here was read or is a gap
	gaps     map[int64]time.Time // skipped offsets, since when
	unmarked []int64             // delivered, not yet marked read (queueMarks)
	since    time.Time           // when the oldest of unmarked was delivered
}

func (r *tailReader) run(ctx context.Context, sig *signal, out chan<- *message.Message) {
	d := r.f.d
	defer r.markLeft()
	for ctx.Err() == nil {
		wait := sig.wait()
		n, err := r.read(ctx, out)
		if err != nil && ctx.Err() == nil {
			d.logger.Error("pgdriver: read results", err, watermill.LogFields{"topic": r.topic})
		}
		if n == readBatch {
			continue // more waiting
		}
		timer := time.NewTimer(d.pollInterval())
		select {
		case <-ctx.Done():
		case <-wait:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// readSQL reads what follows offset $1 and the gaps $2, in order. Each
// part is an index range of its own: as one condition (a > $1 OR a = ANY)
// the planner walks the whole primary key and filters, and the table keeps
// every result until it is pruned. The upper bound, the table's last
// offset, changes nothing read (it is read in the statement's snapshot)
// but keeps the range an index range: with "offset" > $1 alone, a plan
// made while the table was young and never analysed (a new namespace's
// first minutes) scans and sorts the whole table on every read, and a
// connection keeps that plan as the table grows.
func readSQL(topic string) string {
	t, limit := tableOf(topic), strconv.Itoa(readBatch)
	return `(SELECT "offset", uuid, payload, metadata FROM ` + t + ` WHERE "offset" > $1
			AND "offset" <= (SELECT max("offset") FROM ` + t + `) ORDER BY "offset" LIMIT ` + limit + `)
		UNION ALL
		(SELECT "offset", uuid, payload, metadata FROM ` + t + ` WHERE "offset" = ANY($2) AND "offset" <= $1)
		ORDER BY 1 LIMIT ` + limit
}

// read delivers what is new (and any gap that appeared), marks it handled,
// and returns how many rows it read.
func (r *tailReader) read(ctx context.Context, out chan<- *message.Message) (int, error) {
	now := time.Now()
	gaps := make([]int64, 0, len(r.gaps))
	for off, since := range r.gaps {
		if now.Sub(since) > r.f.gapWait() {
			delete(r.gaps, off)
			continue
		}
		gaps = append(gaps, off)
	}
	type got struct {
		offset int64
		msg    *message.Message
	}
	var batch []got
	var (
		offset      int64
		uuid        string
		payload, md []byte
	)
	q := &pgx.Batch{}
	marking := 0
	if time.Since(r.since) >= markEvery {
		marking = r.queueMarks(q)
	}
	q.Queue(readSQL(r.topic), r.next, gaps).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&offset, &uuid, &payload, &md}, func() error {
			msg, err := decode(uuid, slices.Clone(payload), slices.Clone(md))
			if err != nil {
				r.f.d.logger.Error("pgdriver: unreadable result skipped", err, watermill.LogFields{"topic": r.topic})
				msg = nil
			}
			batch = append(batch, got{offset, msg})
			return nil
		})
		return err
	})
	if err := sendOwnTx(ctx, r.f.d.pool, q); err != nil {
		return 0, err
	}
	r.unmarked = r.unmarked[marking:]
	var delivered []int64
	for _, g := range batch {
		delete(r.gaps, g.offset)
		if g.offset > r.next {
			for missing := max(r.next+1, g.offset-maxGaps); missing < g.offset; missing++ {
				r.gaps[missing] = now
			}
			r.next = g.offset
		}
		if g.msg == nil {
			continue
		}
		acked := r.hand(ctx, g.msg, out)
		if acked {
			delivered = append(delivered, g.offset)
		}
		if !acked || ctx.Err() != nil {
			break
		}
	}
	if len(r.unmarked) == 0 && len(delivered) > 0 {
		r.since = time.Now()
	}
	r.unmarked = append(r.unmarked, delivered...)
	return len(batch), nil
}

// queueMarks queues the marking of every delivered result not yet marked
// and returns how many it marks (0: nothing queued). Marking is
// bookkeeping: the backlog shows results no instance has read, and a new
// subscription starts from the oldest of them. So it is done in bulk, not
// per read: a read marks what was delivered before it once the oldest of
// that is markEvery old, in the same round trip and transaction (which
// then does not wait for the disk); an idle reader reads, and so marks, at
// every poll interval, and one that ends marks what is left (markLeft).
// Unlike the claims, the marking and the read are planned for their values
// (no genericPlans): a generic plan made while the table is young scans it
// whole, and the table keeps every result until it is pruned.
func (r *tailReader) queueMarks(q *pgx.Batch) int {
	if len(r.unmarked) == 0 {
		return 0
	}
	q.Queue(markSQL(r.topic), r.unmarked)
	return len(r.unmarked)
}

// markLeft marks what the reader delivered since its last read, as it ends.
func (r *tailReader) markLeft() {
	if len(r.unmarked) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := &pgx.Batch{}
	r.queueMarks(q)
	if err := sendOwnTx(ctx, r.f.d.pool, q); err != nil {
		r.f.d.logger.Debug("pgdriver: mark results read", watermill.LogFields{"topic": r.topic, "error": err.Error()})
	}
}

// hand gives msg to the reader and waits until it is settled; a nacked
// result is handed out again. False: the subscription ends.
func (r *tailReader) hand(ctx context.Context, msg *message.Message, out chan<- *message.Message) bool {
	for {
		m := msg.Copy()
		mctx, cancel := context.WithCancel(ctx)
		m.SetContext(mctx)
		select {
		case out <- m:
		case <-ctx.Done():
			cancel()
			return false
		}
		select {
		case <-m.Acked():
			cancel()
			return true
		case <-m.Nacked():
			cancel()
		case <-ctx.Done():
			cancel()
			// Acknowledged as the subscription ended, it was read: marked
			// as it ends (markLeft), not handed out again by the next.
			select {
			case <-m.Acked():
				return true
			default:
				return false
			}
		}
	}
}

// markSQL marks the results at the offsets $1 read, and lets its
// transaction commit without waiting for the disk.
func markSQL(topic string) string {
	return `WITH m AS (UPDATE ` + tableOf(topic) + ` SET acked = TRUE WHERE "offset" = ANY($1) AND NOT acked) ` + sqlNoDiskWait
}
