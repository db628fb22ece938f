package pgtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestChecksumSeesDataNotInsertionOrderOrExcludedColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := pgtest.New(t), pgtest.New(t)
	for _, db := range []*pgtest.DB{a, b} {
		_, err := db.Pool.Exec(ctx, `CREATE TABLE t (k int, v text, at timestamptz)`)
		require.NoError(t, err)
	}
	_, err := a.Pool.Exec(ctx, `INSERT INTO t VALUES (1, 'x', '2025-01-01T00:00:00Z'), (2, 'y', '2025-01-02T00:00:00Z')`)
	require.NoError(t, err)
	_, err = b.Pool.Exec(ctx, `INSERT INTO t VALUES (2, 'y', '2025-01-03T00:00:00Z'), (1, 'x', '2025-01-01T00:00:00Z')`)
	require.NoError(t, err)

	require.NotEqual(t, pgtest.Checksum(t, a.Pool, "t"), pgtest.Checksum(t, b.Pool, "t"), "at differs")
	require.Equal(t, pgtest.Checksum(t, a.Pool, "t", "at"), pgtest.Checksum(t, b.Pool, "t", "at"),
		"same rows in another order, differing only in an excluded column")

	// The session time zone does not change how instants are rendered.
	conn, err := a.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET TimeZone = 'Pacific/Auckland'`)
	require.NoError(t, err)
	require.Equal(t, pgtest.Checksum(t, a.Pool, "t"), pgtest.Checksum(t, conn, "t"))
	_, err = conn.Exec(ctx, `RESET TimeZone`)
	require.NoError(t, err)

	_, err = b.Pool.Exec(ctx, `UPDATE t SET v = 'z' WHERE k = 1`)
	require.NoError(t, err)
	require.NotEqual(t, pgtest.Checksum(t, a.Pool, "t", "at"), pgtest.Checksum(t, b.Pool, "t", "at"))
}

func TestChecksumsCoverEveryDomainTable(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	sums := pgtest.Checksums(t, db.Pool, "created_at", "updated_at", "written_at")
	require.Len(t, sums, len(pgtest.DomainTables()))
	for _, table := range pgtest.DomainTables() {
		require.NotEmpty(t, sums[table], table)
	}
}
