package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestABoundedTransactionWaitsOnLocksAtMostItsBoundWhateverItSendsFirst(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	for _, tc := range []struct {
		name  string
		first func(tx pgx.Tx) error
	}{
		{"a batch", func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`SELECT 1`)
			return tx.SendBatch(ctx, b).Close()
		}},
		{"a statement", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, `SELECT 1`); return err }},
		{"a query", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT 1`)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}},
		{"a row", func(tx pgx.Tx) error { var n int; return tx.QueryRow(ctx, `SELECT 1`).Scan(&n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := db.Pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			bounded := boundLockWait(tx, 1500*time.Microsecond)
			require.NoError(t, tc.first(bounded))
			var setting string
			require.NoError(t, bounded.QueryRow(ctx, `SHOW lock_timeout`).Scan(&setting))
			require.Equal(t, "1ms", setting, "the bound, in whole milliseconds")
			require.NoError(t, tx.Rollback(ctx))
			require.NoError(t, conn.QueryRow(ctx, `SHOW lock_timeout`).Scan(&setting))
			require.Equal(t, "0", setting, "the bound ends with the transaction")
		})
	}
}
