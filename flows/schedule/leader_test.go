package schedule_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// fastLeader campaigns and pings every 20 ms so takeover tests are quick.
func fastLeader(t *testing.T, db *pgtest.DB, key int64) *schedule.Leader {
	t.Helper()
	return leaderWithRetry(t, db, key, 20*time.Millisecond)
}

func leaderWithRetry(t *testing.T, db *pgtest.DB, key int64, retry time.Duration) *schedule.Leader {
	t.Helper()
	cfg := schedule.DefaultLeaderConfig()
	cfg.RetryInterval, cfg.PingInterval = retry, 20*time.Millisecond
	l, err := schedule.NewLeader(db.Pool, key, cfg, nil)
	require.NoError(t, err)
	return l
}

// work is an fn for Leader.Run that announces itself on started and, when
// its context ends, on stopped.
type work struct {
	name    string
	started chan<- string
	stopped chan string
}

func (w work) run(ctx context.Context) error {
	w.started <- w.name
	<-ctx.Done()
	w.stopped <- w.name
	return ctx.Err()
}

// advisoryHolders lists the backends holding the advisory lock key (a key
// below 2^32 is objid with classid 0).
func advisoryHolders(t *testing.T, db *pgtest.DB, key int64) []int32 {
	t.Helper()
	var pids []int32
	rows, err := db.Pool.Query(context.Background(), `
		SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1 AND objsubid = 1`, key)
	require.NoError(t, err)
	for rows.Next() {
		var pid int32
		require.NoError(t, rows.Scan(&pid))
		pids = append(pids, pid)
	}
	require.NoError(t, rows.Err())
	return pids
}

func TestOnlyOneLeaderRunsAndAnotherTakesOverWhenTheLockConnectionDies(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	const key = 4242
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan string, 4)
	// a leads first; after losing the lock it waits an hour before
	// campaigning again, like a process that crashed, so the takeover by b
	// is deterministic.
	a, b := leaderWithRetry(t, db, key, time.Hour), fastLeader(t, db, key)
	wa := work{name: "a", started: started, stopped: make(chan string, 1)}
	wb := work{name: "b", started: started, stopped: make(chan string, 1)}
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx, wa.run) }()
	require.Equal(t, "a", recv(t, started))
	require.True(t, a.Leading())
	go func() { done <- b.Run(ctx, wb.run) }()

	// b keeps campaigning and keeps losing.
	require.Eventually(t, func() bool { return b.Attempts() >= 3 }, time.Minute, 5*time.Millisecond)
	require.Empty(t, started, "only one leader runs fn")
	require.False(t, b.Leading())
	holders := advisoryHolders(t, db, key)
	require.Len(t, holders, 1)

	// Kill a's lock connection, as a crash or a network loss would.
	var killed bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, holders[0]).Scan(&killed))
	require.True(t, killed)
	require.Equal(t, "a", recv(t, wa.stopped), "the old leader's work is cancelled")
	require.Equal(t, "b", recv(t, started), "the other one takes over")
	require.True(t, b.Leading())
	require.Eventually(t, func() bool { return !a.Leading() }, time.Minute, 5*time.Millisecond)
	require.Len(t, advisoryHolders(t, db, key), 1)

	cancel()
	require.NoError(t, recv(t, done))
	require.NoError(t, recv(t, done))
	require.Empty(t, started)
}

func TestCancelledLeaderReleasesTheLockToTheNext(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	const key = 4343
	started := make(chan string, 4)
	a, b := fastLeader(t, db, key), fastLeader(t, db, key)
	wa := work{name: "a", started: started, stopped: make(chan string, 1)}
	wb := work{name: "b", started: started, stopped: make(chan string, 1)}

	actx, acancel := context.WithCancel(context.Background())
	defer acancel()
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx, wa.run) }()
	require.Equal(t, "a", recv(t, started))

	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bctx, wb.run) }()
	require.Eventually(t, func() bool { return b.Attempts() >= 2 }, time.Minute, 5*time.Millisecond)
	require.Empty(t, started)

	acancel()
	require.Equal(t, "a", recv(t, wa.stopped))
	require.NoError(t, recv(t, aDone), "a cancelled leader returns nil")
	require.Equal(t, "b", recv(t, started))

	bcancel()
	require.NoError(t, recv(t, bDone))
	require.Empty(t, advisoryHolders(t, db, key), "released on exit")
}

func TestLeaderReturnsTheWorksErrorAndReleases(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	const key = 4444
	boom := errors.New("boom")
	l := fastLeader(t, db, key)
	var heldWhileRunning int
	err := l.Run(context.Background(), func(context.Context) error {
		heldWhileRunning = len(advisoryHolders(t, db, key))
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, heldWhileRunning)
	require.Empty(t, advisoryHolders(t, db, key))
	require.False(t, l.Leading())
}

func TestLeaderConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, schedule.DefaultLeaderConfig().Validate())
	require.ErrorContains(t, schedule.LeaderConfig{RetryInterval: time.Second, PingTimeout: time.Second}.Validate(), "PingInterval")
	require.ErrorContains(t, schedule.LeaderConfig{PingInterval: time.Second, PingTimeout: time.Second}.Validate(), "RetryInterval")
	require.ErrorContains(t, schedule.LeaderConfig{RetryInterval: time.Second, PingInterval: time.Second}.Validate(), "PingTimeout")
}
