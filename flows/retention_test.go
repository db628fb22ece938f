package flows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
)

func TestPruneDeletesOnlyAckedStoredPollsOlderThanTheWindow(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop := h.start(t) // creates the stored topic tables; stopped so nothing consumes the rows below
	stop()
	ctx := context.Background()
	now := time.Now()
	const retention = 7 * 24 * time.Hour
	rows := []struct {
		name  string
		shard int
		age   time.Duration
		acked bool
		kept  bool
	}{
		{"old acked", 0, 8 * 24 * time.Hour, true, false},
		{"old acked 2", 0, 9 * 24 * time.Hour, true, false},
		{"old acked 3", 0, 30 * 24 * time.Hour, true, false},
		{"just outside the window", 1, retention + time.Minute, true, false},
		{"just inside the window", 1, retention - time.Minute, true, true},
		{"recent acked", 0, time.Hour, true, true},
		{"old unacked", 0, 30 * 24 * time.Hour, false, true},
		{"old unacked elsewhere", 1, 8 * 24 * time.Hour, false, true},
		{"recent unacked", 1, time.Minute, false, true},
	}
	for i, r := range rows {
		_, err := h.db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO "watermill_race.fetched.%d" (uuid, payload, metadata, acked, created_at)
			VALUES ($1, '\x00', $2, $3, $4)`, r.shard), fmt.Sprintf("00000000-0000-0000-0000-%012d", i),
			fmt.Sprintf(`{"case": %q}`, r.name), r.acked, now.Add(-r.age))
		require.NoError(t, err)
	}
	cfg := flows.DefaultPrunerConfig()
	cfg.Retention = retention
	cfg.BatchSize = 2 // several batches in shard 0
	p, err := flows.NewPruner(cfg, openDriver(t, h.cfg, h.db.Pool), h.log, nil)
	require.NoError(t, err)

	n, err := p.PruneOnce(ctx, now)
	require.NoError(t, err)
	want := 0
	for _, r := range rows {
		if !r.kept {
			want++
		}
	}
	require.EqualValues(t, want, n)
	for _, r := range rows {
		left := h.count(t, fmt.Sprintf(`SELECT count(*) FROM "watermill_race.fetched.%d" WHERE metadata->>'case' = $1`, r.shard), r.name)
		if r.kept {
			require.Equal(t, 1, left, "%s kept", r.name)
		} else {
			require.Zero(t, left, "%s pruned", r.name)
		}
	}

	again, err := p.PruneOnce(ctx, now)
	require.NoError(t, err)
	require.Zero(t, again, "nothing left to prune")
}

func TestPrunerRunPrunesAtOnceAndStopsWithItsContext(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop := h.start(t)
	stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := h.db.Pool.Exec(ctx, `INSERT INTO "watermill_race.fetched.2" (uuid, payload, metadata, acked, created_at)
		VALUES ('00000000-0000-0000-0000-000000000001', '\x00', '{}', true, now() - interval '8 days')`)
	require.NoError(t, err)
	p, err := flows.NewPruner(flows.DefaultPrunerConfig(), openDriver(t, h.cfg, h.db.Pool), h.log, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	require.Eventually(t, func() bool {
		return h.count(t, `SELECT count(*) FROM "watermill_race.fetched.2"`) == 0
	}, 30*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestPrunerConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(c *flows.PrunerConfig)
		ok     bool
	}{
		{"default", func(*flows.PrunerConfig) {}, true},
		{"no retention", func(c *flows.PrunerConfig) { c.Retention = 0 }, false},
		{"no batch", func(c *flows.PrunerConfig) { c.BatchSize = 0 }, false},
		{"no interval", func(c *flows.PrunerConfig) { c.Interval = 0 }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := flows.DefaultPrunerConfig()
			tc.mutate(&c)
			if tc.ok {
				require.NoError(t, c.Validate())
			} else {
				require.Error(t, c.Validate())
			}
		})
	}
}
