package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/internal/pgembed"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// recovery is what the test saw after one fault ended.
type recovery struct {
	ready      time.Duration   // fault end → /readyz 200
	firstWrite time.Duration   // fault end → first poll written
	perShard   []time.Duration // fault end → each shard's first poll written
}

func (r recovery) String() string {
	show := func(d time.Duration) string {
		if d <= 0 {
			return "none yet"
		}
		return d.Round(time.Millisecond).String()
	}
	var parts []string
	for s, d := range r.perShard {
		parts = append(parts, fmt.Sprintf("%d:%s", s, show(d)))
	}
	return fmt.Sprintf("readyz %s, first write %s, per shard [%s]", show(r.ready), show(r.firstWrite), strings.Join(parts, " "))
}

// slowest is the longest per-shard recovery.
func (r recovery) slowest() time.Duration {
	var m time.Duration
	for _, d := range r.perShard {
		m = max(m, d)
	}
	return m
}

// stuckBound is how long a shard may take to write again after a fault. It
// is half the flow's ack deadline (60 s): a shard that needs longer is one
// whose subscription waited for the deadline instead of recovering.
const stuckBound = 30 * time.Second

// awaitRecovery waits, from the end of a fault, for /readyz 200 and for
// every shard to write a poll again (polls must be flowing to all shards).
// since is the fault's end on the test's clock, dbSince on the database's
// (race_polls.written_at is the write transaction's start, stamped by the
// database).
func (e *env) awaitRecovery(p *proc, since, dbSince time.Time) recovery {
	t := e.t
	t.Helper()
	var r recovery
	deadline := since.Add(stuckBound)
	for {
		if r.ready == 0 && e.readyz() == http.StatusOK {
			r.ready = time.Since(since)
		}
		first, err := e.firstWrites(dbSince)
		if err == nil {
			r.perShard = make([]time.Duration, shards)
			done := true
			for s, at := range first {
				if at.IsZero() {
					done = false
					r.perShard[s] = -1
					continue
				}
				r.perShard[s] = at.Sub(dbSince)
				if r.firstWrite == 0 || r.perShard[s] < r.firstWrite {
					r.firstWrite = r.perShard[s]
				}
			}
			if done && r.ready > 0 {
				return r
			}
		}
		if time.Now().After(deadline) {
			e.diagnose(p)
			t.Fatalf("no full recovery within %s of the fault's end (%s): a shard that waits this long is "+
				"stuck until the ack deadline instead of recovering", stuckBound, r)
		}
		select {
		case <-p.done:
			t.Fatalf("run #%d exited after the fault: %v\n%s", p.n, p.err, tail(p.logPath, 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// firstWrites is each shard's first race_polls row written since dbSince
// (zero: none yet).
func (e *env) firstWrites(dbSince time.Time) ([]time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := e.cfg.Pool.Query(ctx, `SELECT race_id, min(written_at) FROM race_polls WHERE written_at >= $1 GROUP BY race_id`, dbSince)
	if err != nil {
		return nil, err
	}
	first := make([]time.Time, shards)
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return nil, err
		}
		s := driver.Shard(id, shards)
		if first[s].IsZero() || at.Before(first[s]) {
			first[s] = at
		}
	}
	return first, rows.Err()
}

// requireNoRefetchStorm fails when the API served far more event requests
// than there were polls: a fetch repeated in a loop.
func requireNoRefetchStorm(t *testing.T, c tally) {
	t.Helper()
	require.LessOrEqual(t, c.APIFetches, int64(2*(c.Requested+c.Ambiguous)),
		"the API served %d event requests for %d polls: a poll was fetched again and again", c.APIFetches, c.Requested+c.Ambiguous)
}

// TestDatabaseRestartIsReportedAndRecovered stops and restarts a private
// PostgreSQL under a running `raceflow run` while polls stream in: /readyz
// reports the outage, every shard writes again soon after the database is
// back (without waiting for an ack deadline), the API is not hammered
// meanwhile, and every poll whose request was stored is written exactly
// once.
func TestDatabaseRestartIsReportedAndRecovered(t *testing.T) {
	restarts := 2
	if long() {
		restarts = 10
	}
	const outage = 3 * time.Second
	rng := newRand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv, err := pgembed.Start(ctx, pgembed.Config{})
	if errors.Is(err, pgembed.ErrNoBinaries) {
		t.Skipf("needs PostgreSQL server binaries to stop and restart a private server: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	pool, err := pgxpool.New(ctx, srv.URL())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	e := newEnv(t, envConfig{DSN: srv.URL(), Pool: pool, APILatency: 50 * time.Millisecond})
	races := e.racesAcrossShards(8)

	p := e.start()
	e.waitReady(p, 60*time.Second) // the subprocess migrates the database
	stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
	var detect []time.Duration
	var recs []recovery
	var apiDuringOutage []int64
	for range restarts {
		hold(ctx, between(rng, time.Second, 2*time.Second))
		halted := time.Now()
		apiBefore := e.sim.Requests()
		require.NoError(t, srv.Halt(ctx))
		require.Eventually(t, func() bool { return e.readyz() == http.StatusServiceUnavailable }, 30*time.Second, 20*time.Millisecond,
			"/readyz reports the stopped database")
		detect = append(detect, time.Since(halted))
		resp, err := e.http.Get("http://" + e.addr + "/healthz")
		require.NoError(t, err, "the process itself stays up")
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		hold(ctx, outage-time.Since(halted))
		require.NoError(t, srv.Resume(ctx))
		resumed := time.Now() // the private server shares the test's clock
		apiDuringOutage = append(apiDuringOutage, e.sim.Requests()-apiBefore)
		recs = append(recs, e.awaitRecovery(p, resumed, resumed))
	}
	requested, ambiguous := stream.stop()
	drain := e.waitDrained(p, requested, 3*time.Minute)
	code, _ := e.terminate(p, time.Minute)
	require.Zero(t, code)

	c := e.check(requested, ambiguous)
	errorLines, messages := e.scanLogs()
	t.Logf("RESULT db-restart: restarts=%d outage=%s %s", restarts, outage, c)
	t.Logf("RESULT db-restart: halt → /readyz 503 %s; final drain %s", stats(detect), drain.Round(time.Millisecond))
	var slow []time.Duration
	for i, r := range recs {
		t.Logf("RESULT db-restart: restart %d: resume → %s; API requests during the outage %d", i+1, r, apiDuringOutage[i])
		slow = append(slow, r.slowest())
	}
	t.Logf("RESULT db-restart: slowest shard per restart %s", stats(slow))
	t.Logf("RESULT db-restart: API fetches per poll %.3f; error log lines %d %v", float64(c.APIFetches)/float64(c.Processed), errorLines, topMessages(messages, 8))
	requireExactlyOnce(t, c)
	require.Zero(t, c.Poisoned, "losing the database never poisons a poll")
	requireNoRefetchStorm(t, c)
}

// TestTerminatedBackendsRecover terminates every database session of
// `raceflow run` (pg_terminate_backend) mid-flow, several times: the flow
// reconnects by itself, every shard writes again soon after, the API is not
// hammered, and every poll is written exactly once.
func TestTerminatedBackendsRecover(t *testing.T) {
	rounds := 3
	if long() {
		rounds = 20
	}
	rng := newRand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := pgtest.New(t)
	e := newEnv(t, envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 50 * time.Millisecond})
	races := e.racesAcrossShards(8)

	p := e.start()
	e.waitReady(p, 60*time.Second)
	stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
	var recs []recovery
	var killed []int
	for range rounds {
		hold(ctx, between(rng, time.Second, 2*time.Second))
		var n int
		var dbAt time.Time
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT count(*), clock_timestamp() FROM (
			    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			    WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()) k`,
			appName).Scan(&n, &dbAt))
		at := time.Now()
		require.Positive(t, n, "raceflow has sessions to terminate")
		killed = append(killed, n)
		recs = append(recs, e.awaitRecovery(p, at, dbAt))
	}
	requested, ambiguous := stream.stop()
	drain := e.waitDrained(p, requested, 3*time.Minute)
	code, _ := e.terminate(p, time.Minute)
	require.Zero(t, code)

	c := e.check(requested, ambiguous)
	errorLines, messages := e.scanLogs()
	t.Logf("RESULT terminate: rounds=%d sessions terminated %v; %s", rounds, killed, c)
	var slow []time.Duration
	for i, r := range recs {
		t.Logf("RESULT terminate: round %d: terminate → %s", i+1, r)
		slow = append(slow, r.slowest())
	}
	t.Logf("RESULT terminate: slowest shard per round %s; final drain %s", stats(slow), drain.Round(time.Millisecond))
	t.Logf("RESULT terminate: API fetches per poll %.3f; error log lines %d %v", float64(c.APIFetches)/float64(c.Processed), errorLines, topMessages(messages, 8))
	requireExactlyOnce(t, c)
	require.Zero(t, c.Poisoned, "a terminated session never poisons a poll")
	requireNoRefetchStorm(t, c)
}

// topMessages keeps the n most frequent log messages.
func topMessages(m map[string]int, n int) map[string]int {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	out := map[string]int{}
	for _, k := range keys[:min(n, len(keys))] {
		out[k] = m[k]
	}
	return out
}
