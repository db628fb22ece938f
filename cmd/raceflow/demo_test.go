package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testApp(env map[string]string) (*app, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &app{stdin: &bytes.Buffer{}, stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }}, &out, &errOut
}

func TestDemoRunsTheRaceDayAndPrintsItsSummary(t *testing.T) {
	t.Parallel()
	_, dsn := pgtest.NewEmpty(t)
	a, out, errOut := testApp(map[string]string{"DATABASE_URL": dsn, "RACEFLOW_HTTP_ADDR": "127.0.0.1:0"})
	code := a.main(context.Background(), []string{"demo", "--minutes", "0.25", "--speed", "120", "--meetings", "2"})
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	s := out.String()
	require.Contains(t, s, "NZ TAB simulator: http://127.0.0.1:")
	require.Contains(t, s, "raceflow demo:")
	require.Contains(t, s, "metrics: http://127.0.0.1:")
	for _, want := range []string{"POLLS", "SUCCESS", "STAGE (ms)", "fetch", "transform", "write", "total", "money_flow_history", "odds_history"} {
		require.Contains(t, s, want)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	a, _, errOut := testApp(nil)
	require.Equal(t, 2, a.main(context.Background(), []string{"frobnicate"}))
	require.Contains(t, errOut.String(), "unknown command")
}

func TestMigrateWithoutDatabaseURLSaysSo(t *testing.T) {
	t.Parallel()
	a, _, errOut := testApp(nil)
	require.Equal(t, 1, a.main(context.Background(), []string{"migrate", "up"}))
	require.Contains(t, errOut.String(), "DATABASE_URL is not set")
}

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	t.Parallel()
	a, _, errOut := testApp(map[string]string{"RACEFLOW_PUBSUB": "carrier-pigeon"})
	require.Equal(t, 1, a.main(context.Background(), []string{"migrate", "status"}))
	require.Contains(t, errOut.String(), "RACEFLOW_PUBSUB")
}

func TestPoisonCommandsWorkOnTheConfiguredNATSBackend(t *testing.T) {
	t.Parallel()
	url := natstest.URL(t)
	ns := natstest.Namespace(t, url)
	a, out, errOut := testApp(map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": url})
	code := a.main(context.Background(), []string{"poison", "list", "--namespace", ns, "--json"})
	require.Equal(t, 0, code, "stderr:\n%s", errOut.String())
	require.Empty(t, out.String(), "a flow that never ran has an empty poison queue")

	a, _, errOut = testApp(map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": url})
	require.Equal(t, 1, a.main(context.Background(), []string{"poison", "show", "--namespace", ns, "7"}))
	require.Contains(t, errOut.String(), "not found")
}

func TestUnreachableNATSIsAClearError(t *testing.T) {
	t.Parallel()
	a, _, errOut := testApp(map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": "nats://raceflow:s3cret@127.0.0.1:1"})
	require.Equal(t, 1, a.main(context.Background(), []string{"poison", "list"}))
	require.Contains(t, errOut.String(), "NATS is unavailable")
	require.NotContains(t, errOut.String(), "s3cret", "secrets never reach the output")
}
