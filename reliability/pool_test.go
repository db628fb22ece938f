package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// TestTinyPoolNeverDeadlocks runs the flow (16 subscriptions: 4 shards × 4
// stages, each holding a connection for its transaction) on pools far
// smaller than that, with a burst of polls queued on every shard at once:
// everything is processed exactly once. Pool 20 (the default) is the
// reference for the throughput the report gives.
func TestTinyPoolNeverDeadlocks(t *testing.T) {
	burst := 120
	if long() {
		burst = 1000
	}
	for _, conns := range []int{2, 4, 20} {
		t.Run(fmt.Sprintf("pool=%d", conns), func(t *testing.T) {
			rng := newRand(t)
			db := pgtest.New(t)
			e := newEnv(t, envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 20 * time.Millisecond,
				Env: []string{"RACEFLOW_DB_MAX_CONNS=" + strconv.Itoa(conns)}})
			races := e.racesAcrossShards(16)
			p := e.start()
			e.waitReady(p, 60*time.Second)

			requested, ambiguous := e.publish(burst, races, rng)
			took := e.waitDrained(p, requested, 3*time.Minute)
			code, _ := e.terminate(p, time.Minute)
			require.Zero(t, code)

			c := e.check(requested, ambiguous)
			errorLines, messages := e.scanLogs()
			t.Logf("RESULT pool=%d: %d polls queued at once drained in %s (%.1f polls/s); %s", conns, burst,
				took.Round(time.Millisecond), float64(burst)/took.Seconds(), c)
			t.Logf("RESULT pool=%d: error log lines %d %v", conns, errorLines, topMessages(messages, 5))
			requireExactlyOnce(t, c)
			require.Zero(t, c.Poisoned)
		})
	}
}

// TestBlockingTransactionStallsThenRecovers holds row locks on races rows
// (SELECT … FOR UPDATE in a test transaction) for 5 s while polls stream in
// on a pool of 4: the write stage of a locked race's shard waits on the lock
// while holding one of the 4 connections. With one shard blocked the other
// shards keep writing; with every shard blocked the whole pool is held by
// waiting transactions and the flow stalls. Either way it catches up after
// the release and nothing is lost or duplicated.
func TestBlockingTransactionStallsThenRecovers(t *testing.T) {
	const block = 5 * time.Second
	for _, tc := range []struct {
		name   string
		locked int // shards with a locked race
	}{
		{"one shard blocked", 1},
		{"every shard blocked", shards},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			db := pgtest.New(t)
			e := newEnv(t, envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 20 * time.Millisecond,
				Env: []string{"RACEFLOW_DB_MAX_CONNS=4"}})
			races := e.racesAcrossShards(8)
			p := e.start()
			e.waitReady(p, 60*time.Second)

			// Every race gets its rows first, so there is something to lock.
			var warm []string
			for _, id := range races {
				pollID, err := e.requestPoll(id)
				require.NoError(t, err)
				warm = append(warm, pollID)
			}
			e.waitDrained(p, warm, time.Minute)

			var locked []string
			blockedShard := map[int]bool{}
			for _, id := range races {
				if s := driver.Shard(id, shards); !blockedShard[s] && len(locked) < tc.locked {
					blockedShard[s] = true
					locked = append(locked, id)
				}
			}
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			var n int
			var blockedAt time.Time
			require.NoError(t, tx.QueryRow(ctx, `
				WITH l AS (SELECT race_id FROM races WHERE race_id = ANY($1) FOR UPDATE)
				SELECT count(*), clock_timestamp() FROM l`, locked).Scan(&n, &blockedAt))
			require.Equal(t, len(locked), n)

			stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
			hold(ctx, block)
			readyDuring := e.readyz()
			byRace := e.writesSince(blockedAt)
			require.NoError(t, tx.Rollback(ctx))
			released := time.Now()

			// The locked races write again, then everything drains.
			require.Eventually(t, func() bool {
				var n int
				err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT race_id) FROM race_polls WHERE race_id = ANY($1) AND written_at >= $2`,
					locked, blockedAt).Scan(&n)
				return err == nil && n == len(locked)
			}, time.Minute, 20*time.Millisecond, "the locked races are written after the release")
			resumed := time.Since(released)
			requested, ambiguous := stream.stop()
			drain := e.waitDrained(p, requested, 3*time.Minute)
			code, _ := e.terminate(p, time.Minute)
			require.Zero(t, code)

			c := e.check(append(warm, requested...), ambiguous)
			byShard, lockedWrites := map[int]int{}, 0
			for id, n := range byRace {
				byShard[driver.Shard(id, shards)] += n
				if slices.Contains(locked, id) {
					lockedWrites += n
				}
			}
			t.Logf("RESULT blocker (%s, pool=4): writes per shard during the %s block %v (blocked shards %v); /readyz during the block %d",
				tc.name, block, byShard, blockedShard, readyDuring)
			t.Logf("RESULT blocker (%s, pool=4): release → locked races written %s; final drain %s; %s",
				tc.name, resumed.Round(time.Millisecond), drain.Round(time.Millisecond), c)
			requireExactlyOnce(t, c)
			require.Zero(t, c.Poisoned)
			require.Zero(t, lockedWrites, "a locked race is not written while the lock is held")
			for s := range shards {
				if !blockedShard[s] {
					require.Positive(t, byShard[s], "shard %d has no locked race and keeps writing", s)
				}
			}
		})
	}
}

// writesSince counts race_polls rows written since dbSince, by race.
func (e *env) writesSince(dbSince time.Time) map[string]int {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := e.cfg.Pool.Query(ctx, `SELECT race_id, count(*) FROM race_polls WHERE written_at >= $1 GROUP BY race_id`, dbSince)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		out[id] = n
	}
	require.NoError(t, rows.Err())
	return out
}
