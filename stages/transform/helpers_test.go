package transform

import (
	"encoding/json"
	"github.com/raceflow/raceflow/internal/fixtures"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nztab"
)

// fixtureDir finds the shared NZ TAB fixtures or skips the test.
func fixtureDir(tb testing.TB) string { tb.Helper(); return fixtures.MustDir(tb) }

// fixtureBytes reads one fixture file, skipping when it is absent.
func fixtureBytes(tb testing.TB, name string) []byte {
	tb.Helper()
	p := filepath.Join(fixtureDir(tb), name)
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Skipf("fixtures not found at %s: %v", p, err)
	}
	return b
}

func decodeEvent(tb testing.TB, b []byte) *nztab.EventResponse {
	tb.Helper()
	var ev nztab.EventResponse
	require.NoError(tb, json.Unmarshal(b, &ev))
	return &ev
}

func ptr[T any](v T) *T { return &v }

// testStart is the advertised start of every synthetic race:
// 2025-07-17T00:50:00Z, the real sample's start.
var testStart = time.Date(2025, 7, 17, 0, 50, 0, 0, time.UTC)

// baseEvent is a small, valid, open race: two runners with odds, money
// tracker rows and Win/Place tote pools. Tests mutate a fresh copy.
func baseEvent() *nztab.EventResponse {
	return &nztab.EventResponse{
		Header: nztab.Header{GeneratedTime: "2025-07-17T00:40:00.123456789Z"},
		Data: nztab.EventData{
			Race: nztab.Race{
				EventID:         "race-1",
				MeetingID:       "meeting-1",
				MeetingName:     "Testville",
				Description:     "TEST HANDICAP",
				RaceNumber:      3,
				Status:          "Open",
				AdvertisedStart: testStart.Unix(),
				RaceDateNZ:      "2025-07-17",
				StartTimeNZ:     "12:50:00 NZST",
				Type:            "T",
				Country:         "NZ",
				State:           "NZ",
			},
			Runners: []nztab.Runner{
				{EntrantID: "e-2", Name: "Beta", RunnerNumber: 2, Barrier: ptr(1),
					Odds: nztab.Odds{FixedWin: ptr(3.0), FixedPlace: ptr(1.5), PoolWin: ptr(3.2), PoolPlace: ptr(1.4)}},
				{EntrantID: "e-1", Name: "Alpha", RunnerNumber: 1, Barrier: ptr(2),
					Odds: nztab.Odds{FixedWin: ptr(2.0), FixedPlace: ptr(1.2)}},
			},
			MoneyTracker: &nztab.MoneyTracker{Entrants: []nztab.MoneyTrackerEntry{
				{EntrantID: "e-1", HoldPercentage: 40, BetPercentage: 30},
				{EntrantID: "e-2", HoldPercentage: 50, BetPercentage: 60},
				{EntrantID: "e-1", HoldPercentage: 10, BetPercentage: 10},
			}},
			TotePools: []nztab.TotePool{
				{ProductType: "Win", Total: 1000},
				{ProductType: "Place", Total: 500},
			},
		},
	}
}
