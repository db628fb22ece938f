package handlers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// volatile are the columns that record when a row was written.
var volatile = pgtest.Bookkeeping()

// groupPolls are the first polls of n races of a simulated day (today), of
// two meetings, so that groups write rows of several races and meetings.
func groupPolls(t *testing.T, n int) []write.Poll {
	t.Helper()
	day, err := simday.Build(context.Background(), simday.Config{Meetings: 2, RacesPerMeeting: n})
	require.NoError(t, err)
	seen := map[string]bool{}
	var polls []write.Poll
	for _, f := range day.Fetches {
		if seen[f.RaceID] {
			continue
		}
		seen[f.RaceID] = true
		ev, err := nztab.DecodeEvent(f.Body)
		require.NoError(t, err)
		snap, err := transform.Transform(ev, f.ObservedAt)
		require.NoError(t, err)
		polls = append(polls, write.Poll{Snapshot: snap, PollID: f.RaceID + "@1"})
		if len(polls) == n {
			return polls
		}
	}
	t.Fatalf("the simulated day has %d races, want %d", len(polls), n)
	return nil
}

// groupRun records what WriteGroups did with the database.
type groupRun struct {
	db *pgtest.DB

	mu       sync.Mutex
	begun    []int   // the size of each group begun
	observed []int   // Observe's polls, in order
	failed   []error // Observe's fellBack, in order
}

func newGroupRun(t *testing.T, maxWait, maxLockWait time.Duration) (*groupRun, *WriteGroups) {
	r := &groupRun{db: pgtest.New(t)}
	g, err := NewWriteGroups(func(msgs []*message.Message) (pgx.Tx, error) {
		r.mu.Lock()
		r.begun = append(r.begun, len(msgs))
		r.mu.Unlock()
		return r.db.Pool.Begin(msgs[0].Context())
	}, WriteGroupConfig{MaxPolls: 16, InFlight: 1, MaxWait: maxWait, MaxLockWait: maxLockWait, Observe: func(polls int, fellBack error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.observed = append(r.observed, polls)
		r.failed = append(r.failed, fellBack)
	}})
	require.NoError(t, err)
	return r, g
}

// alone writes p in a transaction of its own, as the write handler does.
func (r *groupRun) alone(p write.Poll) func() (write.Rows, error) {
	return func() (write.Rows, error) { return write.WriteTx(context.Background(), r.db.Pool, p) }
}

// holdTheWriter starts a write of p that holds the only transaction slot
// until the returned release is called; done receives its outcome.
func holdTheWriter(t *testing.T, r *groupRun, g *WriteGroups, p write.Poll) (release func(), done <-chan error) {
	t.Helper()
	holding, free, out := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := g.write(message.NewMessage("held", nil), p, func() (write.Rows, error) {
			close(holding)
			<-free
			return r.alone(p)()
		})
		out <- err
	}()
	<-holding
	return func() { close(free) }, out
}

type written struct {
	i    int
	rows write.Rows
	err  error
}

// writeAll writes polls through g at once, each alone with its alone(i).
func writeAll(g *WriteGroups, polls []write.Poll, alone func(i int) func() (write.Rows, error)) <-chan written {
	out := make(chan written, len(polls))
	for i, p := range polls {
		go func() {
			rows, err := g.write(message.NewMessage(p.PollID, nil), p, alone(i))
			out <- written{i, rows, err}
		}()
	}
	return out
}

func (g *WriteGroups) waitingNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

func TestPollsWaitingForAWriterShareOneTransactionAndStoreWhatWritingAloneStores(t *testing.T) {
	polls := groupPolls(t, 6)
	r, g := newGroupRun(t, time.Hour, time.Hour)
	release, firstDone := holdTheWriter(t, r, g, polls[0])
	out := writeAll(g, polls[1:], func(i int) func() (write.Rows, error) {
		return func() (write.Rows, error) { return write.Rows{}, errors.New("wrote alone") }
	})
	require.Eventually(t, func() bool { return g.waitingNow() == len(polls)-1 }, time.Minute, time.Millisecond)
	release()
	require.NoError(t, <-firstDone)
	for range polls[1:] {
		w := <-out
		require.NoError(t, w.err, "poll %d", w.i+1)
		require.Equal(t, 1, w.rows.Polls, "poll %d: its own counts", w.i+1)
		require.Positive(t, w.rows.Entrants, "poll %d", w.i+1)
	}
	require.Equal(t, []int{len(polls) - 1}, r.begun, "one transaction for every poll that waited")
	require.Equal(t, []int{1, len(polls) - 1}, r.observed)

	ref := pgtest.New(t)
	for _, p := range polls {
		_, err := write.WriteTx(context.Background(), ref.Pool, p)
		require.NoError(t, err)
	}
	for _, table := range pgtest.DomainTables() {
		want, got := pgtest.Rows(t, ref.Pool, table, volatile...), pgtest.Rows(t, r.db.Pool, table, volatile...)
		require.Empty(t, pgtest.DiffRows(want, got, 5), "%s: the group stores what writing each poll alone stores", table)
	}
}

func TestAFailedGroupWritesEachOfItsPollsAloneSoOnlyTheBadOneFails(t *testing.T) {
	polls := groupPolls(t, 5)
	// A poll ten years back: valid, but no history partition takes its rows.
	bad := polls[4].Snapshot
	shift := func(at time.Time) time.Time { return at.AddDate(-10, 0, 0) }
	bad.ObservedAt = shift(bad.ObservedAt)
	bad.MoneyFlow = append([]transform.MoneyFlow(nil), bad.MoneyFlow...)
	for i := range bad.MoneyFlow {
		bad.MoneyFlow[i].PollingTimestamp = shift(bad.MoneyFlow[i].PollingTimestamp)
		bad.MoneyFlow[i].EventTimestamp = shift(bad.MoneyFlow[i].EventTimestamp)
	}
	bad.Odds = append([]transform.Odds(nil), bad.Odds...)
	for i := range bad.Odds {
		bad.Odds[i].EventTimestamp = shift(bad.Odds[i].EventTimestamp)
	}
	polls[4].Snapshot = bad
	require.NoError(t, write.Validate(bad))

	r, g := newGroupRun(t, time.Hour, time.Hour)
	release, firstDone := holdTheWriter(t, r, g, polls[0])
	var mu sync.Mutex
	alone := map[int]int{}
	out := writeAll(g, polls[1:], func(i int) func() (write.Rows, error) {
		return func() (write.Rows, error) {
			mu.Lock()
			alone[i+1]++
			mu.Unlock()
			return r.alone(polls[i+1])()
		}
	})
	require.Eventually(t, func() bool { return g.waitingNow() == len(polls)-1 }, time.Minute, time.Millisecond)
	release()
	require.NoError(t, <-firstDone)
	for range polls[1:] {
		w := <-out
		if w.i+1 == 4 {
			require.ErrorIs(t, w.err, write.ErrPartitionMissing, "the bad poll fails with its own error")
			continue
		}
		require.NoError(t, w.err, "poll %d", w.i+1)
		require.Equal(t, 1, w.rows.Polls, "poll %d", w.i+1)
	}
	require.Equal(t, map[int]int{1: 1, 2: 1, 3: 1, 4: 1}, alone, "each poll of the failed group wrote alone once")
	require.Equal(t, []int{1, len(polls) - 1}, r.observed)
	require.NoError(t, r.failed[0])
	require.ErrorIs(t, r.failed[1], write.ErrPartitionMissing, "the group's failure is observed")

	var stored int
	require.NoError(t, r.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM race_polls`).Scan(&stored))
	require.Equal(t, len(polls)-1, stored, "every poll but the bad one is stored, once")
}

func TestAPollWaitsForABusyWriterAtMostMaxWaitThenWritesAlone(t *testing.T) {
	polls := groupPolls(t, 2)
	r, g := newGroupRun(t, time.Millisecond, time.Hour)
	release, firstDone := holdTheWriter(t, r, g, polls[0])
	defer func() {
		release()
		require.NoError(t, <-firstDone)
	}()
	rows, err := g.write(message.NewMessage("second", nil), polls[1], r.alone(polls[1]))
	require.NoError(t, err, "written while the first writer still holds its transaction")
	require.Equal(t, 1, rows.Polls)
	require.Zero(t, g.waitingNow())
}

func TestAWriterAloneWaitsForNobody(t *testing.T) {
	polls := groupPolls(t, 1)
	r, g := newGroupRun(t, time.Hour, time.Hour)
	rows, err := g.write(message.NewMessage("only", nil), polls[0], r.alone(polls[0]))
	require.NoError(t, err)
	require.Equal(t, 1, rows.Polls)
	require.Empty(t, r.begun, "a poll with nobody to share with writes alone")
	require.Equal(t, []int{1}, r.observed)
}

func TestAGroupWhoseWriterPanicsLeavesItsOtherPollsARetryableErrorNotASuccess(t *testing.T) {
	polls := groupPolls(t, 3)
	r := &groupRun{db: pgtest.New(t)}
	g, err := NewWriteGroups(func([]*message.Message) (pgx.Tx, error) { panic("begin blew up") },
		WriteGroupConfig{MaxPolls: 16, InFlight: 1, MaxWait: time.Hour, MaxLockWait: time.Hour})
	require.NoError(t, err)
	release, firstDone := holdTheWriter(t, r, g, polls[0])
	type outcome struct {
		err      error
		panicked bool
	}
	out := make(chan outcome, 2)
	for _, p := range polls[1:] {
		go func() {
			defer func() {
				if recover() != nil {
					out <- outcome{panicked: true}
				}
			}()
			_, err := g.write(message.NewMessage(p.PollID, nil), p, func() (write.Rows, error) {
				return write.Rows{}, errors.New("wrote alone")
			})
			out <- outcome{err: err}
		}()
	}
	require.Eventually(t, func() bool { return g.waitingNow() == 2 }, time.Minute, time.Millisecond)
	release()
	// The waiting writers hold the slot the first one frees, so one of
	// them leads the group.
	require.NoError(t, <-firstDone)
	for range 2 {
		o := <-out
		if o.panicked {
			continue // the writer that led the group: its handler's Recoverer answers
		}
		var we *WriteError
		require.ErrorAs(t, o.err, &we, "a poll of a group that never wrote is not a success")
		require.True(t, we.Retryable)
	}
	require.Zero(t, len(g.slots), "the writer that panicked gave its slot back")
}

func TestAGroupHoldingALockedRaceGivesUpSoonSoItsOtherPollsWriteWhileTheLockIsHeld(t *testing.T) {
	ctx := context.Background()
	polls := groupPolls(t, 4)
	const lockedPoll = 2
	r, g := newGroupRun(t, time.Hour, 10*time.Millisecond)
	// The locked race has a row to lock: an earlier poll of it wrote one.
	earlier := polls[lockedPoll]
	earlier.PollID = earlier.Snapshot.RaceID + "@0"
	earlier.Snapshot.ObservedAt = earlier.Snapshot.ObservedAt.Add(-time.Minute)
	_, err := write.WriteTx(ctx, r.db.Pool, earlier)
	require.NoError(t, err)
	lock, err := r.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	var n int
	require.NoError(t, lock.QueryRow(ctx, `WITH l AS (SELECT 1 FROM races WHERE race_id = $1 FOR UPDATE) SELECT count(*) FROM l`,
		polls[lockedPoll].Snapshot.RaceID).Scan(&n))
	require.Equal(t, 1, n)

	release, firstDone := holdTheWriter(t, r, g, polls[0])
	out := writeAll(g, polls[1:], func(i int) func() (write.Rows, error) { return r.alone(polls[i+1]) })
	require.Eventually(t, func() bool { return g.waitingNow() == len(polls)-1 }, time.Minute, time.Millisecond)
	release()
	require.NoError(t, <-firstDone)
	// Without the bound the group would wait for the lock, and so would
	// these polls: the guard turns that into a failure, not a hang.
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	for range len(polls) - 2 {
		select {
		case w := <-out:
			require.NotEqual(t, lockedPoll, w.i+1, "the locked race's poll is not written while the lock is held")
			require.NoError(t, w.err, "poll %d", w.i+1)
			require.Equal(t, 1, w.rows.Polls, "poll %d", w.i+1)
		case <-guard.C:
			t.Fatal("the polls grouped with a locked race are not written while the lock is held")
		}
	}
	require.NoError(t, lock.Rollback(ctx))
	w := <-out
	require.Equal(t, lockedPoll, w.i+1)
	require.NoError(t, w.err, "the locked race's poll is written once the lock is gone")
	require.Equal(t, 1, w.rows.Polls)

	require.Equal(t, []int{len(polls) - 1}, r.begun, "the waiting polls were grouped")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, r.failed[1], &pgErr, "the group's failure is observed")
	require.Equal(t, "55P03", pgErr.Code, "the group gave up waiting on the lock (lock_not_available)")
	var stored int
	require.NoError(t, r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM race_polls`).Scan(&stored))
	require.Equal(t, len(polls)+1, stored, "every poll is stored once, and the earlier one")
}
