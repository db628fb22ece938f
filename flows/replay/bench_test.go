package replay_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/partitions"
)

// BenchmarkReplayDay replays the simulated day (32 races, ~1,095 polls, 20
// meetings lists), processed once by the real flow, into emptied tables:
// what `raceflow replay` does after a fix. It reports polls/s.
func BenchmarkReplayDay(b *testing.B) {
	day := recordedDay(b)
	db := pgtest.New(b)
	cfg := flows.DefaultConfig()
	processDay(b, db.Pool, cfg, day)
	drv := openDriver(b, cfg, db.Pool)
	ctx := context.Background()
	for _, tc := range []struct{ batch, concurrency, writers int }{{128, 2, 1}, {256, 2, 1}, {256, 2, 2}, {256, 4, 2}, {512, 2, 2}} {
		b.Run(fmt.Sprintf("batch=%d/concurrency=%d/writers=%d", tc.batch, tc.concurrency, tc.writers), func(b *testing.B) {
			polls := 0
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				_, err := db.Pool.Exec(ctx, `TRUNCATE `+dataTables+`, race_polls CASCADE`)
				require.NoError(b, err)
				rc := replay.DefaultConfig()
				rc.BatchSize, rc.Concurrency, rc.Writers = tc.batch, tc.concurrency, tc.writers
				r, err := replay.New(rc, replay.Deps{Pool: db.Pool, Driver: drv, Logger: quietLogger()})
				require.NoError(b, err)
				b.StartTimer()
				start := time.Now()
				sum, err := r.Run(ctx)
				elapsed += time.Since(start)
				require.NoError(b, err)
				require.Equal(b, len(day.Fetches), sum.Polls)
				polls += sum.Polls
			}
			b.ReportMetric(float64(polls)/elapsed.Seconds(), "polls/s")
		})
	}
}

// TestProcessDayIntoDatabase fills the database RACEFLOW_REPLAY_DAY_URL
// names with the simulated day as the real flow stores it (default
// namespace, postgres backend), for measuring `raceflow replay` by hand
// (docs/BENCHMARKS.md). It is skipped unless that variable is set.
func TestProcessDayIntoDatabase(t *testing.T) {
	url := os.Getenv("RACEFLOW_REPLAY_DAY_URL")
	if url == "" {
		t.Skip("RACEFLOW_REPLAY_DAY_URL is not set: nothing to fill")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, migrations.Up(ctx, pool))
	pm, err := partitions.New(pool, partitions.DefaultConfig())
	require.NoError(t, err)
	require.NoError(t, pm.Ensure(ctx, time.Now()))
	processDay(t, pool, flows.DefaultConfig(), recordedDay(t))
}
