package flows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// Races that share a shard do not wait for each other's writes: while one
// race's write waits (here on a row lock held by the test), another race
// of the same shard is fetched, written and judged.
func TestAShardWritesAnotherRaceWhileOneRacesWriteWaits(t *testing.T) {
	t.Parallel()
	onEach(t, []string{config.BackendPostgres, config.BackendMemory}, func(t *testing.T, backend string) {
		h := newHarness(t)
		cfg := cfgFor(t, backend)
		ids := h.horseRaces(t, 12)
		var a, b string
		for i, x := range ids {
			for _, y := range ids[i+1:] {
				if a == "" && driver.Shard(x, cfg.Shards) == driver.Shard(y, cfg.Shards) {
					a, b = x, y
				}
			}
		}
		require.NotEmpty(t, a, "two of %d races share a shard", len(ids))
		e, _ := h.start(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := e.ProcessRace(ctx, a)
		require.NoError(t, err)
		require.Equal(t, handlers.StatusSuccess, res.Status)

		// Hold race a's row: its next write waits on the lock.
		lock, err := h.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = lock.Rollback(context.Background()) }()
		_, err = lock.Exec(ctx, `SELECT 1 FROM races WHERE race_id = $1 FOR UPDATE`, a)
		require.NoError(t, err)
		type outcome struct {
			res handlers.ProcessResult
			err error
		}
		aDone := make(chan outcome, 1)
		go func() {
			res, err := e.ProcessRace(ctx, a)
			aDone <- outcome{res, err}
		}()
		require.Eventually(t, func() bool {
			return h.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0
		}, 30*time.Second, 10*time.Millisecond, "race a's write waits on its row")

		resB, err := e.ProcessRace(ctx, b)
		require.NoError(t, err, "race b, of the same shard, is written while race a waits")
		require.Equal(t, handlers.StatusSuccess, resB.Status)
		select {
		case o := <-aDone:
			t.Fatalf("race a finished while its row was locked: %+v %v", o.res, o.err)
		default:
		}

		require.NoError(t, lock.Rollback(ctx))
		o := <-aDone
		require.NoError(t, o.err)
		require.Equal(t, handlers.StatusSuccess, o.res.Status, "race a is written once its row is free")
	})
}
