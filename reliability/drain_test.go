package reliability_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
)

// TestSIGTERMUnderLoadDrainsCleanly stops `raceflow run` with SIGTERM while
// polls stream in (and keep streaming while it is down), restarts it, and
// checks that every stop exits 0 within the drain timeout, that what was in
// flight was finished or redelivered (nothing lost, nothing duplicated), and
// that no shutdown sent a message to the poison queue.
func TestSIGTERMUnderLoadDrainsCleanly(t *testing.T) {
	cycles := 6
	if long() {
		cycles = 40
	}
	const drainTimeout = 10 * time.Second
	rng := newRand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := pgtest.New(t)
	e := newEnv(t, envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 20 * time.Millisecond, Args: []string{"--drain-timeout=" + drainTimeout.String()}})
	races := e.racesAcrossShards(8)

	p := e.start()
	e.waitReady(p, 60*time.Second)
	stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
	var exits []time.Duration
	var queued int
	for range cycles {
		hold(ctx, between(rng, 500*time.Millisecond, 2*time.Second))
		left, err := e.pending(ctx)
		require.NoError(t, err)
		queued += left
		// The engine's own close timeout (30 s) comes on top of the drain
		// timeout in the worst case; a stop that needs either is a failure
		// to drain in time.
		code, took := e.terminate(p, drainTimeout+5*time.Second)
		require.Zero(t, code, "run #%d exits 0 on SIGTERM:\n%s", p.n, tail(p.logPath, 20))
		exits = append(exits, took)
		p = e.start()
		e.waitReady(p, 60*time.Second)
	}
	requested, ambiguous := stream.stop()
	drain := e.waitDrained(p, requested, 3*time.Minute)
	code, took := e.terminate(p, drainTimeout+5*time.Second)
	require.Zero(t, code)
	exits = append(exits, took)

	c := e.check(requested, ambiguous)
	errorLines, messages := e.scanLogs()
	t.Logf("RESULT sigterm: stops=%d %s", cycles+1, c)
	t.Logf("RESULT sigterm: SIGTERM to exit %s; queued messages at the stops=%d (sum); final drain %s",
		stats(exits), queued, drain.Round(time.Millisecond))
	t.Logf("RESULT sigterm: API fetches per poll %.3f; error log lines %d %v", float64(c.APIFetches)/float64(c.Processed), errorLines, messages)
	requireExactlyOnce(t, c)
	require.Zero(t, c.Poisoned, "a cancelled context never poisons a message")
	requireNoRefetchStorm(t, c)
	require.Zero(t, errorLines, "a graceful stop logs no errors: %v", messages)
}
