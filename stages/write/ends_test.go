package write_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// writeWith writes polls in one transaction of pool with opts and commits
// it, or rolls it back when commit is false.
func writeWith(t *testing.T, pool *pgxpool.Pool, polls []transform.RaceSnapshot, commit bool, opts ...write.Option) write.BatchRows {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	batch := make([]write.Poll, len(polls))
	for i, s := range polls {
		batch[i] = write.Poll{Snapshot: s}
	}
	res, err := write.WriteBatch(ctx, tx, batch, opts...)
	require.NoError(t, err)
	if commit {
		require.NoError(t, tx.Commit(ctx))
	} else {
		require.NoError(t, tx.Rollback(ctx))
	}
	return res
}

func TestRememberedEndsAreUsedOnlyWhileTheRacesLedgerIsAsThisProcessLeftIt(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Microsecond)
	g := newRaceGen("R-ends", t0.Add(time.Hour))
	poll := func(k int) transform.RaceSnapshot { return g.poll(k, t0.Add(time.Duration(k)*time.Minute)) }
	const series = 16 + 16*4 // a money series and four odds series per runner

	reference, db := pgtest.New(t), pgtest.New(t)
	ends := write.NewEnds(write.DefaultEndsRaces)
	mine := write.WithEnds(ends)
	for _, step := range []struct {
		name       string
		k          int
		opts       []write.Option // nil: another writer, remembering nothing
		commit     bool
		remembered int
	}{
		{"the first poll looks its series up", 1, []write.Option{mine}, true, 0},
		{"the next poll of the race takes them from memory", 2, []write.Option{mine}, true, series},
		{"another writer writes the race", 3, nil, true, 0},
		{"so its series are looked up again", 4, []write.Option{mine}, true, 0},
		{"a write that does not commit", 5, []write.Option{mine}, false, series},
		{"leaves nothing to take from memory", 5, []write.Option{mine}, true, 0},
		{"which the next poll does again", 6, []write.Option{mine}, true, series},
	} {
		res := writeWith(t, db.Pool, []transform.RaceSnapshot{poll(step.k)}, step.commit, step.opts...)
		require.Equal(t, step.remembered, res.Remembered, step.name)
		if step.commit {
			want := writeTx(t, reference.Pool, poll(step.k))
			require.Equal(t, counts(want), counts(res.Polls[0]), step.name)
		}
	}
	requireSameState(t, capture(t, reference.Pool), capture(t, db.Pool))
	require.Equal(t, write.EndsStats{Remembered: 3 * series, LookedUp: 3 * series}, ends.Stats(),
		"three writes took every series from memory; three looked them all up")
}

func TestWritesRememberingEndsStoreWhatWritesLookingThemUpStore(t *testing.T) {
	t.Parallel()
	polls := awkwardDay(t)
	reference := pgtest.New(t)
	want := countsOneByOne(t, reference.Pool, polls)
	for _, tc := range []struct {
		name  string
		races int // how many races the Ends remembers
	}{
		{"remembering every race", write.DefaultEndsRaces},
		{"remembering three races", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			mine := write.WithEnds(write.NewEnds(tc.races))
			other := write.WithEnds(write.NewEnds(tc.races)) // another instance
			var got []write.Rows
			remembered := 0
			for i, chunk := range slices.Collect(slices.Chunk(polls, 7)) {
				opts := mine
				if i%5 == 4 {
					opts = other
				}
				if i%9 == 8 {
					// Written, not committed, then written again.
					writeWith(t, db.Pool, chunk, false, opts)
				}
				res := writeWith(t, db.Pool, chunk, true, opts)
				for _, r := range res.Polls {
					got = append(got, counts(r))
				}
				remembered += res.Remembered
			}
			require.Positive(t, remembered, "later polls of a race take its series' ends from memory")
			require.Equal(t, want, got)
			requireSameState(t, capture(t, reference.Pool), capture(t, db.Pool))
		})
	}
}

func TestALatePollThatMovesASeriesEndIsNotTakenFromMemory(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Microsecond)
	g := newRaceGen("R-moved", t0.Add(time.Hour))
	// Runner 1's fixed win odds: 2.00, then 2.05; the late poll between them
	// says 2.04, so 2.05 is no longer a change and its row goes; 2.06 then
	// is one, against 2.04.
	poll := func(k int, odds float64) transform.RaceSnapshot {
		s := g.poll(k, t0.Add(time.Duration(k)*time.Minute))
		s.Entrants[0].FixedWinOdds = &odds
		for i, o := range s.Odds {
			if o.EntrantID == s.Entrants[0].EntrantID && o.Type == transform.OddsFixedWin {
				s.Odds[i].Odds = odds
			}
		}
		return s
	}
	polls := []transform.RaceSnapshot{poll(1, 2.00), poll(3, 2.05), poll(2, 2.04), poll(4, 2.06)}

	reference, db := pgtest.New(t), pgtest.New(t)
	mine := write.WithEnds(write.NewEnds(write.DefaultEndsRaces))
	var late write.Rows
	for i, s := range polls {
		want := writeTx(t, reference.Pool, s)
		got := writeWith(t, db.Pool, []transform.RaceSnapshot{s}, true, mine)
		require.Equal(t, counts(want), counts(got.Polls[0]), "poll %d", i)
		if i == 2 {
			late = want
		}
	}
	require.Equal(t, 1, late.OddsDeleted, "the late poll removes the row of 2.05")
	requireSameState(t, capture(t, reference.Pool), capture(t, db.Pool))
}

func TestRememberedEndsAnswerForTheDayAfterTheirLookup(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Microsecond)
	g := newRaceGen("R-day", t0.Add(48*time.Hour))
	const series = 16 + 16*4

	reference, db := pgtest.New(t), pgtest.New(t)
	mine := write.WithEnds(write.NewEnds(write.DefaultEndsRaces))
	for k, step := range []struct {
		name       string
		after      time.Duration // since t0
		remembered int
	}{
		{"the first poll looks its series up", 0, 0},
		{"an hour later they come from memory", time.Hour, series},
		{"a day later still", 24 * time.Hour, series},
		{"past a day after the lookup they are looked up again", 24*time.Hour + time.Second, 0},
		{"and then come from memory again", 24*time.Hour + time.Minute, series},
	} {
		s := g.poll(k+1, t0.Add(step.after))
		res := writeWith(t, db.Pool, []transform.RaceSnapshot{s}, true, mine)
		require.Equal(t, step.remembered, res.Remembered, step.name)
		require.Equal(t, counts(writeTx(t, reference.Pool, s)), counts(res.Polls[0]), step.name)
	}
	requireSameState(t, capture(t, reference.Pool), capture(t, db.Pool))
}

func TestARaceRebuiltElsewhereIsLookedUpAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Microsecond)
	g := newRaceGen("R-rebuilt", t0.Add(time.Hour))
	// fixed is the race as a corrected transform reads it: runner 1's win
	// pool is 10.00 larger at every poll.
	poll := func(k int, fixed bool) transform.RaceSnapshot {
		s := g.poll(k, t0.Add(time.Duration(k)*time.Minute))
		if fixed {
			s.MoneyFlow[0].WinPoolAmount += 1000
			s.MoneyFlow[0].TotalPoolAmount += 1000
			*s.Entrants[0].WinPoolAmount += 1000
		}
		return s
	}

	reference, db := pgtest.New(t), pgtest.New(t)
	mine := write.WithEnds(write.NewEnds(write.DefaultEndsRaces))
	for k := 1; k <= 3; k++ {
		writeTx(t, reference.Pool, poll(k, true))
		writeWith(t, db.Pool, []transform.RaceSnapshot{poll(k, false)}, true, mine)
	}
	// A rebuild elsewhere: the race's history and ledger go, and its polls
	// are written again, corrected, in one transaction.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	for _, table := range []string{"odds_history", "money_flow_history", "race_polls"} {
		_, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE race_id = $1`, g.raceID)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit(ctx))
	writeWith(t, db.Pool, []transform.RaceSnapshot{poll(1, true), poll(2, true), poll(3, true)}, true)

	res := writeWith(t, db.Pool, []transform.RaceSnapshot{poll(4, true)}, true, mine)
	require.Zero(t, res.Remembered, "the ledger the rebuild left is not the one this process left")
	require.Equal(t, counts(writeTx(t, reference.Pool, poll(4, true))), counts(res.Polls[0]))
	requireSameState(t, capture(t, reference.Pool), capture(t, db.Pool))
}
