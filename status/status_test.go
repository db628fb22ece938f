package status_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/status"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fullDayModel is a read model of the full-day fixture at fullDayNow, with
// no flow state but an empty recorder.
func fullDayModel(t testing.TB, db status.DB, timeout time.Duration) *status.Model {
	t.Helper()
	rec, err := status.NewRecorder(status.DefaultRecorderConfig())
	require.NoError(t, err)
	cfg := status.DefaultConfig()
	cfg.Now = fullDayNow
	if timeout > 0 {
		cfg.QueryTimeout = timeout
	}
	m, err := status.New(cfg, status.Deps{DB: db, Recorder: rec})
	require.NoError(t, err)
	return m
}

func TestEveryQueryWalksAnIndexAndReadsOnlyTheRacesHistoryPartitions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	loadFullDay(t, db)
	ctx := context.Background()
	day := nzday.Of(fullDayNow())
	raceID := fullDayRaceID(t, db, 100)
	var start, first, last time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT start_time FROM races WHERE race_id = $1`, raceID).Scan(&start))
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT min(observed_at), max(observed_at) FROM race_polls WHERE race_id = $1`,
		raceID).Scan(&first, &last))
	rows, err := db.Pool.Query(ctx, `SELECT entrant_id FROM entrants WHERE race_id = $1`, raceID)
	require.NoError(t, err)
	var entrants []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		entrants = append(entrants, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, entrants, fullDayRunners)
	tracked := []string{raceID, fullDayRaceID(t, db, 300)}

	for _, q := range status.QueriesFor(raceID, start, entrants, first, last, day.Start(), day.End(), tracked) {
		t.Run(q.Name, func(t *testing.T) {
			scans, out := db.Scans(t, q.SQL, q.Args...)
			partitions := map[string]bool{}
			for _, sc := range scans {
				if strings.HasPrefix(sc.Relation, "money_flow_history_p") || strings.HasPrefix(sc.Relation, "odds_history_p") {
					partitions[sc.Relation] = true
				}
			}
			require.NotEmpty(t, scans, "plan reads no table:\n%s", out)
			for _, sc := range scans {
				require.NotEqual(t, "Seq Scan", sc.Node, "plan scans a table (%s):\n%s", sc, out)
			}
			// The race's polls are all today: its history is in one of the
			// five daily partitions.
			require.LessOrEqual(t, len(partitions), 1, "history partitions read: %v", partitions)
		})
	}
}

func TestPagesOfAFullDay(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	loadFullDay(t, db)
	ctx := context.Background()
	var history int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM money_flow_history`).Scan(&history))
	require.GreaterOrEqual(t, history, 200_000, "the fixture is a full day")
	m := fullDayModel(t, db.Pool, 0)

	races, err := m.Races(ctx)
	require.NoError(t, err)
	require.Equal(t, nzday.Of(fullDayNow()).String(), races.Day)
	require.Equal(t, fullDayRaces, races.Totals.Races)
	require.Len(t, races.Meetings, fullDayRaces/8)
	first := races.Meetings[0]
	require.Len(t, first.Races, 8)
	require.Equal(t, "10:00", first.Races[0].StartNZ, "advertised start in NZ time")
	require.Equal(t, 1, first.Races[0].Number)
	require.NotNil(t, first.Races[0].LastPoll)
	require.Equal(t, "stored", first.Races[0].LastPoll.Outcome, "no flow result: the stored poll")
	require.False(t, races.Scheduling)
	// The day's latest alerts, newest first: the fixture fires two per race.
	require.Len(t, races.Alerts, 50)
	for i := 1; i < len(races.Alerts); i++ {
		require.False(t, races.Alerts[i].FiredAt.After(races.Alerts[i-1].FiredAt), "newest first")
	}
	latest := races.Alerts[0]
	require.NotEmpty(t, latest.Meeting)
	require.Positive(t, latest.RaceNumber)
	require.Contains(t, latest.Label, latest.Meeting+" R")

	raceID := fullDayRaceID(t, db, 100)
	race, err := m.Race(ctx, raceID)
	require.NoError(t, err)
	require.Equal(t, raceID, race.Race.ID)
	require.Len(t, race.Runners, fullDayRunners)
	require.NotNil(t, race.Pools)
	require.Equal(t, int64(1000000), race.Pools.Win)
	require.NotNil(t, race.Results)
	require.Equal(t, 3, race.Results.Placings[0].RunnerNumber)
	require.Equal(t, []int{3}, race.Results.Dividends[0].Positions)
	require.Len(t, race.Stored, 10)
	// Its alerts, oldest first, each placed on the chart by its poll.
	require.Len(t, race.Alerts, 2)
	surge, steamer := race.Alerts[0], race.Alerts[1]
	require.Equal(t, "pool_surge", surge.Kind)
	require.InDelta(t, 2, surge.MinutesToStart, 1e-9)
	require.Equal(t, "pool surge: win pool $10,000 → $16,000 (+60.0%), 2 min before the start", surge.Label)
	require.Equal(t, "steamer", steamer.Kind)
	require.Equal(t, 1, steamer.RunnerNumber)
	require.InDelta(t, 1, steamer.MinutesToStart, 1e-9)
	require.Equal(t, "#1 Runner 1 steamer: fixed win 10.00 → 2.50 (10.0% → 40.0%, +30.0 pts), 1 min before the start", steamer.Label)

	// The hold chart covers the last hour before the start: 60 polls a
	// minute apart; runner n holds 5+n %.
	require.Len(t, race.Hold, 60)
	for _, p := range race.Hold {
		require.LessOrEqual(t, p.MinutesToStart, 60.0)
		for i, h := range p.Hold {
			require.NotNil(t, h)
			require.Equal(t, float64(5+race.Runners[i].Number), *h)
		}
	}
	// Increments of 1000 cents a poll: a bucket's sum is 1000 × its polls.
	require.Equal(t, 60, race.Increments[0].Bucket, "earliest bucket first")
	buckets := 0
	for _, b := range race.Increments {
		for _, w := range b.Win {
			require.Equal(t, int64(1000*b.Polls), w, "bucket %d", b.Bucket)
		}
		buckets++
	}
	require.Equal(t, 16, buckets, "buckets 60, 55 … 5, then 4 … 1")

	pipe, err := m.Pipeline(ctx)
	require.NoError(t, err)
	require.True(t, pipe.Database.Up)
	var hops []string
	for _, h := range pipe.Hops {
		hops = append(hops, h.Stage+"←"+h.Topic)
	}
	require.Equal(t, []string{"fetch←poll", "transform←fetched", "write←", "detect←written", "result←processed",
		"notify←alerts"}, hops, "the write runs in the transform's handler, on no topic of its own")
	require.False(t, pipe.QueuesMeasured, "no backend statistics wired")
	require.Nil(t, pipe.Poison)
}

func TestBadRaceIDs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	m := fullDayModel(t, db.Pool, 0)
	for _, tc := range []struct {
		name, id string
		want     error
	}{
		{"empty", "", status.ErrMalformedID},
		{"not a uuid", "race-1", status.ErrMalformedID},
		{"sql", "x' OR '1'='1", status.ErrMalformedID},
		{"one short", "0f57e087-1a2b-4c3d-8e9f-0a1b2c3d4e5", status.ErrMalformedID},
		{"not hex", "0f57e087-1a2b-4c3d-8e9f-0a1b2c3d4e5g", status.ErrMalformedID},
		{"unknown", "0f57e087-1a2b-4c3d-8e9f-0a1b2c3d4e5f", status.ErrRaceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Race(context.Background(), tc.id)
			require.ErrorIs(t, err, tc.want)
		})
	}
	for _, bad := range []string{"", "0", "-3", "abc", "1e3", "99999999999999999999"} {
		_, err := status.ParsePoisonID(bad)
		require.ErrorIs(t, err, status.ErrMalformedID, "poison id %q", bad)
	}
	id, err := status.ParsePoisonID("42")
	require.NoError(t, err)
	require.Equal(t, int64(42), id)
}

func TestSlowDatabaseIsAnErrorWithinTheTimeout(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// Another session holds every table the pages read: their queries wait
	// for the locks until the read model's deadline ends them.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	_, err = tx.Exec(ctx, `LOCK TABLE races, meetings IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	m := fullDayModel(t, db.Pool, 200*time.Millisecond)

	_, err = m.Races(ctx)
	require.ErrorIs(t, err, status.ErrUnavailable)
	_, err = m.Race(ctx, "0f57e087-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
	require.ErrorIs(t, err, status.ErrUnavailable)
}

func TestStoppedDatabaseIsAnError(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: every connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	pool, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://nobody:secret@%s/none?connect_timeout=1", addr))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	m := fullDayModel(t, pool, 2*time.Second)

	_, err = m.Races(context.Background())
	require.ErrorIs(t, err, status.ErrUnavailable)
	require.NotContains(t, err.Error(), "secret", "no password in the error")
	_, err = m.Pipeline(context.Background())
	require.ErrorIs(t, err, status.ErrUnavailable)
}

// BenchmarkPages reads each page of the full-day fixture. docs/BENCHMARKS.md
// has the figures and the command.
func BenchmarkPages(b *testing.B) {
	db := pgtest.New(b)
	loadFullDay(b, db)
	m := fullDayModel(b, db.Pool, 0)
	raceID := fullDayRaceID(b, db, 100)
	ctx := context.Background()
	for _, page := range []struct {
		name string
		read func() error
	}{
		{"races", func() error { _, err := m.Races(ctx); return err }},
		{"race", func() error { _, err := m.Race(ctx, raceID); return err }},
		{"pipeline", func() error { _, err := m.Pipeline(ctx); return err }},
	} {
		b.Run(page.name, func(b *testing.B) {
			for b.Loop() {
				if err := page.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
