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
