package reliability_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// TestKillNineNeitherLosesNorDuplicatesPolls kills `raceflow run` with
// SIGKILL at random moments while polls of 8 races flow (a steady stream
// plus a burst per cycle), restarts it each time, and then checks over
// (race, poll) that every requested poll was fetched, stored and written
// exactly once (after requeueing what several kills in a row poisoned).
func TestKillNineNeitherLosesNorDuplicatesPolls(t *testing.T) {
	kills := 20
	if long() {
		kills = 150
	}
	rng := newRand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := pgtest.New(t)
	e := newEnv(t, envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 20 * time.Millisecond})
	races := e.racesAcrossShards(8)

	p := e.start()
	startups := []time.Duration{e.waitReady(p, 60*time.Second)}
	stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
	var bursts, ambiguous []string
	var atKill []time.Duration
	var inFlight int
	for range kills {
		ok, amb := e.publish(10, races, rng)
		bursts, ambiguous = append(bursts, ok...), append(ambiguous, amb...)
		wait := between(rng, 200*time.Millisecond, 1500*time.Millisecond)
		atKill = append(atKill, wait)
		hold(ctx, wait)
		left, err := e.pending(ctx)
		require.NoError(t, err)
		inFlight += left
		e.kill(p)
		p = e.start()
		startups = append(startups, e.waitReady(p, 60*time.Second))
	}
	streamed, amb := stream.stop()
	ambiguous = append(ambiguous, amb...)
	requested := append(streamed, bursts...)

	requeued := e.requeueKilled(p, requested, 3*time.Minute)
	drain := e.waitDrained(p, requested, 3*time.Minute)
	code, took := e.terminate(p, time.Minute)
	require.Zero(t, code, "the last run stops cleanly on SIGTERM")

	c := e.check(requested, ambiguous)
	errorLines, messages := e.scanLogs()
	t.Logf("RESULT kill-9: kills=%d %s", kills, c)
	t.Logf("RESULT kill-9: queued or unfinished messages at the kills=%d (sum over kills); kill delays %s", inFlight, stats(atKill))
	t.Logf("RESULT kill-9: startup to /readyz 200 %s; final drain %s; final SIGTERM exit in %s", stats(startups), drain.Round(time.Millisecond), took.Round(time.Millisecond))
	t.Logf("RESULT kill-9: API fetches per poll %.3f; error log lines %d %v", float64(c.APIFetches)/float64(c.Processed), errorLines, messages)
	t.Logf("RESULT kill-9: polls poisoned by being in flight at %d kills, then requeued: %d", flows.DefaultConfig().MaxDeliveries, requeued)
	requireExactlyOnce(t, c)
	require.Zero(t, c.Poisoned, "nothing is left in the poison queue once the kills' are requeued")
	requireNoRefetchStorm(t, c)
}
