package transform

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nztab"
)

const fullEventFixture = "race-event-full-response.json"

// goldenObservedAt is 3.5 minutes before the sample's advertised start, the
// docs/DOMAIN.md §2.5 example that rounds up to time_to_start 4.
var goldenObservedAt = time.Date(2025, 7, 17, 0, 46, 30, 0, time.UTC)

func goldenSnapshot(t *testing.T) RaceSnapshot {
	t.Helper()
	ev := decodeEvent(t, fixtureBytes(t, fullEventFixture))
	s, err := Transform(ev, goldenObservedAt)
	require.NoError(t, err)
	return s
}

func TestGoldenRacePoolsMatchDomainWorkedExample(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	require.Equal(t, &RacePools{
		RaceID:            "0f57e087-00d9-4c61-9549-835abe2ae2ed",
		WinPoolTotal:      915138,
		PlacePoolTotal:    392351,
		QuinellaPoolTotal: 534106,
		TrifectaPoolTotal: 797624,
		ExactaPoolTotal:   0,
		First4PoolTotal:   461792,
		TotalRacePool:     3913672, // includes the unknown EarlyQuadrella
		Currency:          "$",
		DataQualityScore:  95,
		ExtractedPools:    6,
		Source:            SourceTotePools,
	}, s.RacePools)
	require.Equal(t, 1, s.Quality.UnknownPoolTypes)
}

func TestGoldenMoneyFlowSumsTrackerRowsPerRunner(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	// docs/DOMAIN.md §2.2: Σhold, Σbet and the cents amounts per runner. Win and
	// place pool percentages come out equal to hold to 2 decimals.
	want := []struct {
		number     int
		name       string
		hold, bet  float64
		win, place int64
		entrantID  string
	}{
		{1, "Tickford", 18, 14, 164725, 70623, "61181b8c-a540-43a8-900c-83ebe680e218"},
		{2, "Frosbie", 13, 14, 118968, 51006, "a8cc87d4-5a53-47b2-bb26-58d555aac7c0"},
		{3, "Dealers Choice", 5, 9, 45757, 19618, "677c1727-e256-48a4-9016-a07e10d65edc"},
		{4, "Ruji", 16, 17, 146422, 62776, "7346bd2c-c03d-41c3-bcb9-2b085c4e72cd"},
		{5, "Starpello", 16, 17, 146422, 62776, "f2f0758e-2e1f-4f14-aece-0b894334bcf8"},
		{6, "Keepitinyourwallet", 19, 19, 173876, 74547, "8f3f3ac0-5689-4ec6-a560-c8b451bb383d"},
		{7, "Ballinran", 4, 8, 36606, 15694, "00e07f98-6cba-4018-be48-233a677f42e1"},
		{8, "Flor De Cana", 2, 3, 18303, 7847, "8536e165-37a6-4ee0-94be-21544b10217c"},
	}
	require.Len(t, s.Entrants, len(want))
	require.Len(t, s.MoneyFlow, len(want))
	for i, w := range want {
		e, mf := s.Entrants[i], s.MoneyFlow[i]
		require.Equal(t, w.number, e.RunnerNumber)
		require.Equal(t, w.name, e.Name)
		require.Equal(t, w.entrantID, e.EntrantID)
		require.Equal(t, ptr(w.hold), e.HoldPercentage, w.name)
		require.Equal(t, ptr(w.bet), e.BetPercentage, w.name)
		require.Equal(t, ptr(w.win), e.WinPoolAmount, w.name)
		require.Equal(t, ptr(w.place), e.PlacePoolAmount, w.name)
		require.Equal(t, ptr(w.hold), e.WinPoolPercentage, w.name)
		require.Equal(t, ptr(w.hold), e.PlacePoolPercentage, w.name)

		require.Equal(t, MoneyFlow{
			RaceID:              s.RaceID,
			EntrantID:           w.entrantID,
			PollingTimestamp:    goldenObservedAt,
			EventTimestamp:      goldenObservedAt,
			TimeToStart:         4,
			TimeInterval:        4,
			IntervalType:        IntervalThirtySecs,
			HoldPercentage:      w.hold,
			BetPercentage:       w.bet,
			WinPoolPercentage:   ptr(w.hold),
			PlacePoolPercentage: ptr(w.hold),
			WinPoolAmount:       w.win,
			PlacePoolAmount:     w.place,
			// round_half_up((915138 + 392351) × hold / 100)
			TotalPoolAmount: (int64(915138+392351)*int64(w.hold) + 50) / 100,
		}, mf, w.name)
	}
	require.Equal(t, 3, s.Quality.UnknownMoneyTrackerIDs)
	require.Equal(t, 93.0, s.Quality.HoldPercentageSum)
	require.Equal(t, 101.0, s.Quality.BetPercentageSum)
}

func TestGoldenRaceMeetingAndStatus(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	require.Equal(t, "0f57e087-00d9-4c61-9549-835abe2ae2ed", s.RaceID)
	require.Equal(t, goldenObservedAt, s.ObservedAt)
	require.Equal(t, &Meeting{
		MeetingID:      "e9f2039d-d489-4a7d-aae1-d66225f1a5f4",
		MeetingName:    "Awapuni Synthetic",
		Country:        "NZ",
		State:          ptr("NZ"),
		RaceType:       RaceTypeThoroughbred,
		Category:       "T",
		Date:           "2025-07-17",
		TrackCondition: ptr("Synthetic"),
	}, s.Meeting)

	r := s.Race
	require.Equal(t, StatusFinal, r.Status)
	require.Equal(t, time.Date(2025, 7, 17, 0, 50, 0, 0, time.UTC), r.StartTime)
	require.Equal(t, ptr(time.Date(2025, 7, 17, 0, 52, 46, 0, time.UTC)), r.ActualStart)
	require.Equal(t, "PRYDA HANDICAP 1700", r.Name)
	require.Equal(t, "e9f2039d-d489-4a7d-aae1-d66225f1a5f4", r.MeetingID)
	require.Equal(t, 1, r.RaceNumber)
	require.Equal(t, ptr("2025-07-17"), r.RaceDateNZ)
	require.Equal(t, ptr("12:50:00 NZST"), r.StartTimeNZ)
	require.Equal(t, ptr(1700), r.Distance)
	require.Equal(t, ptr("Overcast"), r.Weather)
	require.Equal(t, ptr("T"), r.Type)
	require.Equal(t, ptr(int64(1700000)), r.TotalPrizeMoney) // $17,000
	require.Equal(t, ptr(8), r.EntrantCount)
	require.Equal(t, ptr(8), r.FieldSize)
	require.Equal(t, ptr(3), r.PositionsPaid)
	require.JSONEq(t, `["Trackside1"]`, string(r.VideoChannels))
	require.Equal(t, ptr(time.Date(2025, 7, 17, 11, 16, 59, 189042980, time.UTC)), r.APIGeneratedAt)

	tick := s.Entrants[0]
	require.Equal(t, ptr(7), tick.Barrier)
	require.Nil(t, tick.ScratchTime)
	require.True(t, tick.Mover)
	require.JSONEq(t, `{"12/11/2020":"Gelding","30/07/2021":"Stable Change - Steve Hamill"}`, string(tick.RunnerChange))
}

func TestGoldenOddsRowsCoverAllFourTypesInOrder(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	require.Len(t, s.Odds, 32)
	types := []string{OddsFixedWin, OddsFixedPlace, OddsPoolWin, OddsPoolPlace}
	for i, o := range s.Odds {
		require.Equal(t, s.Entrants[i/4].EntrantID, o.EntrantID, "row %d", i)
		require.Equal(t, types[i%4], o.Type, "row %d", i)
		require.Equal(t, goldenObservedAt, o.EventTimestamp)
		require.Equal(t, s.RaceID, o.RaceID)
	}
	got := []float64{s.Odds[0].Odds, s.Odds[1].Odds, s.Odds[2].Odds, s.Odds[3].Odds}
	require.Equal(t, []float64{5, 1.8, 4.4, 1.5}, got) // Tickford
}

func TestGoldenResultsCarryResultsDividendsAndFixedOdds(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	rr := s.Results
	require.NotNil(t, rr)
	require.True(t, rr.ResultsAvailable)
	require.Equal(t, ResultFinal, rr.ResultStatus)
	require.Equal(t, goldenObservedAt, rr.ResultTime)
	require.False(t, rr.PhotoFinish)
	require.False(t, rr.StewardsInquiry)
	require.False(t, rr.ProtestLodged)

	var results []nztab.Result
	require.NoError(t, json.Unmarshal(rr.ResultsData, &results))
	require.Len(t, results, 8)
	for i, r := range results {
		require.Equal(t, i+1, r.Position)
	}
	require.Equal(t, "Frosbie", results[0].Name)

	var divs []nztab.Dividend
	require.NoError(t, json.Unmarshal(rr.DividendsData, &divs))
	require.Len(t, divs, 14)

	var fixed map[string]fixedOdds
	require.NoError(t, json.Unmarshal(rr.FixedOddsData, &fixed))
	require.Len(t, fixed, 8)
	require.Equal(t, fixedOdds{FixedWin: ptr(5.0), FixedPlace: ptr(1.8), RunnerName: "Tickford",
		EntrantID: "61181b8c-a540-43a8-900c-83ebe680e218"}, fixed["1"])
}

func TestGoldenQualityIsValidAndReportsHoldOnIDsThatAreNotRunners(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	// The runners hold 93 %; 8 % sits on a money-tracker id that is not a
	// runner: 101 % in all, inside the ±5 tolerance. Reported, not failed.
	require.Equal(t, 100, s.Quality.Score)
	require.True(t, s.Quality.Valid)
	require.Empty(t, s.Quality.MoneyWithheld)
	require.Equal(t, 8.0, s.Quality.UnknownHoldPercentage)
	require.Contains(t, s.Quality.Warnings,
		"win pool percentages of 8 runners sum to 93.00; the other 8.00% hold is on 3 money-tracker ids that are not runners")
	require.Len(t, s.MoneyFlow, 8)
}

func TestGoldenSnapshotJSONUsesSnakeCaseTopLevelKeys(t *testing.T) {
	t.Parallel()
	s := goldenSnapshot(t)
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &top))
	for _, k := range []string{"race_id", "observed_at", "meeting", "race", "entrants", "race_pools", "money_flow", "odds", "results", "quality"} {
		require.Contains(t, top, k)
	}
	require.Len(t, top, 10)
}
