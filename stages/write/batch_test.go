package write_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

func TestBatchWritesAndCountsEachPollAsWritingThemOneByOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	polls := awkwardDay(t)
	oneByOne := pgtest.New(t)
	want := countsOneByOne(t, oneByOne.Pool, polls)

	batched := pgtest.New(t)
	var got []write.Rows
	appended := 0
	for chunk := range slices.Chunk(polls, 37) {
		batch := make([]write.Poll, len(chunk))
		for i, s := range chunk {
			batch[i] = write.Poll{Snapshot: s}
		}
		res, err := write.WriteBatchTx(ctx, batched.Pool, batch)
		require.NoError(t, err)
		require.Len(t, res.Polls, len(chunk))
		require.Contains(t, res.Durations, write.DurationCommit)
		got = append(got, res.Polls...)
		appended += res.Appended
	}
	require.Positive(t, appended, "in-order polls take the append path")
	for i := range want {
		require.Equal(t, want[i], got[i], "poll %d (%s)", i, write.PollID(polls[i].RaceID, polls[i].ObservedAt))
	}
	requireSameState(t, capture(t, oneByOne.Pool), capture(t, batched.Pool))
}

// awkwardDay is polls of many races of the simulated day, with the awkward
// cases among them: a race's polls late and out of order, and a redelivery
// inside one batch.
func awkwardDay(t *testing.T) []transform.RaceSnapshot {
	t.Helper()
	day := simulatedDay(t)
	polls := slices.Clone(day[:300])
	ts := pollTimes()
	g := newRaceGen("R-late", ts[2].Add(time.Hour))
	polls = append(polls, g.poll(3, ts[2]), g.poll(1, ts[0]), g.poll(1, ts[0]), g.poll(2, ts[1]))
	return append(polls, day[300:400]...)
}

// countsOneByOne writes polls one by one, each in its transaction, and
// returns what each changed.
func countsOneByOne(t *testing.T, pool *pgxpool.Pool, polls []transform.RaceSnapshot) []write.Rows {
	t.Helper()
	out := make([]write.Rows, len(polls))
	for i, s := range polls {
		out[i] = counts(writeTx(t, pool, s))
	}
	return out
}

func TestBatchRoundsFollowWhatItsPollsShare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ts := pollTimes()
	var distinct []write.Poll
	for _, id := range []string{"A", "B", "C"} {
		distinct = append(distinct, write.Poll{Snapshot: newRaceGen(id, ts[2].Add(time.Hour)).poll(1, ts[0])})
	}
	res, err := write.WriteBatchTx(ctx, db.Pool, distinct)
	require.NoError(t, err)
	require.Equal(t, 1, res.Rounds, "polls of different meetings share a round")
	require.Equal(t, 3, res.Total().Polls)

	// Two races of one meeting and two polls of one race.
	g1, g2 := newRaceGen("D", ts[2].Add(time.Hour)), newRaceGen("E", ts[2].Add(time.Hour))
	g2.meetingID = g1.meetingID
	res, err = write.WriteBatchTx(ctx, db.Pool, []write.Poll{
		{Snapshot: g1.poll(1, ts[0])}, {Snapshot: g2.poll(1, ts[0].Add(time.Second))}, {Snapshot: g1.poll(2, ts[1])},
	})
	require.NoError(t, err)
	require.Equal(t, 3, res.Rounds)
	require.Equal(t, write.Rows{Meetings: 1, Races: 1, Entrants: 16, RacePools: 1, MoneyFlow: 16, Odds: 64, Polls: 1},
		counts(res.Polls[0]))
}

func TestBatchWithAnInvalidSnapshotWritesNothingAndNamesIt(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ts := pollTimes()
	good := newRaceGen("A", ts[2].Add(time.Hour)).poll(1, ts[0])
	bad := newRaceGen("B", ts[2].Add(time.Hour)).poll(1, ts[0])
	bad.Entrants[1].RaceID = "other"
	require.ErrorIs(t, write.Validate(bad), write.ErrInvalidSnapshot)
	require.NoError(t, write.Validate(good))

	_, err := write.WriteBatchTx(context.Background(), db.Pool, []write.Poll{{Snapshot: good}, {Snapshot: bad, PollID: "bad-poll"}})
	require.ErrorIs(t, err, write.ErrInvalidSnapshot)
	require.ErrorContains(t, err, "poll 1 (bad-poll)")
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM race_polls`).Scan(&n))
	require.Zero(t, n)

	empty, err := write.WriteBatchTx(context.Background(), db.Pool, nil)
	require.NoError(t, err)
	require.Empty(t, empty.Polls)
}

func TestBatchFailureRollsBackEveryPoll(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ts := pollTimes()
	ok := newRaceGen("A", ts[2].Add(time.Hour)).poll(1, ts[0])
	bad := newRaceGen("B", ts[2].Add(time.Hour)).poll(3, ts[2])
	bad.Results.ResultStatus = "bogus" // passes validation, fails the CHECK
	_, err := write.WriteBatchTx(context.Background(), db.Pool, []write.Poll{{Snapshot: ok}, {Snapshot: bad}})
	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.Equal(t, write.TableRaceResults, we.Table)
	require.Equal(t, pgtest.Checksums(t, pgtest.New(t).Pool), pgtest.Checksums(t, db.Pool), "nothing of the batch is stored")
}

func TestBatchAppendingWhileAnotherTransactionWritesTheSeriesFailsRetryably(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	writeTx(t, db.Pool, g.poll(1, ts[0]))

	// Another writer has written the next poll but not committed: the batch's
	// lookup cannot see it, so it appends, and its insert waits on the key.
	other, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = other.Rollback(ctx) }()
	_, err = write.Write(ctx, other, write.Poll{Snapshot: g.poll(2, ts[1])})
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := write.WriteBatchTx(ctx, db.Pool, []write.Poll{{Snapshot: g.poll(2, ts[1])}})
		done <- err
	}()
	// Wait until the batch is blocked on the other writer's row lock.
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		return waiting > 0
	}, time.Minute, 10*time.Millisecond)
	require.NoError(t, other.Commit(ctx))

	err = <-done
	require.ErrorIs(t, err, write.ErrAppendRace)
	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.True(t, we.Retryable, "the batch can be tried again")
	res, err := write.WriteBatchTx(ctx, db.Pool, []write.Poll{{Snapshot: g.poll(2, ts[1])}})
	require.NoError(t, err, "tried again, it takes the general path")
	require.Zero(t, res.Appended)
	require.Equal(t, write.Rows{}, counts(res.Polls[0]), "the other writer wrote the same poll")
}

// PostgreSQL keeps microseconds; the flow's observation instants carry
// nanoseconds. A batch must compare instants as they are stored, or it
// takes a poll already stored for one that extends its series.
func TestBatchComparesInstantsAsTheyAreStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts := pollTimes()
	g := newRaceGen("R-ns", ts[2].Add(time.Hour))
	first, second := g.poll(1, ts[0].Add(789*time.Nanosecond)), g.poll(2, ts[1].Add(789*time.Nanosecond))
	for _, tc := range []struct {
		name   string
		stored []write.Poll // written one by one first
		batch  []write.Poll
	}{
		{"the stored poll again", []write.Poll{{Snapshot: first}}, []write.Poll{{Snapshot: first}}},
		{"the stored polls again", []write.Poll{{Snapshot: first}, {Snapshot: second}}, []write.Poll{{Snapshot: first}, {Snapshot: second}}},
		{"the next poll after the stored one", []write.Poll{{Snapshot: first}}, []write.Poll{{Snapshot: second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oneByOne, batched := pgtest.New(t), pgtest.New(t)
			for _, db := range []*pgtest.DB{oneByOne, batched} {
				for _, p := range tc.stored {
					_, err := write.WriteTx(ctx, db.Pool, p)
					require.NoError(t, err)
				}
			}
			var want []write.Rows
			for _, p := range tc.batch {
				want = append(want, counts(writeTx(t, oneByOne.Pool, p.Snapshot)))
			}
			res, err := write.WriteBatchTx(ctx, batched.Pool, tc.batch)
			require.NoError(t, err)
			require.Equal(t, want, res.Polls)
			requireSameState(t, capture(t, oneByOne.Pool), capture(t, batched.Pool))
		})
	}
}

func TestBatchWithALockWaitFailsSoonOnALockedRaceAndLeavesTheTransactionsSettingAsItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	ts := pollTimes()
	locked, free := newRaceGen("R-locked", ts[2].Add(time.Hour)), newRaceGen("R-free", ts[2].Add(time.Hour))
	writeTx(t, db.Pool, locked.poll(1, ts[0]))
	lock, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, `SELECT 1 FROM races WHERE race_id = $1 FOR UPDATE`, "R-locked")
	require.NoError(t, err)

	// writeIn writes poll in a transaction whose own lock_timeout is
	// setting, and returns that setting as it is after the write. It runs
	// on a goroutine of its own too, so it reports rather than fails.
	writeIn := func(setting string, poll transform.RaceSnapshot) (string, error) {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return "", err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, setting); err != nil {
			return "", err
		}
		if _, err := write.WriteBatch(ctx, tx, []write.Poll{{Snapshot: poll}}, write.LockWait(10*time.Millisecond)); err != nil {
			return "", err
		}
		var after string
		err = tx.QueryRow(ctx, `SHOW lock_timeout`).Scan(&after)
		return after, err
	}

	// Unbounded, the transaction would wait for the lock as long as it is
	// held: the guard turns that into a failure, not a hang.
	done := make(chan error, 1)
	go func() {
		_, err := writeIn("0", locked.poll(2, ts[1]))
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("a batch with a lock wait still waits on a locked race")
	}
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg)
	require.Equal(t, "55P03", pg.Code, "lock_not_available")
	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.True(t, we.Retryable, "the race may be free when tried again")

	after, err := writeIn("7s", free.poll(1, ts[0]))
	require.NoError(t, err)
	require.Equal(t, "7s", after, "the transaction's own setting holds again after the write")
}
