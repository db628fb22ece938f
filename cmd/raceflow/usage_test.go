package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEveryUsageErrorIsOneLineSayingWhatAndWhereHelpIs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // what is wrong
		help string // the command whose help is named
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`, "raceflow"},
		{"unknown flag at the root", []string{"--bogus"}, "unknown flag: --bogus", "raceflow"},
		{"process without a race", []string{"process"}, "RACE_ID is needed", "raceflow process"},
		{"process with an unknown flag after the race", []string{"process", "R1", "--jsn"}, "unknown flag: --jsn", "raceflow process"},
		{"process with a lone dash", []string{"process", "R1", "-"}, `"-" is not a flag`, "raceflow process"},
		{"process with an unknown shorthand", []string{"process", "-j", "R1"}, "unknown shorthand flag: 'j'", "raceflow process"},
		{"process with a bad concurrency", []string{"process", "R1", "--concurrency", "0"}, "--concurrency must be at least 1", "raceflow process"},
		{"a bad flag value of the configuration", []string{"process", "R1", "--shards", "0"}, `--shards="0": must be between 1 and 256`, "raceflow process"},
		{"replay from yesterday", []string{"replay", "--from", "yesterday"}, `--from: "yesterday" is not`, "raceflow replay"},
		{"replay from a duration", []string{"replay", "--from", "2h"}, `--from: "2h" is not`, "raceflow replay"},
		{"replay to an impossible day", []string{"replay", "--to", "2026-13-45"}, `--to: "2026-13-45" is not`, "raceflow replay"},
		{"replay with an argument", []string{"replay", "R1"}, `unexpected argument "R1"`, "raceflow replay"},
		{"demo for no minutes", []string{"demo", "--minutes", "0"}, "--minutes must be positive", "raceflow demo"},
		{"demo with a non-number", []string{"demo", "--minutes", "soon"}, `invalid argument "soon" for "--minutes"`, "raceflow demo"},
		{"migrate without an action", []string{"migrate"}, "a migrate action is needed: one of down, status, up, version", "raceflow migrate"},
		{"migrate sideways", []string{"migrate", "sideways"}, `unknown migrate action "sideways"`, "raceflow migrate"},
		{"poison without a subcommand", []string{"poison"}, "a poison subcommand is needed", "raceflow poison"},
		{"poison show without an id", []string{"poison", "show"}, "an ID is needed", "raceflow poison show"},
		{"poison show of a non-number", []string{"poison", "show", "seven"}, `ID "seven" is not a number`, "raceflow poison show"},
		{"poison list with a bad duration", []string{"poison", "list", "--since", "lately"}, "not a duration", "raceflow poison list"},
		{"poison purge without a cutoff", []string{"poison", "purge"}, "--older-than is needed", "raceflow poison purge"},
		{"poison requeue of nothing", []string{"poison", "requeue"}, "give IDs, --race or --all", "raceflow poison requeue"},
		{"races on a bad date", []string{"races", "--date", "tomorrow"}, `--date "tomorrow"`, "raceflow races"},
		{"help on an unknown topic", []string{"help", "frobnicate"}, `unknown help topic "frobnicate"`, "raceflow"},
		{"transform at a bad time", []string{"transform", "--at", "noon"}, `--at "noon"`, "raceflow transform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, nil, tt.args...)
			require.Equal(t, 2, r.code, r)
			require.Empty(t, r.stdout, r)
			require.Len(t, lines(r.stderr), 1, r)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "(see '"+tt.help+" --help')")
		})
	}
}

func TestHelpIsThereHoweverItIsAskedFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "Available Commands:"},
		{"--help", []string{"--help"}, "Available Commands:"},
		{"-h", []string{"-h"}, "Available Commands:"},
		{"help", []string{"help"}, "Available Commands:"},
		{"help process", []string{"help", "process"}, "raceflow process RACE_ID... [flags]"},
		{"process --help", []string{"process", "--help"}, "raceflow process RACE_ID... [flags]"},
		{"process -h after a race", []string{"process", "R1", "-h"}, "raceflow process RACE_ID... [flags]"},
		{"help poison list", []string{"help", "poison", "list"}, "raceflow poison list"},
		{"migrate up --help", []string{"migrate", "up", "--help"}, "raceflow migrate up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, nil, tt.args...)
			require.Equal(t, 0, r.code, r)
			require.Empty(t, r.stderr)
			require.Contains(t, r.stdout, tt.want)
			require.Contains(t, r.stdout, "Exit codes:", "every help says what the exit codes mean")
		})
	}
}

func TestEachCommandsHelpListsOnlyTheFlagsItUses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cmd        []string
		want, none []string
	}{
		{[]string{"migrate", "up"}, []string{"--database-url"}, []string{"--api-url", "--namespace", "--backend", "--http-addr", "--shards"}},
		{[]string{"process"}, []string{"--json", "--concurrency", "--namespace", "--database-url", "--api-url", "--backend"}, []string{"--http-addr", "--drain-timeout"}},
		{[]string{"run"}, []string{"--drain-timeout", "--http-addr", "--namespace", "--api-url", "--alert-webhook-url", "--alert-late-ratio"}, []string{"--json", "--concurrency"}},
		{[]string{"replay"}, []string{"--from", "--rebuild", "--notify", "--alert-late-ratio", "--namespace", "--database-url"}, []string{"--api-url", "--http-addr", "--alert-webhook-url"}},
		{[]string{"poison", "list"}, []string{"--since", "--namespace", "--backend"}, []string{"--api-url", "--http-addr", "--shards"}},
		{[]string{"races"}, []string{"--date", "--json", "--api-url"}, []string{"--database-url", "--namespace"}},
		{[]string{"simulate"}, []string{"--addr", "--seed"}, []string{"--database-url", "--api-url", "--namespace"}},
		{[]string{"transform"}, []string{"--at"}, []string{"--database-url", "--api-url"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.cmd, " "), func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, nil, append(tt.cmd, "--help")...)
			require.Equal(t, 0, r.code, r)
			for _, f := range tt.want {
				require.Contains(t, r.stdout, f)
			}
			for _, f := range tt.none {
				require.NotContains(t, r.stdout, f)
			}
		})
	}
}

func TestProcessHelpShowsTheSharedNamespaceAndItsVariable(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"RACEFLOW_NAMESPACE": "night"}, "process", "--help")
	require.Equal(t, 0, r.code, r)
	require.Regexp(t, `--namespace string\s+the flow's topic namespace: run, process, replay and poison share it \(env RACEFLOW_NAMESPACE\) \(default "night"\)`, r.stdout)
	require.NotContains(t, r.stdout, "-namespace raceflow run")
}

func TestNoSecretInHelpOrErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL": "postgres://root:s3cretPW@127.0.0.1:1/race",
		"NATS_URL":     "nats://raceflow:n4tsPW@127.0.0.1:1",
	}
	bad := map[string]string{"DATABASE_URL": "postgres://root:s3cretPW@127.0.0.1:1/race?sslmode=bogus"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"run --help", env, []string{"run", "--help"}, 0},
		{"process --help", env, []string{"process", "--help"}, 0},
		{"poison list --help", env, []string{"poison", "list", "--help"}, 0},
		{"a flag typo", env, []string{"run", "--http-adr", ":1"}, 2},
		{"an unreachable database", env, []string{"migrate", "status"}, 1},
		{"a bad sslmode", bad, []string{"migrate", "status"}, 1},
		{"a bad sslmode given as a flag", nil, []string{"migrate", "status", "--database-url", bad["DATABASE_URL"]}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, tt.env, tt.args...)
			require.Equal(t, tt.code, r.code, r)
			for _, secret := range []string{"s3cretPW", "n4tsPW"} {
				require.NotContains(t, r.stdout+r.stderr, secret)
			}
		})
	}
}

func TestABadSSLModeSaysWhatIsWrong(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"DATABASE_URL": "postgres://root:s3cretPW@127.0.0.1:1/race?sslmode=bogus"}, "migrate", "status")
	require.Equal(t, 1, r.code, r)
	require.Equal(t, `raceflow migrate status: DATABASE_URL="postgres://root:xxxxx@127.0.0.1:1/race?sslmode=bogus": failed to configure TLS (sslmode is invalid)`+"\n", r.stderr)
}

func TestVersionNamesTheModuleTheCommitAndGo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := raceflow(t, nil, args...)
		require.Equal(t, 0, r.code, r)
		require.Regexp(t, `^raceflow \S+\ncommit   \S+.*\ngo       go1\.\d+`, r.stdout)
	}
}
