package main

import (
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nzday"
)

func TestRacesListsTheDaysTrackedRacesWithIDsNZTimesAndStatus(t *testing.T) {
	t.Parallel()
	sim, api := apiSim(t, 12)
	var want []string
	for _, m := range sim.Meetings() {
		if (m.Country == "NZ" || m.Country == "AUS") && (m.Category == "T" || m.Category == "H") {
			want = append(want, m.RaceIDs...)
		}
	}
	require.NotEmpty(t, want)
	sort.Strings(want)

	env := map[string]string{"NZTAB_API_URL": api}
	r := raceflow(t, env, "races", "--json", "--date", sim.Date())
	require.Equal(t, 0, r.code, r)
	var got []string
	var first raceLine
	for i, l := range lines(r.stdout) {
		var rl raceLine
		require.NoError(t, json.Unmarshal([]byte(l), &rl), l)
		if i == 0 {
			first = rl
		}
		got = append(got, rl.RaceID)
		require.Equal(t, "open", rl.Status, "the simulated day stands before its first race")
	}
	sort.Strings(got)
	require.Equal(t, want, got, "every race of the NZ and AUS horse meetings, and only those")

	info, err := sim.Race(first.RaceID)
	require.NoError(t, err)
	nz, err := time.Parse(time.RFC3339, first.StartTimeNZ)
	require.NoError(t, err)
	require.True(t, info.StartTime.Equal(nz), "%s is the race's start %s", first.StartTimeNZ, info.StartTime)
	_, offset := info.StartTime.In(nzday.Location()).Zone()
	_, got0 := nz.Zone()
	require.Equal(t, offset, got0, "start_time_nz carries the NZ offset")

	r = raceflow(t, env, "races", "--date", sim.Date())
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, first.RaceID)
	require.Contains(t, r.stdout, info.StartTime.In(nzday.Location()).Format("15:04 MST"))
	require.Contains(t, r.stdout, "START")
}

func TestRacesOnADayWithoutRacingSaysSo(t *testing.T) {
	t.Parallel()
	_, api := apiSim(t, 12)
	r := raceflow(t, map[string]string{"NZTAB_API_URL": api}, "races", "--date", "2001-01-01")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "no NZ or AUS thoroughbred or harness races on 2001-01-01")
}

func TestRacesWithAnUnreachableAPIFails(t *testing.T) {
	t.Parallel()
	r := raceflow(t, map[string]string{"NZTAB_API_URL": "http://127.0.0.1:1/affiliates/v1"}, "races")
	require.Equal(t, 1, r.code, r)
	require.Len(t, lines(r.stderr), 1, r)
	require.Contains(t, r.stderr, "raceflow races: ")
}
