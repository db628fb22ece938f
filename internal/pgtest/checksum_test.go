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
	sums := pgtest.Checksums(t, db.Pool, pgtest.Bookkeeping()...)
	require.Len(t, sums, len(pgtest.DomainTables()))
	for _, table := range pgtest.DomainTables() {
		require.NotEmpty(t, sums[table], table)
	}
}

func TestRowsAndDiffRowsNameTheRowsThatDiffer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE t (k int, v text, at timestamptz);
		INSERT INTO t VALUES (2, 'y', '2025-01-02T00:00:00Z'), (1, 'x', '2025-01-01T00:00:00Z')`)
	require.NoError(t, err)
	want := pgtest.Rows(t, db.Pool, "t", "at", "not_a_column")
	require.Equal(t, []string{"(1,x)", "(2,y)"}, want, "sorted, excluded columns left out")
	require.Empty(t, pgtest.DiffRows(want, want, 5))

	_, err = db.Pool.Exec(ctx, `UPDATE t SET v = 'z' WHERE k = 2; INSERT INTO t VALUES (3, 'w', NULL)`)
	require.NoError(t, err)
	got := pgtest.Rows(t, db.Pool, "t", "at")
	require.Equal(t, "1 rows missing, 2 rows in excess (of 2 wanted)\n  - (2,y)\n  + (2,z)\n  + (3,w)",
		pgtest.DiffRows(want, got, 5))
}
