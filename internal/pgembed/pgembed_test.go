package pgembed_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgembed"
)

func TestStartConnectStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgembed.Start(ctx, pgembed.Config{})
	if errors.Is(err, pgembed.ErrNoBinaries) {
		t.Skipf("no PostgreSQL binaries on this machine: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })

	conn, err := pgx.Connect(ctx, srv.URL())
	require.NoError(t, err)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
	require.NoError(t, conn.Close(ctx))

	conn, err = pgx.Connect(ctx, srv.SocketURL())
	require.NoError(t, err)
	var overSocket bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT inet_client_addr() IS NULL").Scan(&overSocket))
	require.True(t, overSocket, "SocketURL reaches the server over its Unix socket")
	require.NoError(t, conn.Close(ctx))

	require.NoError(t, srv.Stop())
	require.NoError(t, srv.Stop(), "stop is idempotent")
	_, err = pgx.Connect(ctx, srv.URL())
	require.Error(t, err, "the server no longer answers after stop")
}

func TestMissingBinariesIsAClearError(t *testing.T) {
	t.Parallel()
	_, err := pgembed.Start(context.Background(), pgembed.Config{BinDir: os.TempDir()})
	require.ErrorIs(t, err, pgembed.ErrNoBinaries)
	require.Contains(t, err.Error(), "DATABASE_URL")
}
