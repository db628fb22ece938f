package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/natstest"
)

func TestDemoRunsTheRaceDayAndPrintsItsSummary(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"DATABASE_URL": freshDB(t), "RACEFLOW_HTTP_ADDR": "127.0.0.1:0"},
		"demo", "--minutes", "0.25", "--speed", "120", "--meetings", "2")
	require.Equal(t, 0, r.code, r)
	s := r.stdout
	require.Contains(t, s, "NZ TAB simulator: http://127.0.0.1:")
	require.Contains(t, s, "raceflow demo:")
	require.Contains(t, s, "metrics: http://127.0.0.1:")
	for _, want := range []string{"POLLS", "SUCCESS", "STAGE (ms)", "fetch", "transform", "write", "total", "money_flow_history", "odds_history"} {
		require.Contains(t, s, want)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	r := raceflow(t, nil, "frobnicate")
	require.Equal(t, 2, r.code, r)
	require.Contains(t, r.stderr, "unknown command")
}

func TestMigrateWithoutDatabaseURLSaysSo(t *testing.T) {
	t.Parallel()
	r := raceflow(t, nil, "migrate", "up")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "DATABASE_URL is not set")
}

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"RACEFLOW_PUBSUB": "carrier-pigeon"}, "migrate", "status")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "RACEFLOW_PUBSUB")
}

func TestPoisonCommandsWorkOnTheConfiguredNATSBackend(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	ns := natstest.Namespace(t, url)
	env := map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": url}
	r := raceflow(t, env, "poison", "list", "--namespace", ns, "--json")
	require.Equal(t, 0, r.code, r)
	require.Empty(t, r.stdout, "a flow that never ran has an empty poison queue")

	r = raceflow(t, env, "poison", "show", "--namespace", ns, "7")
	require.Equal(t, 3, r.code, "an id not in the poison queue is 'not found': %s", r)
	require.Contains(t, r.stderr, "not found")
}

func TestUnreachableNATSIsAClearError(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": "nats://raceflow:s3cret@127.0.0.1:1"}, "poison", "list")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "NATS is unavailable")
	require.NotContains(t, r.stderr, "s3cret", "secrets never reach the output")
}
