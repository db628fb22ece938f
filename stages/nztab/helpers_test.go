package nztab

import (
	"encoding/json"
	"github.com/raceflow/raceflow/internal/fixtures"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	testRaceID    = "0f57e087-00d9-4c61-9549-835abe2ae2ed"
	testMeetingID = "e9f2039d-d489-4a7d-aae1-d66225f1a5f4"
)

// fixtureDir finds the shared fixtures or skips the test.
func fixtureDir(tb testing.TB) string { tb.Helper(); return fixtures.MustDir(tb) }

// fixtureDirOrEmpty is fixtureDir without skipping, for optional fuzz seeds.
func fixtureDirOrEmpty() string { return fixtures.Dir() }

// readFixture returns a fixture's bytes or skips the test when absent.
func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	p := filepath.Join(fixtureDir(tb), name)
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Skipf("fixtures not found at %s: %v", p, err)
	}
	return b
}

// obj is a JSON object under construction.
type obj = map[string]any

// validEvent returns a fresh, small, valid event payload that tests mutate.
func validEvent() obj {
	return obj{
		"header": obj{"title": "Event Details", "generated_time": "2025-07-17T11:16:59.18904298Z", "url": "/affiliates/v1/racing/events/x"},
		"data": obj{
			"race": obj{
				"event_id":         testRaceID,
				"meeting_id":       testMeetingID,
				"description":      "PRYDA HANDICAP 1700",
				"race_number":      1,
				"status":           "Open",
				"advertised_start": 1752713400,
			},
			"runners": []any{
				obj{"entrant_id": "e1", "name": "One", "runner_number": 1,
					"odds": obj{"fixed_win": 5, "fixed_place": 1.8, "pool_win": 4.4, "pool_place": 1.5}},
				obj{"entrant_id": "e2", "name": "Two", "runner_number": 2,
					"odds": obj{"fixed_win": 7.5, "fixed_place": nil, "pool_win": 6.6, "pool_place": 1.7}},
			},
			"money_tracker": obj{"entrants": []any{
				obj{"entrant_id": "e1", "hold_percentage": 60, "bet_percentage": 55},
				obj{"entrant_id": "e2", "hold_percentage": 40, "bet_percentage": 45},
			}},
			"tote_pools": []any{obj{"product_type": "Win", "total": 9151.38, "status": "OPEN"}},
			"dividends":  []any{obj{"id": "d1", "product_name": "Pool Win", "dividend": 6.6, "pool_size": 9151.38, "jackpot_size": 0}},
			"error":      "",
			"big_bets":   []any{obj{"unknown": true}},
		},
	}
}

func dataOf(m obj) obj { return m["data"].(obj) }
func raceOf(m obj) obj { return dataOf(m)["race"].(obj) }
func runnerOf(m obj, i int) obj {
	return dataOf(m)["runners"].([]any)[i].(obj)
}

// eventBody builds a valid event, applies mutate and marshals it.
func eventBody(tb testing.TB, mutate func(obj)) []byte {
	tb.Helper()
	m := validEvent()
	if mutate != nil {
		mutate(m)
	}
	b, err := json.Marshal(m)
	require.NoError(tb, err)
	return b
}
