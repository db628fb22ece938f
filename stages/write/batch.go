package write

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/transform"
)

// BatchRows is what a batch changed.
type BatchRows struct {
	// Polls[i] is what the batch's i-th poll changed, exactly as writing the
	// polls one by one in the given order would count it (Durations nil).
	Polls []Rows
	// Durations covers the whole batch, keyed as Rows.Durations.
	Durations map[string]time.Duration
	// Rounds is how many rounds the batch was split into (see WriteBatch).
	Rounds int
	// Appended counts the history rows inserted by the append path, which
	// needs no per-row neighbour lookups (see WriteBatch).
	Appended int
	// Remembered counts the history series whose stored end came from
	// Ends (WithEnds) instead of a lookup.
	Remembered int
}

// Total sums the per-poll counts.
func (b BatchRows) Total() Rows {
	var t Rows
	for _, r := range b.Polls {
		t.Meetings += r.Meetings
		t.Races += r.Races
		t.Entrants += r.Entrants
		t.RacePools += r.RacePools
		t.MoneyFlow += r.MoneyFlow
		t.MoneyFlowCorrected += r.MoneyFlowCorrected
		t.Odds += r.Odds
		t.OddsDeleted += r.OddsDeleted
		t.Results += r.Results
		t.Polls += r.Polls
	}
	t.Durations = b.Durations
	return t
}

// Validate reports why Write would refuse a snapshot before touching the
// database (an error matching ErrInvalidSnapshot), or nil. WriteBatch
// refuses a whole batch with one invalid snapshot, so a caller batching
// polls checks each first.
func Validate(snap transform.RaceSnapshot) error { return validate(snap) }

// WriteBatch writes several polls inside the caller's transaction with the
// result, row for row and count for count, of writing them one by one with
// Write in the given order; polls of one race therefore apply in order.
//
// It is the bulk path (replay); Write is the batch of one. History series
// that the batch only extends at their end (the usual case when polls are
// replayed in order, and a live poll's) are appended: one lookup per series
// for the whole batch finds the stored end, their increments and odds
// changes are derived from it, and their rows are inserted without per-row
// neighbour lookups (BatchRows.Appended); this is where nearly all the time
// of a poll's write went. The rest (late polls, rows already stored) takes
// the general statements. The polls are split into rounds of polls that
// share no race, meeting or runner, in which each table gets one statement
// carrying the rows of every poll of the round; all statements go to the
// server in one pipelined batch after the lookup: two round trips and one
// commit for the lot (with Ends, a third when a race it remembers was
// written elsewhere since, and its series are looked up). A poll goes into the round after the last one holding
// a poll it shares something with, so a batch of polls of different meetings
// is one round and one of a single race is one round per poll. Appending
// assumes no other transaction writes the same series meanwhile (a replay
// writes each race from one worker, the flow one poll of a race at a time);
// if one does, the insert fails on the unique key with a retryable error and
// the batch can be retried.
//
// A batch holding an invalid snapshot is refused before the database, as a
// *DBError for the table "snapshot" naming the poll. On a database error
// the transaction is unusable and the caller must roll it back; which poll
// caused it is not known (a statement may serve several), so a caller that
// must isolate a bad poll writes the batch's polls one by one.
func WriteBatch(ctx context.Context, tx pgx.Tx, polls []Poll, opts ...Option) (BatchRows, error) {
	sess := newSession(opts)
	out := BatchRows{Polls: make([]Rows, len(polls)), Durations: make(map[string]time.Duration, 10)}
	ps := make([]*pending, len(polls))
	for i, p := range polls {
		if err := validate(p.Snapshot); err != nil {
			return BatchRows{}, &DBError{Table: "snapshot", Err: fmt.Errorf("poll %d (%s): %w", i, p.id(), err)}
		}
		ps[i] = newPending(p, &out.Polls[i])
	}
	if len(ps) == 0 {
		return out, nil
	}
	start := time.Now()
	res, err := writePending(ctx, tx, sess, ps, out.Durations)
	if err != nil {
		return BatchRows{Durations: out.Durations}, err
	}
	out.Rounds, out.Appended, out.Remembered = res.rounds, res.appended, res.remembered
	out.Durations[DurationTotal] = time.Since(start)
	return out, nil
}

// written is what writePending did.
type written struct {
	rounds     int // rounds of statements
	appended   int // history rows the append path inserted
	remembered int // series whose end came from Ends, not a lookup
}

// writePending writes ps, valid and in order, as Write would one by one:
// the appendable history series first looked up and derived (appendHistory),
// then every statement in one pipelined batch. With Ends, what the write
// leaves at the end of its appended series is remembered once every
// statement succeeded.
func writePending(ctx context.Context, tx pgx.Tx, sess session, ps []*pending, durations map[string]time.Duration) (written, error) {
	app, err := appendHistory(ctx, tx, sess, ps)
	if err != nil {
		return written{}, err
	}
	plan := planRounds(ps)
	rounds := make([][]stmt, len(plan), len(plan)+1)
	for i, r := range plan {
		stmts, err := roundStatements(r)
		if err != nil {
			return written{}, &DBError{Table: "snapshot", Err: fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)}
		}
		rounds[i] = stmts
	}
	n := 0
	for _, a := range app.stmts {
		n += a.expect
	}
	marks, err := execute(ctx, tx, sess, append(rounds, app.stmts), app.switched, durations, app.marksAfter())
	if err != nil {
		return written{}, err
	}
	app.remember(marks)
	return written{rounds: len(plan), appended: n, remembered: app.remembered}, nil
}

// Option changes how Write and WriteBatch run their statements.
type Option func(*session)

// LockWait bounds how long each of the write's statements waits on a lock,
// in whole milliseconds (at least one): one that would wait longer fails,
// and the batch with it, with SQLSTATE 55P03 (lock_not_available). A
// caller writing the polls of several races together uses it so that one
// race whose rows another transaction holds fails the batch soon instead of
// holding up the other races until that transaction ends. It covers the
// write's statements only; the transaction's own setting is restored after
// them, for whatever the caller runs next.
func LockWait(d time.Duration) Option {
	ms := strconv.FormatInt(max(d.Milliseconds(), 1), 10)
	return func(s *session) { s.lockWait = &ms }
}

// WriteBatchTx writes the polls with WriteBatch in their own transaction and
// commits it. Any error rolls the whole batch back.
func WriteBatchTx(ctx context.Context, db Beginner, polls []Poll) (BatchRows, error) {
	var out BatchRows
	commit, err := inTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		out, err = WriteBatch(ctx, tx, polls)
		return err
	})
	if err != nil {
		return BatchRows{Durations: out.Durations}, err
	}
	out.Durations[DurationCommit] = commit
	return out, nil
}

// planRounds splits polls into rounds whose polls share no race, meeting or
// runner id, keeping every poll after each earlier poll it shares one with.
// Polls that share nothing touch disjoint rows and read disjoint ledger
// entries, so their order does not matter.
func planRounds(ps []*pending) [][]*pending {
	last := make(map[string]int)
	var rounds [][]*pending
	keys := make([]string, 0, 32)
	for _, p := range ps {
		s := p.snap
		keys = append(keys[:0], "r\x00"+s.RaceID)
		if s.Meeting != nil {
			keys = append(keys, "m\x00"+s.Meeting.MeetingID)
		}
		for _, e := range s.Entrants {
			keys = append(keys, "e\x00"+e.EntrantID)
		}
		for _, m := range s.MoneyFlow {
			keys = append(keys, "e\x00"+m.EntrantID)
		}
		for _, o := range s.Odds {
			keys = append(keys, "e\x00"+o.EntrantID)
		}
		r := 0
		for _, k := range keys {
			if at, ok := last[k]; ok && at+1 > r {
				r = at + 1
			}
		}
		for _, k := range keys {
			last[k] = r
		}
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], p)
	}
	return rounds
}
