package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// transformEvent is a small event payload the flow accepts; mutate edits
// its race before it is encoded.
func transformEvent(t *testing.T, mutate func(race map[string]any)) string {
	t.Helper()
	race := map[string]any{
		"event_id":         "0f57e087-00d9-4c61-9549-835abe2ae2ed",
		"meeting_id":       "e9f2039d-d489-4a7d-aae1-d66225f1a5f4",
		"description":      "PRYDA HANDICAP 1700",
		"race_number":      1,
		"status":           "Open",
		"advertised_start": 1752713400,
	}
	if mutate != nil {
		mutate(race)
	}
	b, err := json.Marshal(map[string]any{"data": map[string]any{
		"race": race,
		"runners": []any{
			map[string]any{"entrant_id": "e1", "name": "One", "runner_number": 1, "odds": map[string]any{"fixed_win": 5, "pool_win": 4.4}},
			map[string]any{"entrant_id": "e2", "name": "Two", "runner_number": 2, "odds": map[string]any{"fixed_win": 7.5, "pool_win": 6.6}},
		},
		"money_tracker": map[string]any{"entrants": []any{
			map[string]any{"entrant_id": "e1", "hold_percentage": 60, "bet_percentage": 55},
			map[string]any{"entrant_id": "e2", "hold_percentage": 40, "bet_percentage": 45},
		}},
		"tote_pools": []any{map[string]any{"product_type": "Win", "total": 9151.38, "status": "OPEN"}},
	}})
	require.NoError(t, err)
	return string(b)
}

func TestTransformPrintsTheSnapshotOfAPayloadTheFlowAccepts(t *testing.T) {
	t.Parallel()
	r := raceflowIn(t, nil, transformEvent(t, nil), "transform", "--at", "2025-07-17T00:40:00Z")
	require.Equal(t, 0, r.code, r)
	var snap struct {
		Race struct {
			RaceID string `json:"race_id"`
		} `json:"race"`
		MoneyFlow []struct {
			EntrantID string `json:"entrant_id"`
		} `json:"money_flow"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &snap), r)
	require.Equal(t, "0f57e087-00d9-4c61-9549-835abe2ae2ed", snap.Race.RaceID)
	require.Len(t, snap.MoneyFlow, 2)
}

func TestTransformRefusesWhatTheFlowRefusesWithTheFlowsError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stdin string
		want  string
	}{
		{"not JSON", "<html>busy</html>", "nztab: decode event at offset 0"},
		{"a value of the wrong type", transformEvent(t, func(r map[string]any) { r["advertised_start"] = "soon" }), "field data.race.advertised_start"},
		{"no meeting", transformEvent(t, func(r map[string]any) { delete(r, "meeting_id") }), "data.race.meeting_id: must be non-empty"},
		{"an unknown status", transformEvent(t, func(r map[string]any) { r["status"] = "Postponed" }), `unknown race status "Postponed"`},
		{"larger than the flow accepts", `{"data":{"race":{"description":"` + strings.Repeat("x", 5<<20) + `"}}}`, "larger than the flow accepts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflowIn(t, nil, tt.stdin, "transform")
			require.Equal(t, 1, r.code, r)
			require.Empty(t, r.stdout, r)
			require.Contains(t, r.stderr, tt.want, r)
		})
	}
}
