package write_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// dayOnce builds the simulated day once for every test of the package.
var dayOnce = sync.OnceValues(func() ([]transform.RaceSnapshot, error) {
	day, err := simday.Build(context.Background(), simday.Config{})
	if err != nil {
		return nil, err
	}
	return day.Snapshots()
})

// simulatedDay returns the snapshots of a simulated race day in observation
// order, checked to hold what a convergence test needs.
func simulatedDay(t testing.TB) []transform.RaceSnapshot {
	t.Helper()
	snaps, err := dayOnce()
	require.NoError(t, err)
	races := map[string]bool{}
	var lateScratched, dividends bool
	for _, s := range snaps {
		races[s.RaceID] = true
		for _, e := range s.Entrants {
			lateScratched = lateScratched || e.IsLateScratched
		}
		dividends = dividends || (s.Results != nil && len(s.Results.DividendsData) > 2)
	}
	require.GreaterOrEqual(t, len(races), 30)
	require.GreaterOrEqual(t, len(snaps), 1000)
	require.True(t, lateScratched, "the day has a late scratching")
	require.True(t, dividends, "the day has dividends")
	return snaps
}

// state is every domain table's rows without bookkeeping timestamps.
type state map[string][]string

func capture(t *testing.T, pool *pgxpool.Pool) state {
	t.Helper()
	s := state{}
	for _, table := range pgtest.DomainTables() {
		s[table] = pgtest.Rows(t, pool, table, volatile...)
	}
	return s
}

func requireSameState(t *testing.T, want, got state) {
	t.Helper()
	for _, table := range pgtest.DomainTables() {
		if d := pgtest.DiffRows(want[table], got[table], 3); d != "" {
			t.Errorf("%s: %s", table, d)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func writeOneByOne(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot) write.Rows {
	t.Helper()
	var total write.Rows
	for _, s := range snaps {
		r, err := write.WriteTx(context.Background(), pool, write.Poll{Snapshot: s})
		require.NoError(t, err, "poll of %s at %s", s.RaceID, s.ObservedAt)
		total = addRows(total, r)
	}
	return total
}

func writeBatched(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot, size int) write.Rows {
	t.Helper()
	var total write.Rows
	for chunk := range slices.Chunk(snaps, size) {
		polls := make([]write.Poll, len(chunk))
		for i, s := range chunk {
			polls[i] = write.Poll{Snapshot: s}
		}
		b, err := write.WriteBatchTx(context.Background(), pool, polls)
		require.NoError(t, err)
		total = addRows(total, b.Total())
	}
	return total
}

func addRows(a, b write.Rows) write.Rows {
	a.Meetings += b.Meetings
	a.Races += b.Races
	a.Entrants += b.Entrants
	a.RacePools += b.RacePools
	a.MoneyFlow += b.MoneyFlow
	a.MoneyFlowCorrected += b.MoneyFlowCorrected
	a.Odds += b.Odds
	a.OddsDeleted += b.OddsDeleted
	a.Results += b.Results
	a.Polls += b.Polls
	a.Durations = nil
	return a
}

// requireScratchedKeepLastKnownMoney checks that every runner scratched
// while polled kept the last odds and pool amount it was polled with, though
// the polls after its scratching carry none.
func requireScratchedKeepLastKnownMoney(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot) {
	t.Helper()
	type known struct {
		odds      *float64
		pool      *int64
		scratched bool
		laterNone bool // a poll after the scratching carried no odds
	}
	last := map[string]*known{}
	for _, s := range snaps {
		for _, e := range s.Entrants {
			k := last[e.EntrantID]
			if k == nil {
				k = &known{}
				last[e.EntrantID] = k
			}
			if e.IsScratched && k.odds != nil && e.FixedWinOdds == nil {
				k.laterNone = true
			}
			if e.FixedWinOdds != nil {
				k.odds = e.FixedWinOdds
			}
			if e.WinPoolAmount != nil {
				k.pool = e.WinPoolAmount
			}
			k.scratched = e.IsScratched
		}
	}
	checked := 0
	for id, k := range last {
		if !k.scratched || !k.laterNone {
			continue
		}
		checked++
		var odds *float64
		var amount *int64
		require.NoError(t, pool.QueryRow(context.Background(),
			`SELECT fixed_win_odds::float8, win_pool_amount FROM entrants WHERE entrant_id = $1`, id).Scan(&odds, &amount))
		require.NotNil(t, odds, id)
		require.InDelta(t, *k.odds, *odds, 0.005, "runner %s keeps its last known odds", id)
		require.Equal(t, k.pool, amount, "runner %s keeps its last known win pool amount", id)
	}
	require.Positive(t, checked, "the day has runners scratched while polled")
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	_, err := pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// TestWritingADayAgainInOrderRebuildsEveryRowWhateverWasEmptied writes a
// simulated day poll by poll, as the live flow does, then for each way the
// derived tables can be left (emptied, partly emptied, stale, untouched)
// writes every poll again in order and requires every table equal to the
// live result, field for field.
func TestWritingADayAgainInOrderRebuildsEveryRowWhateverWasEmptied(t *testing.T) {
	t.Parallel()
	snaps := simulatedDay(t)
	db := pgtest.New(t)
	writeOneByOne(t, db.Pool, snaps)
	live := capture(t, db.Pool)
	require.NotEmpty(t, live[write.TableRaceResults])
	requireScratchedKeepLastKnownMoney(t, db.Pool, snaps)

	races := map[string]bool{}
	for _, s := range snaps {
		races[s.RaceID] = true
	}
	var half []string
	for id := range races {
		half = append(half, id)
	}
	slices.Sort(half)
	half = half[:len(half)/2]

	const dataTables = `meetings, races, entrants, race_pools, race_results, money_flow_history, odds_history`
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T)
		// prefix are polls written after mutate and before the replay, to
		// leave the tables stale rather than empty.
		prefix []transform.RaceSnapshot
		write  func(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot) write.Rows
		// unchanged: the replay must change no row at all.
		unchanged bool
	}{
		{
			name:   "data tables emptied, ledger kept",
			mutate: func(t *testing.T) { exec(t, db.Pool, `TRUNCATE `+dataTables+` CASCADE`) },
			write:  writeOneByOne,
		},
		{
			name:   "everything emptied",
			mutate: func(t *testing.T) { exec(t, db.Pool, `TRUNCATE `+dataTables+`, race_polls CASCADE`) },
			write:  writeOneByOne,
		},
		{
			name:      "nothing emptied",
			mutate:    func(*testing.T) {},
			write:     writeOneByOne,
			unchanged: true,
		},
		{
			name: "half the races' rows deleted",
			mutate: func(t *testing.T) {
				exec(t, db.Pool, `DELETE FROM races WHERE race_id = ANY($1)`, half) // entrants, pools, results cascade
				for _, table := range []string{"race_polls", "money_flow_history", "odds_history"} {
					exec(t, db.Pool, `DELETE FROM `+table+` WHERE race_id = ANY($1)`, half)
				}
			},
			write: writeOneByOne,
		},
		{
			name:   "data tables stale at midday, ledger complete",
			mutate: func(t *testing.T) { exec(t, db.Pool, `TRUNCATE `+dataTables+` CASCADE`) },
			prefix: snaps[:len(snaps)/2],
			write:  writeOneByOne,
		},
		{
			name:   "nothing emptied, written in batches",
			mutate: func(*testing.T) {},
			write: func(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot) write.Rows {
				return writeBatched(t, pool, snaps, 40)
			},
			unchanged: true,
		},
		{
			name:   "data tables emptied, ledger kept, written in batches",
			mutate: func(t *testing.T) { exec(t, db.Pool, `TRUNCATE `+dataTables+` CASCADE`) },
			write: func(t *testing.T, pool *pgxpool.Pool, snaps []transform.RaceSnapshot) write.Rows {
				return writeBatched(t, pool, snaps, 40)
			},
		},
	} {
		// Sequential: each case starts from the live state the previous one
		// restored (or the test has already failed).
		t.Run(tc.name, func(t *testing.T) {
			tc.mutate(t)
			if tc.prefix != nil {
				writeOneByOne(t, db.Pool, tc.prefix)
			}
			rows := tc.write(t, db.Pool, snaps)
			requireSameState(t, live, capture(t, db.Pool))
			if tc.unchanged {
				require.Equal(t, write.Rows{}, rows, "writing the day again over itself changes no row")
			}
		})
	}
}
