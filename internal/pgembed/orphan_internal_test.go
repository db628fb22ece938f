package pgembed

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestStartStopsAServerWhoseOwnerDied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	orphan, err := Start(ctx, Config{})
	if errors.Is(err, ErrNoBinaries) {
		t.Skipf("no PostgreSQL binaries on this machine: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = orphan.Stop() })
	// Its owner is now a process that has exited, as if killed.
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	require.NoError(t, os.WriteFile(filepath.Join(orphan.dir, ownerFile), []byte(strconv.Itoa(gone.Process.Pid)), 0o644))

	next, err := Start(ctx, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = next.Stop() })

	_, err = os.Stat(orphan.dir)
	require.ErrorIs(t, err, os.ErrNotExist, "the orphan's folder is removed")
	_, err = pgx.Connect(ctx, orphan.URL())
	require.Error(t, err, "the orphan no longer answers")
	conn, err := pgx.Connect(ctx, next.URL())
	require.NoError(t, err, "the new server answers")
	require.NoError(t, conn.Close(ctx))
}
