package main

import (
	"os"
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

func TestDemoShowsWhereTheMoneyWentInEachFinishedRace(t *testing.T) {
	t.Parallel()
	// Half an hour of racing in 30 s: the meeting's first race finishes. A
	// faster clock would take less time but, on a busy machine, lets the
	// polls fall minutes of racing behind the plunge.
	r := raceflow(t, map[string]string{"DATABASE_URL": freshDB(t), "RACEFLOW_HTTP_ADDR": "127.0.0.1:0"},
		"demo", "--minutes", "0.5", "--speed", "60", "--meetings", "1")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "FINISHED RACES")
	// e.g. "Hastings R1  final  #4 Shining Harbour 29%, #2 Flying Charm 20%, #1 Northern Echo 18%  #1 Northern Echo +$344.42 at 1 min"
	require.Regexp(t, `(?m)^.+ R\d+\s+(final|interim)\s+#\d+ [^,]+ \d+%, #\d+ [^,]+ \d+%, #\d+ .+ \d+%\s+(#\d+ .+ \+\$[\d,]+\.\d\d at \d+ min|-)$`, r.stdout)
	require.Regexp(t, `latency target: total p95 \d+\.\d ms (≤|>) 500 ms: (met|MISSED)`, r.stdout)
	// The plunge staged 3 minutes before the first race's start, and the
	// alerts it fired, listed as they fired.
	require.Regexp(t, `plunge staged: .+ R\d+, \$[\d]+ on runner \d+ at \d\d:\d\d:\d\d NZ, 3m0s before the start`, r.stdout)
	require.Contains(t, r.stdout, "ALERTS of the day")
	// Which rules fire depends on the polls the scheduler made around the
	// plunge (on a busy machine sometimes none shortly before it);
	// the rules themselves are tested in stages/alerts and flows.
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d  .+ R\d+ (#\d+ .+ (steamer|late money)|pool surge): .+ 3 min before the start$`, r.stdout)
}

func TestDemoInterruptedPrintsWhatWasDoneAndExitsZero(t *testing.T) {
	t.Parallel()
	p := start(t, map[string]string{"DATABASE_URL": freshDB(t), "RACEFLOW_HTTP_ADDR": "127.0.0.1:0"},
		"demo", "--meetings", "1")
	p.waitFor(t, "races tracked") // the first progress line: the flow runs
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	r := p.wait(t)
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "real time, interrupted")
	for _, want := range []string{"POLLS", "STAGE (ms)", "latency target: total p95", "money_flow_history"} {
		require.Contains(t, r.stdout, want)
	}
	require.NotContains(t, r.stderr, "context canceled")
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
