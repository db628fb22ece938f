package flows_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// alertsBacklog is how many alerts wait in the flow's alerts topic.
func alertsBacklog(t *testing.T, cfg flows.Config, db *pgtest.DB) int64 {
	t.Helper()
	drv, err := flows.OpenDriver(cfg, db.Pool, logrus.New())
	require.NoError(t, err)
	defer func() { require.NoError(t, drv.Close()) }()
	stats, err := drv.QueueStats(context.Background())
	require.NoError(t, err)
	for _, s := range stats {
		if s.Topic == driver.AlertsTopic(cfg.Namespace) {
			return s.Backlog
		}
	}
	return 0
}

func TestReplayOfAPlungedDayStoresTheSameAlertsAndNotifiesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	day, _ := plungedDay(t)
	db := alertDB(t)
	rcv := newGatedReceiver(t)
	close(rcv.open)
	cfg := alertFlowConfig(t, config.BackendPostgres, rcv)
	e, ctx, stop := startDayFlow(t, cfg, db, day)
	_, stored := processDay(t, ctx, e, day)
	want := pgtest.Rows(t, db.Pool, "alerts")
	require.Len(t, want, stored)
	require.NotZero(t, stored, "the plunge fires alerts")
	ids := alertIDs(t, db)
	rcv.waitDelivered(t, ids, 1)
	stop()

	// Replayed into emptied tables while no flow runs, so the alerts topic
	// keeps whatever a replay publishes for delivery.
	replayer, err := flows.New(cfg, flows.Deps{Pool: db.Pool, Fetcher: newDayFetcher(day), Logger: logrus.New()})
	require.NoError(t, err)
	empty := func() {
		_, err := db.Pool.Exec(context.Background(), "TRUNCATE "+strings.Join(pgtest.DomainTables(), ", ")+" CASCADE")
		require.NoError(t, err)
	}
	empty()
	sum, err := replayer.Replay(context.Background(), replay.DefaultConfig(), nil)
	require.NoError(t, err)
	require.Equal(t, stored, sum.Alerts)
	require.Zero(t, sum.Notified)
	require.Empty(t, pgtest.DiffRows(want, pgtest.Rows(t, db.Pool, "alerts"), 10), "the same alerts, field for field")
	require.Zero(t, alertsBacklog(t, cfg, db), "no alert is sent for delivery without --notify")

	empty()
	rc := replay.DefaultConfig()
	rc.Notify = true
	sum, err = replayer.Replay(context.Background(), rc, nil)
	require.NoError(t, err)
	require.Equal(t, stored, sum.Notified)
	require.Empty(t, pgtest.DiffRows(want, pgtest.Rows(t, db.Pool, "alerts"), 10))
	require.Equal(t, int64(stored), alertsBacklog(t, cfg, db), "--notify sends each alert for delivery")
	// A flow started on the namespace delivers them, with the alerts' ids
	// (each one's idempotency key).
	startDayFlow(t, cfg, db, day)
	rcv.waitDelivered(t, ids, 2)
}

// alertIDs are the stored alerts' ids.
func alertIDs(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT alert_id::text FROM alerts`)
	require.NoError(t, err)
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}
