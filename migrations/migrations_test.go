package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func tableCount(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `
		SELECT count(*) FROM pg_tables WHERE schemaname = 'public'
		AND tablename IN ('meetings','races','entrants','race_pools','race_results','race_polls','money_flow_history','odds_history')`).Scan(&n))
	return n
}

func TestUpCreatesSchemaDownRemovesItAndUpTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dsn := pgtest.NewEmpty(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	m, err := migrations.New(pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })

	v, err := m.Version(ctx)
	require.NoError(t, err)
	require.Zero(t, v, "an empty database has no version")

	applied, err := m.Up(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, applied)
	require.Equal(t, 8, tableCount(t, pool))

	again, err := m.Up(ctx)
	require.NoError(t, err)
	require.Empty(t, again, "a second up applies nothing")

	st, err := m.Status(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, st)
	for _, s := range st {
		require.True(t, s.Applied, "migration %d applied", s.Version)
	}
	v, err = m.Version(ctx)
	require.NoError(t, err)
	require.Equal(t, st[len(st)-1].Version, v)

	down, err := m.Down(ctx)
	require.NoError(t, err)
	require.Len(t, down, len(applied))
	require.Zero(t, tableCount(t, pool))
	v, err = m.Version(ctx)
	require.NoError(t, err)
	require.Zero(t, v)
}

func TestConvergeMigrationStampsExistingRowsWithTheirLatestPollAndTouchesNothingElse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dsn := pgtest.NewEmpty(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	m, err := migrations.New(pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })

	_, err = m.UpTo(ctx, 2)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `
		INSERT INTO meetings (meeting_id, meeting_name, country, race_type, category, date, updated_at)
			VALUES ('m1', 'Te Rapa', 'NZ', 'thoroughbred', 'T', '2025-07-17', '2025-07-17T01:00:00Z'),
			       ('m2', 'Listed only', 'NZ', 'harness', 'H', '2025-07-17', '2025-07-17T01:00:00Z');
		INSERT INTO races (race_id, meeting_id, name, race_number, start_time, status, updated_at)
			VALUES ('r1', 'm1', 'R1', 1, '2025-07-17T02:00:00Z', 'open', '2025-07-17T01:00:00Z'),
			       ('r2', 'm2', 'R2', 1, '2025-07-17T03:00:00Z', 'open', '2025-07-17T01:00:00Z');
		INSERT INTO entrants (entrant_id, race_id, name, runner_number, updated_at)
			VALUES ('e1', 'r1', 'E1', 1, '2025-07-17T01:00:00Z');
		INSERT INTO race_polls (race_id, observed_at, poll_id, status, quality_score, quality)
			VALUES ('r1', '2025-07-17T01:10:00Z', 'p1', 'open', 100, '{}'),
			       ('r1', '2025-07-17T01:20:00Z', 'p2', 'open', 100, '{}')`)
	require.NoError(t, err)

	_, err = m.Up(ctx)
	require.NoError(t, err)
	got := map[string]string{}
	rows, err := pool.Query(ctx, `
		SELECT 'meeting ' || meeting_id, COALESCE(to_char(observed_at AT TIME ZONE 'UTC', 'HH24:MI'), 'NULL'),
			to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI') FROM meetings
		UNION ALL SELECT 'race ' || race_id, COALESCE(to_char(observed_at AT TIME ZONE 'UTC', 'HH24:MI'), 'NULL'),
			to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI') FROM races
		UNION ALL SELECT 'entrant ' || entrant_id, COALESCE(to_char(observed_at AT TIME ZONE 'UTC', 'HH24:MI'), 'NULL'),
			to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI') FROM entrants`)
	require.NoError(t, err)
	for rows.Next() {
		var k, seen, updated string
		require.NoError(t, rows.Scan(&k, &seen, &updated))
		got[k] = seen + " " + updated
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]string{
		"meeting m1": "01:20 01:00", "meeting m2": "NULL 01:00",
		"race r1": "01:20 01:00", "race r2": "NULL 01:00",
		"entrant e1": "01:20 01:00",
	}, got, "rows take their race's latest poll (none: NULL); updated_at stays")

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM baseline_responses`).Scan(&n))
	require.Zero(t, n)
	_, err = m.Down(ctx)
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'baseline_responses'`).Scan(&n))
	require.Zero(t, n)
}
