package write_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// volatile are the columns that record when a row was written rather than
// what it says.
var volatile = pgtest.Bookkeeping()

func writeTx(t *testing.T, pool *pgxpool.Pool, snap transform.RaceSnapshot) write.Rows {
	t.Helper()
	rows, err := write.WriteTx(context.Background(), pool, write.Poll{Snapshot: snap})
	require.NoError(t, err)
	return rows
}

func counts(r write.Rows) write.Rows {
	r.Durations = nil
	return r
}

func TestWritingTheSamePollTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ts := pollTimes()
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"observed on a whole second", ts[2]},
		// PostgreSQL keeps microseconds: the stored row is a little before
		// the poll as Go holds it, and must still be recognised as its own.
		{"observed with nanoseconds", ts[2].Add(526289501 * time.Nanosecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			snap := newRaceGen("R1", ts[2].Add(time.Hour)).poll(3, tc.at)

			first := writeTx(t, db.Pool, snap)
			require.Equal(t, write.Rows{Meetings: 1, Races: 1, Entrants: 16, RacePools: 1, MoneyFlow: 16, Odds: 64,
				Results: 1, Polls: 1}, counts(first))
			for _, table := range []string{write.TableMeetings, write.TableRaces, write.TableEntrants, write.TableRacePools,
				write.TableRacePolls, write.TableMoneyFlow, write.TableOdds, write.TableRaceResults, write.DurationTotal, write.DurationCommit} {
				require.Contains(t, first.Durations, table)
			}
			before := pgtest.Checksums(t, db.Pool)

			second := writeTx(t, db.Pool, snap)
			require.Equal(t, write.Rows{}, counts(second), "a redelivered poll changes no row")
			require.Equal(t, before, pgtest.Checksums(t, db.Pool), "every column, updated_at included, is untouched")
		})
	}
}

func TestWriteOrderDoesNotChangeTheStoredResult(t *testing.T) {
	t.Parallel()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	polls := [3]transform.RaceSnapshot{g.poll(1, ts[0]), g.poll(2, ts[1]), g.poll(3, ts[2])}

	writeInOrder := func(t *testing.T, order []int) *pgxpool.Pool {
		db := pgtest.New(t)
		for _, i := range order {
			writeTx(t, db.Pool, polls[i])
		}
		return db.Pool
	}
	inOrder := writeInOrder(t, []int{0, 1, 2})
	want := pgtest.Checksums(t, inOrder, volatile...)

	// Increments in order: the first poll carries the full amount, later
	// ones the change since the previous poll.
	for _, r := range []int{0, 7, 15} {
		rows, err := inOrder.Query(context.Background(), `
			SELECT incremental_win_amount, incremental_place_amount FROM money_flow_history
			WHERE entrant_id = $1 ORDER BY polling_timestamp`, g.entrantID(r))
		require.NoError(t, err)
		var got [][2]int64
		for rows.Next() {
			var w, p int64
			require.NoError(t, rows.Scan(&w, &p))
			got = append(got, [2]int64{w, p})
		}
		require.NoError(t, rows.Err())
		unit := int64(r + 1)
		require.Equal(t, [][2]int64{
			{unit * 10000, unit * 5000},
			{unit * 10000 * 3, unit * 5000},
			{unit * 10000 * 5, unit * 5000},
		}, got, "runner %d", r+1)
	}

	for _, tc := range []struct {
		name  string
		order []int
	}{
		{"latest first", []int{2, 0, 1}},
		{"middle first", []int{1, 2, 0}},
		{"reverse", []int{2, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := writeInOrder(t, tc.order)
			require.Equal(t, want, pgtest.Checksums(t, pool, volatile...))
		})
	}
}

func TestPollWithSeveralInstantsOfOneRunnerMatchesSeparatePolls(t *testing.T) {
	t.Parallel()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	p1, p2 := g.poll(1, ts[0]), g.poll(2, ts[1])

	separate := pgtest.New(t)
	writeTx(t, separate.Pool, p1)
	writeTx(t, separate.Pool, p2)

	combined := pgtest.New(t)
	writeTx(t, combined.Pool, p1)
	// The same history rows again, later instant first, in one poll.
	p2.MoneyFlow = append(p2.MoneyFlow, p1.MoneyFlow...)
	p2.Odds = append(p2.Odds, p1.Odds...)
	rows := writeTx(t, combined.Pool, p2)
	require.Equal(t, 16, rows.MoneyFlow)

	want := pgtest.Checksums(t, separate.Pool, volatile...)
	got := pgtest.Checksums(t, combined.Pool, volatile...)
	require.Equal(t, want[write.TableMoneyFlow], got[write.TableMoneyFlow])
	require.Equal(t, want[write.TableOdds], got[write.TableOdds])
}

func TestFailureAtTheLastStatementLeavesNoRowOfThePoll(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	writeTx(t, db.Pool, g.poll(1, ts[0]))
	before := pgtest.Checksums(t, db.Pool)

	bad := g.poll(3, ts[2]) // changes every table
	bad.Results.ResultStatus = "bogus"
	rows, err := write.WriteTx(context.Background(), db.Pool, write.Poll{Snapshot: bad})
	require.Equal(t, write.Rows{}, counts(rows), "a failed write reports no counts")

	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.Equal(t, write.TableRaceResults, we.Table)
	require.False(t, we.Retryable)
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg)
	require.Equal(t, "23514", pg.Code)
	require.NotErrorIs(t, err, write.ErrPartitionMissing, "a CHECK violation is not a missing partition")
	require.Equal(t, before, pgtest.Checksums(t, db.Pool), "no row of the failed poll survives")
}

func TestWriteLeavesTheTransactionToTheCaller(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ts := pollTimes()
	empty := pgtest.Checksums(t, db.Pool)
	ctx := context.Background()

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	rows, err := write.Write(ctx, tx, write.Poll{Snapshot: newRaceGen("R1", ts[2].Add(time.Hour)).poll(1, ts[0])})
	require.NoError(t, err)
	require.Equal(t, 16, rows.MoneyFlow)
	var n int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM money_flow_history`).Scan(&n))
	require.Equal(t, 16, n, "the poll is visible inside the caller's transaction")
	require.NoError(t, tx.Rollback(ctx))

	require.Equal(t, empty, pgtest.Checksums(t, db.Pool))
}

func TestPollWithoutMoneyDataKeepsStoredValues(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	p1 := g.poll(1, ts[0])
	writeTx(t, db.Pool, p1)

	type entrantRow struct {
		Hold      *float64
		Bet       *float64
		WinAmount *int64
		Place     *int64
		Jockey    *string
		UpdatedAt time.Time
	}
	read := func(id string) entrantRow {
		var e entrantRow
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT hold_percentage::float8, bet_percentage::float8, win_pool_amount, place_pool_amount, jockey, updated_at
			FROM entrants WHERE entrant_id = $1`, id).
			Scan(&e.Hold, &e.Bet, &e.WinAmount, &e.Place, &e.Jockey, &e.UpdatedAt))
		return e
	}
	changedID, keptID := g.entrantID(0), g.entrantID(1)
	changedBefore, keptBefore := read(changedID), read(keptID)
	require.NotNil(t, keptBefore.Hold)

	// A later poll that says nothing about money, and a new jockey for one
	// runner.
	p2 := p1
	p2.ObservedAt = ts[1]
	p2.MoneyFlow, p2.Odds = nil, nil
	p2.Entrants = append([]transform.Entrant(nil), p1.Entrants...)
	for i := range p2.Entrants {
		e := &p2.Entrants[i]
		e.HoldPercentage, e.BetPercentage, e.WinPoolPercentage, e.PlacePoolPercentage = nil, nil, nil, nil
		e.WinPoolAmount, e.PlacePoolAmount = nil, nil
	}
	p2.Entrants[0].Jockey = ptr("New Rider")
	rows := writeTx(t, db.Pool, p2)
	require.Equal(t, write.Rows{Entrants: 1, Polls: 1}, counts(rows))

	changed, kept := read(changedID), read(keptID)
	require.Equal(t, "New Rider", *changed.Jockey)
	require.True(t, changed.UpdatedAt.After(changedBefore.UpdatedAt), "a changed row bumps updated_at")
	require.Equal(t, changedBefore.Hold, changed.Hold, "a missing value never overwrites a stored one")
	require.Equal(t, changedBefore.WinAmount, changed.WinAmount)
	require.Equal(t, keptBefore, kept, "an unchanged row keeps every value and its updated_at")
}

func TestLatePollDoesNotRollBackStateTables(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	writeTx(t, db.Pool, g.poll(3, ts[2]))

	rows := writeTx(t, db.Pool, g.poll(1, ts[0]))
	require.Zero(t, rows.Races+rows.Entrants+rows.RacePools+rows.Meetings, "state tables keep the latest poll")
	require.Equal(t, 16, rows.MoneyFlow, "history still gains the late poll")
	require.Equal(t, 16, rows.MoneyFlowCorrected, "and the later rows' increments are corrected")
	var status string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT status FROM races WHERE race_id = 'R1'`).Scan(&status))
	require.Equal(t, transform.StatusClosed, status)
}

func TestOddsAreStoredOnlyWhenTheyChangeByMoreThanOneCent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()

	type obs struct {
		at   int // index into ts
		odds float64
	}
	type stored struct {
		at   int
		odds float64
	}
	for i, tc := range []struct {
		name  string
		polls []obs // in write order
		want  []stored
		// wantCounts are Rows.Odds/OddsDeleted of each write.
		wantCounts [][2]int
	}{
		{
			name:       "sub-cent move is not a change, a two-cent move is",
			polls:      []obs{{0, 2.50}, {1, 2.505}, {2, 2.52}},
			want:       []stored{{0, 2.50}, {2, 2.52}},
			wantCounts: [][2]int{{1, 0}, {0, 0}, {1, 0}},
		},
		{
			name:       "late earlier poll deletes a successor that is no longer a change",
			polls:      []obs{{2, 2.51}, {0, 2.50}},
			want:       []stored{{0, 2.50}},
			wantCounts: [][2]int{{1, 0}, {1, 1}},
		},
		{
			name:       "late earlier poll keeps a successor that still differs",
			polls:      []obs{{2, 2.60}, {0, 2.50}},
			want:       []stored{{0, 2.50}, {2, 2.60}},
			wantCounts: [][2]int{{1, 0}, {1, 0}},
		},
		{
			name:       "late earlier poll deletes the run of successors within a cent",
			polls:      []obs{{1, 2.51}, {2, 2.49}, {0, 2.50}},
			want:       []stored{{0, 2.50}},
			wantCounts: [][2]int{{1, 0}, {1, 0}, {1, 2}},
		},
		{
			name:       "late middle poll takes over its equal successor",
			polls:      []obs{{0, 2.50}, {2, 2.60}, {1, 2.60}},
			want:       []stored{{0, 2.50}, {1, 2.60}},
			wantCounts: [][2]int{{1, 0}, {1, 0}, {1, 1}},
		},
		{
			name:       "late poll equal to its predecessor is dropped",
			polls:      []obs{{0, 2.50}, {2, 2.60}, {1, 2.50}},
			want:       []stored{{0, 2.50}, {2, 2.60}},
			wantCounts: [][2]int{{1, 0}, {1, 0}, {0, 0}},
		},
		{
			name:       "redelivery is a no-op",
			polls:      []obs{{0, 2.50}, {0, 2.50}},
			want:       []stored{{0, 2.50}},
			wantCounts: [][2]int{{1, 0}, {0, 0}},
		},
		{
			// Documented residual limit: in order, 2.50@t1 and 2.52@t3 are
			// kept; out of order the dropped 2.52 cannot come back.
			name:       "known limit: an observation dropped earlier is not resurrected",
			polls:      []obs{{1, 2.51}, {2, 2.52}, {0, 2.50}},
			want:       []stored{{0, 2.50}},
			wantCounts: [][2]int{{1, 0}, {0, 0}, {1, 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// One race per case keeps the cases apart in one database.
			g := newRaceGen(string(rune('A'+i))+"-odds", ts[2].Add(time.Hour))
			entrant := g.entrantID(0)
			for n, o := range tc.polls {
				snap := g.poll(1, ts[o.at])
				snap.MoneyFlow = nil
				snap.Odds = []transform.Odds{{RaceID: g.raceID, EntrantID: entrant, Type: transform.OddsFixedWin,
					Odds: o.odds, EventTimestamp: ts[o.at]}}
				rows := writeTx(t, db.Pool, snap)
				require.Equal(t, tc.wantCounts[n], [2]int{rows.Odds, rows.OddsDeleted}, "write %d", n+1)
			}
			rows, err := db.Pool.Query(ctx, `SELECT event_timestamp, odds::float8 FROM odds_history
				WHERE entrant_id = $1 AND type = 'fixed_win' ORDER BY event_timestamp`, entrant)
			require.NoError(t, err)
			var got []stored
			for rows.Next() {
				var at time.Time
				var odds float64
				require.NoError(t, rows.Scan(&at, &odds))
				idx := -1
				for j, x := range ts {
					if x.Equal(at) {
						idx = j
					}
				}
				got = append(got, stored{idx, odds})
			}
			require.NoError(t, rows.Err())
			require.Equal(t, tc.want, got)
		})
	}
}

func TestRowForADayWithoutPartitionIsAPermanentPartitionMissingError(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	far := time.Now().AddDate(5, 0, 0)
	_, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: newRaceGen("R-future", far.Add(time.Hour)).poll(1, far)})

	require.ErrorIs(t, err, write.ErrPartitionMissing)
	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.False(t, we.Retryable)
	require.Equal(t, write.TableMoneyFlow, we.Table)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM races`).Scan(&n))
	require.Zero(t, n, "the poll's earlier statements are rolled back")
}

func TestInvalidSnapshotIsRejectedBeforeTheDatabase(t *testing.T) {
	t.Parallel()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	for _, tc := range []struct {
		name   string
		mutate func(*transform.RaceSnapshot)
	}{
		{"empty race id", func(s *transform.RaceSnapshot) { s.RaceID = "" }},
		{"zero observation time", func(s *transform.RaceSnapshot) { s.ObservedAt = time.Time{} }},
		{"race of another id", func(s *transform.RaceSnapshot) { s.Race.RaceID = "R2" }},
		{"meeting not the race's", func(s *transform.RaceSnapshot) { s.Meeting.MeetingID = "other" }},
		{"entrant of another race", func(s *transform.RaceSnapshot) { s.Entrants[3].RaceID = "R2" }},
		{"duplicate entrant", func(s *transform.RaceSnapshot) { s.Entrants[3].EntrantID = s.Entrants[4].EntrantID }},
		{"duplicate money-flow key", func(s *transform.RaceSnapshot) { s.MoneyFlow = append(s.MoneyFlow, s.MoneyFlow[0]) }},
		{"duplicate odds key", func(s *transform.RaceSnapshot) { s.Odds = append(s.Odds, s.Odds[5]) }},
		{"odds of another race", func(s *transform.RaceSnapshot) { s.Odds[2].RaceID = "R2" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snap := g.poll(3, ts[0])
			tc.mutate(&snap)
			// No transaction is needed: validation comes first.
			_, err := write.Write(context.Background(), nil, write.Poll{Snapshot: snap})
			require.ErrorIs(t, err, write.ErrInvalidSnapshot)
			var we *write.DBError
			require.ErrorAs(t, err, &we)
			require.False(t, we.Retryable)
			require.Equal(t, "snapshot", we.Table)
		})
	}
}

func TestCancelledContextIsNotRetryableButStillRecognisable(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ts := pollTimes()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: newRaceGen("R1", ts[2].Add(time.Hour)).poll(1, ts[0])})
	require.ErrorIs(t, err, context.Canceled)
	var we *write.DBError
	require.ErrorAs(t, err, &we)
	require.False(t, we.Retryable)
}

func TestUnchangedMeetingIsNotLockedByAPollOfAnotherRace(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()
	g1 := newRaceGen("R1", ts[2].Add(time.Hour))
	g2 := newRaceGen("R2", ts[2].Add(time.Hour))
	g2.meetingID = g1.meetingID
	writeTx(t, db.Pool, g1.poll(1, ts[0]))

	// The lock another race's upsert of the meeting would need (the race
	// insert's foreign-key check holds a compatible KEY SHARE lock).
	meetingLocked := func() bool {
		_, err := db.Pool.Exec(ctx, `SELECT 1 FROM meetings WHERE meeting_id = $1 FOR NO KEY UPDATE NOWAIT`, g1.meetingID)
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "55P03" {
			return true
		}
		require.NoError(t, err)
		return false
	}
	for _, tc := range []struct {
		name       string
		poll       int // poll 1 repeats the stored meeting, poll 2 changes its track condition
		wantLocked bool
	}{
		{"unchanged meeting stays unlocked", 1, false},
		{"changed meeting is locked until commit", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			rows, err := write.Write(ctx, tx, write.Poll{Snapshot: g2.poll(tc.poll, ts[tc.poll])})
			require.NoError(t, err)
			require.Equal(t, tc.wantLocked, rows.Meetings == 1)
			require.Equal(t, tc.wantLocked, meetingLocked())
		})
	}
}

func TestLatePollArrivingAfterAPollThatConfirmedTheRowsChangesNoStateRow(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	first := g.poll(1, ts[0])
	writeTx(t, db.Pool, first)
	// A later poll saying the same about the runners: their rows do not
	// change, so they still record the first poll's instant.
	confirm := g.poll(1, ts[2])
	rows := writeTx(t, db.Pool, confirm)
	require.Zero(t, rows.Entrants)
	var seen time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT observed_at FROM entrants WHERE entrant_id = $1`, g.entrantID(0)).Scan(&seen))
	require.True(t, seen.Equal(ts[0]), "an unchanged row keeps the instant it was written from")
	before := pgtest.Checksums(t, db.Pool, volatile...)

	// A poll from between them, delivered for the first time only now, with
	// other values: the ledger knows the later poll, so the rows stay.
	late := g.poll(2, ts[1])
	rows = writeTx(t, db.Pool, late)
	require.Zero(t, rows.Meetings+rows.Races+rows.Entrants+rows.RacePools+rows.Results)
	require.Equal(t, 1, rows.Polls)
	after := pgtest.Checksums(t, db.Pool, volatile...)
	for _, table := range []string{write.TableMeetings, write.TableRaces, write.TableEntrants, write.TableRacePools} {
		require.Equal(t, before[table], after[table], table)
	}

	// Written again (a redelivery, or a replay after the rows were emptied),
	// the same late poll is applied where it is not older than a row.
	_, err := db.Pool.Exec(ctx, `TRUNCATE meetings CASCADE`)
	require.NoError(t, err)
	for _, s := range []transform.RaceSnapshot{first, late, confirm} {
		writeTx(t, db.Pool, s)
	}
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT observed_at FROM entrants WHERE entrant_id = $1`, g.entrantID(0)).Scan(&seen))
	require.True(t, seen.Equal(ts[2]), "replayed in order, the confirming poll changed the row back")
}

func TestWriteLeavesTheCallersPlannerSettingsAsTheyWere(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ts := pollTimes()
	g := newRaceGen("R1", ts[2].Add(time.Hour))
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`)
	require.NoError(t, err)
	settings := func() [2]string {
		var s [2]string
		require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('enable_sort'), current_setting('plan_cache_mode')`).Scan(&s[0], &s[1]))
		return s
	}
	want := settings()
	require.Equal(t, [2]string{"on", "force_custom_plan"}, want)

	_, err = write.Write(ctx, tx, write.Poll{Snapshot: g.poll(1, ts[0])})
	require.NoError(t, err)
	require.Equal(t, want, settings(), "after Write")
	_, err = write.WriteBatch(ctx, tx, []write.Poll{{Snapshot: g.poll(2, ts[1])}})
	require.NoError(t, err)
	require.Equal(t, want, settings(), "after WriteBatch")
}
