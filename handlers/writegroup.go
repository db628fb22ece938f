package handlers

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/write"
)

// BeginGroupFunc gives the write handler one transaction for several
// messages handled at once, in which the backend commits their hand-offs
// where it has transactions of its own (driver.Driver.BeginWriteGroup).
type BeginGroupFunc func(msgs []*message.Message) (pgx.Tx, error)

// WriteGroups writes the polls of messages handled at the same time in
// shared transactions (group commit). A poll's write costs the database
// mostly per transaction and per statement, not per row: one transaction
// and one statement per table for several polls (write.WriteBatch) cost
// little more than for one. So a write that finds others waiting takes
// them all, up to MaxPolls, and writes them together; one that finds none
// writes alone at once, so a lone poll waits for nobody. Only InFlight
// transactions write at a time: that is what lets the next group gather
// while one writes. A poll waits for a free one at most MaxWait, then
// writes alone: a write stuck on a lock (a replay holding the race's rows)
// must not hold up the races behind it for longer. For the same reason a
// group waits on a row lock at most MaxLockWait: a poll whose race another
// transaction holds would otherwise hold every poll grouped with it, of
// other races and shards, until that transaction ends.
//
// A group that fails (its transaction, or one poll in it) is rolled back
// and every member writes alone, as if there had been no group, so a bad
// poll fails on its own and costs the others one more transaction. A poll
// of a race is never grouped with another of the same race: the flow hands
// out one poll of a race at a time.
type WriteGroups struct {
	begin   BeginGroupFunc
	max     int
	maxWait time.Duration
	slots   chan struct{}
	observe func(polls int, fellBack error)
	opts    []write.Option

	mu      sync.Mutex
	waiting []*groupedPoll
}

// WriteGroupConfig shapes WriteGroups.
type WriteGroupConfig struct {
	// MaxPolls bounds the polls of one transaction; 1 writes every poll
	// alone.
	MaxPolls int
	// InFlight is how many of the groups' transactions write at once.
	InFlight int
	// MaxWait bounds how long a poll waits for one of them to finish
	// before it writes alone.
	MaxWait time.Duration
	// MaxLockWait bounds how long a group's write waits on a row lock
	// (write.LockWait) before it fails and its polls write alone, each
	// waiting on its own locks. The hand-offs that commit with the group
	// are not bounded: a COMMIT that notifies queues for PostgreSQL's
	// notification lock, and failing it would redo the whole group.
	MaxLockWait time.Duration
	// Ends, if set, remembers where the races' history series end from
	// one group's write to the next (write.Ends).
	Ends *write.Ends
	// Observe, if set, hears of every transaction the groups write: how
	// many polls it held, and why it failed if it did (fellBack; its polls
	// then write alone). A poll written alone is a transaction of one,
	// whose error is the poll's own.
	Observe func(polls int, fellBack error)
}

// Validate reports a config WriteGroups cannot run with.
func (c WriteGroupConfig) Validate() error {
	if c.MaxPolls < 1 || c.InFlight < 1 || c.MaxWait <= 0 || c.MaxLockWait < time.Millisecond {
		return errors.New("handlers: write groups need MaxPolls and InFlight of at least 1, a positive MaxWait " +
			"and a MaxLockWait of at least 1ms")
	}
	return nil
}

// NewWriteGroups groups writes with begin's transactions.
func NewWriteGroups(begin BeginGroupFunc, cfg WriteGroupConfig) (*WriteGroups, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []write.Option{write.LockWait(cfg.MaxLockWait)}
	if cfg.Ends != nil {
		opts = append(opts, write.WithEnds(cfg.Ends))
	}
	return &WriteGroups{begin: begin, max: cfg.MaxPolls, maxWait: cfg.MaxWait,
		slots: make(chan struct{}, cfg.InFlight), observe: cfg.Observe, opts: opts}, nil
}

// groupedPoll is a poll waiting for, or written in, a group.
type groupedPoll struct {
	msg   *message.Message
	poll  write.Poll
	alone func() (write.Rows, error) // writes the poll in its own transaction
	done  chan struct{}              // closed once the fields below are set
	rows  write.Rows
	err   error
	// retry: the group failed; the poll is to be written alone.
	retry bool
}

// write writes poll, the snapshot of msg's poll: in a group with the polls
// waiting with it, or alone (with alone) when none is or it waited
// MaxWait. A poll whose group failed is written alone after it.
func (g *WriteGroups) write(msg *message.Message, poll write.Poll, alone func() (write.Rows, error)) (write.Rows, error) {
	if g.max < 2 {
		return alone()
	}
	p := &groupedPoll{msg: msg, poll: poll, alone: alone, done: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, p)
	g.mu.Unlock()
	waited := time.NewTimer(g.maxWait)
	defer waited.Stop()
	for {
		select {
		case <-waited.C:
			if g.withdraw(p) {
				return alone()
			}
			<-p.done // a writer took it meanwhile
			return p.result()
		case <-p.done:
			return p.result()
		case g.slots <- struct{}{}:
			// Free to write: take what waits (this poll, unless another
			// writer took it already) and write it.
			if group := g.writeWaiting(); len(group) == 0 {
				<-p.done // in the group another writer took
				return p.result()
			}
		}
	}
}

func (p *groupedPoll) result() (write.Rows, error) {
	if p.retry {
		return p.alone()
	}
	return p.rows, p.err
}

// withdraw takes p out of the waiting polls; false if a writer took it.
func (g *WriteGroups) withdraw(p *groupedPoll) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.waiting, p)
	if i < 0 {
		return false
	}
	g.waiting = slices.Delete(g.waiting, i, i+1)
	return true
}

// writeWaiting writes what waits on the slot the caller took, and gives
// the slot back however the write ends.
func (g *WriteGroups) writeWaiting() []*groupedPoll {
	defer func() { <-g.slots }()
	group := g.take()
	g.run(group)
	return group
}

// take removes up to max waiting polls, the oldest first.
func (g *WriteGroups) take() []*groupedPoll {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.waiting), g.max)
	group := slices.Clone(g.waiting[:n])
	g.waiting = slices.Delete(g.waiting, 0, n)
	return group
}

// run writes the group in one transaction and tells each member the
// outcome; a group of one writes alone.
func (g *WriteGroups) run(group []*groupedPoll) {
	for _, p := range group {
		p.err = writerStopped(p.poll) // until the write says otherwise
	}
	defer func() {
		for _, p := range group {
			close(p.done)
		}
	}()
	switch len(group) {
	case 0:
		return
	case 1:
		p := group[0]
		p.rows, p.err = p.alone()
		g.observed(1, nil)
		return
	}
	// Transactions that write at once may share meetings (whose rows the
	// write may update): each locks them in the same order, so they queue
	// rather than deadlock. Within a meeting, polls go in the order they
	// were observed, as they would mostly arrive one by one: a meeting
	// row left unchanged keeps the observation that first wrote it.
	slices.SortFunc(group, func(a, b *groupedPoll) int {
		return cmp.Or(cmp.Compare(meetingOf(a.poll), meetingOf(b.poll)),
			a.poll.Snapshot.ObservedAt.Compare(b.poll.Snapshot.ObservedAt),
			cmp.Compare(a.poll.Snapshot.RaceID, b.poll.Snapshot.RaceID))
	})
	msgs := make([]*message.Message, len(group))
	polls := make([]write.Poll, len(group))
	for i, p := range group {
		msgs[i], polls[i] = p.msg, p.poll
	}
	err := g.writeGroup(msgs, polls, group)
	if err != nil {
		for _, p := range group {
			p.retry = true
		}
	}
	g.observed(len(group), err)
}

func (g *WriteGroups) observed(polls int, fellBack error) {
	if g.observe != nil {
		g.observe(polls, fellBack)
	}
}

// writeGroup writes the group's polls in one transaction and sets each
// member's rows.
func (g *WriteGroups) writeGroup(msgs []*message.Message, polls []write.Poll, group []*groupedPoll) error {
	ctx := msgs[0].Context()
	tx, err := g.begin(msgs)
	if err != nil {
		return err
	}
	rows, err := write.WriteBatch(ctx, tx, polls, g.opts...)
	if err != nil {
		_ = tx.Rollback(ctx) // the write error is the one worth reporting
		return err
	}
	// Should the commit fail, whether it committed is unknown; writing
	// again is harmless (a poll written twice is stored once).
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for i, p := range group {
		p.rows, p.err = rows.Polls[i], nil
	}
	return nil
}

// writerStopped is the error of a poll whose group's writer stopped
// (panicked) before it wrote it: retryable, so the handler writes it again.
func writerStopped(p write.Poll) error {
	return writeErr(p.Snapshot.RaceID, p.PollID, KindDatabase, true,
		errors.New("handlers: the write group stopped before writing the poll"))
}

func meetingOf(p write.Poll) string {
	if p.Snapshot.Meeting == nil {
		return ""
	}
	return p.Snapshot.Meeting.MeetingID
}
