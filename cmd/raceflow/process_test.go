package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
)

// processEnv is the environment of a process run on a fresh database
// against api.
func processEnv(t *testing.T, api string) map[string]string {
	t.Helper()
	return map[string]string{"DATABASE_URL": freshDB(t), "NZTAB_API_URL": api, "LOG_LEVEL": "error"}
}

// jsonResults decodes process --json output, one result per line.
func jsonResults(t *testing.T, out string) []handlers.ProcessResult {
	t.Helper()
	var rs []handlers.ProcessResult
	for _, l := range lines(out) {
		var r handlers.ProcessResult
		require.NoError(t, json.Unmarshal([]byte(l), &r), l)
		rs = append(rs, r)
	}
	return rs
}

func TestProcessTakesFlagsBeforeOrAfterTheRaceAndPrintsTheSameJSON(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 5)
	race := sim.Races()[0].ID
	after := raceflow(t, processEnv(t, api), "process", race, "--json")
	before := raceflow(t, processEnv(t, api), "process", "--json", race)
	require.Equal(t, 0, after.code, after)
	require.Equal(t, 0, before.code, before)
	normal := func(out string) []handlers.ProcessResult {
		rs := jsonResults(t, out)
		for i := range rs { // the instant of the poll and how long it took differ
			require.True(t, strings.HasPrefix(rs[i].PollID, race), rs[i].PollID)
			rs[i].PollID, rs[i].Timings = "", handlers.Timings{}
		}
		return rs
	}
	got := normal(after.stdout)
	require.Len(t, got, 1)
	require.Equal(t, handlers.StatusSuccess, got[0].Status)
	require.Positive(t, got[0].Rows.Entrants)
	require.Equal(t, got, normal(before.stdout), "the same poll on the same day prints the same line")
}

func TestProcessTakesFlagsBetweenAndAfterSeveralRaces(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 6)
	a, b := sim.Races()[0].ID, sim.Races()[1].ID
	r := raceflow(t, processEnv(t, api), "process", a, b, "--concurrency", "2", "--json", "--timeout", "1m")
	require.Equal(t, 0, r.code, r)
	rs := jsonResults(t, r.stdout)
	require.Len(t, rs, 2, "two races, never a race called --concurrency")
	require.Equal(t, []string{a, b}, []string{rs[0].RaceID, rs[1].RaceID})

	r = raceflow(t, processEnv(t, api), "process", "--json", "--", a)
	require.Equal(t, 0, r.code, "-- ends the flags: %s", r)
	require.Len(t, jsonResults(t, r.stdout), 1)
}

func TestProcessExitCodeSaysWhetherEveryRaceWasProcessed(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 7)
	good := sim.Races()[0].ID
	broken, brokenAPI := apiSim(t, 8)
	require.NoError(t, broken.SetFaults(nztabsim.Faults{MalformedRate: 1}))
	tests := []struct {
		name   string
		api    string
		races  []string
		code   int
		status []string
	}{
		{"every race processed", api, []string{good}, 0, []string{handlers.StatusSuccess}},
		{"a race the API does not know", api, []string{"no-such-race"}, 3, []string{handlers.StatusSkipped}},
		{"processed and unknown", api, []string{good, "no-such-race"}, 3, []string{handlers.StatusSuccess, handlers.StatusSkipped}},
		{"an API that cannot be reached", "http://127.0.0.1:1/affiliates/v1", []string{good}, 3, []string{handlers.StatusSkipped}},
		{"a payload that fails for good", brokenAPI, []string{broken.Races()[0].ID, "no-such-race"}, 1, []string{handlers.StatusFailed, handlers.StatusSkipped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, processEnv(t, tt.api), append([]string{"process", "--json"}, tt.races...)...)
			require.Equal(t, tt.code, r.code, r)
			var status []string
			for _, res := range jsonResults(t, r.stdout) {
				status = append(status, res.Status)
			}
			require.Equal(t, tt.status, status)
			if tt.code != 0 {
				require.Len(t, lines(r.stderr), 1, "one line says why: %s", r)
			}
		})
	}
}

func TestProcessThenReplayAndPoisonSeeTheSameFlow(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 9)
	env := processEnv(t, api)
	race := sim.Races()[0].ID
	r := raceflow(t, env, "process", race)
	require.Equal(t, 0, r.code, r)

	r = raceflow(t, env, "replay")
	require.Equal(t, 0, r.code, "replay with no flags replays what process fetched: %s", r)
	require.Regexp(t, `polls replayed\s+1 of 1 races`, r.stdout)
	r = raceflow(t, env, "replay", "--rebuild", "--race", race)
	require.Equal(t, 0, r.code, "a rebuild of the race re-derives it: %s", r)
	require.Regexp(t, `\(complete, rebuild\)`, r.stdout)
	require.Regexp(t, `polls replayed\s+1 of 1 races`, r.stdout)
	require.Regexp(t, `race_polls\s+1\n`, r.stdout, "its ledger row was emptied and written again")

	broken, brokenAPI := apiSim(t, 10)
	require.NoError(t, broken.SetFaults(nztabsim.Faults{MalformedRate: 1}))
	env["NZTAB_API_URL"] = brokenAPI
	bad := broken.Races()[0].ID
	r = raceflow(t, env, "process", bad)
	require.Equal(t, 1, r.code, r)

	r = raceflow(t, env, "poison", "list", "--json")
	require.Equal(t, 0, r.code, r)
	msgs := lines(r.stdout)
	require.Len(t, msgs, 1, "the poll process poisoned is in the flow's poison queue: %s", r)
	require.Contains(t, msgs[0], bad)
	require.Contains(t, msgs[0], "malformed_json")
}

func TestProcessLogsRoundedDurations(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 11)
	env := processEnv(t, api)
	env["LOG_LEVEL"], env["LOG_FORMAT"] = "info", "json"
	r := raceflow(t, env, "process", sim.Races()[0].ID)
	require.Equal(t, 0, r.code, r)
	var end map[string]any
	for _, l := range lines(r.stderr) {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &entry), l)
		// "pipeline end", or "pipeline end: slow poll" on a busy machine.
		if msg, _ := entry["msg"].(string); strings.HasPrefix(msg, "pipeline end") {
			end = entry
		}
	}
	require.NotNil(t, end, "no pipeline end logged:\n%s", r.stderr)
	n := 0
	for k, v := range end {
		if !strings.HasSuffix(k, "_ms") {
			continue
		}
		ms, ok := v.(float64)
		require.True(t, ok, "%s=%v", k, v)
		require.InDelta(t, math.Round(ms*10), ms*10, 1e-6, "%s=%v is not rounded to 0.1 ms", k, v)
		n++
	}
	require.GreaterOrEqual(t, n, 5, "fetch, transform, write, queue and duration: %v", end)
}
