package transform

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nztab"
)

func TestTransformRejectsPayloadsItCannotKeyOrTime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		mutate   func(*nztab.EventResponse)
		field    string
		sentinel error
	}{
		{"no race id", func(ev *nztab.EventResponse) { ev.Data.Race.EventID, ev.Data.Race.ID = "", "" },
			"data.race.event_id", ErrMissingField},
		{"no meeting id", func(ev *nztab.EventResponse) { ev.Data.Race.MeetingID = "" },
			"data.race.meeting_id", ErrMissingField},
		{"no advertised start", func(ev *nztab.EventResponse) { ev.Data.Race.AdvertisedStart = 0 },
			"data.race.advertised_start", ErrMissingField},
		{"advertised start before 2000", func(ev *nztab.EventResponse) { ev.Data.Race.AdvertisedStart = 5 },
			"data.race.advertised_start", ErrInvalidField},
		{"advertised start after 2100", func(ev *nztab.EventResponse) { ev.Data.Race.AdvertisedStart = 1e12 },
			"data.race.advertised_start", ErrInvalidField},
		{"unknown status", func(ev *nztab.EventResponse) { ev.Data.Race.Status = "Postponed" },
			"data.race.status", ErrUnknownStatus},
		{"empty status", func(ev *nztab.EventResponse) { ev.Data.Race.Status = "" },
			"data.race.status", ErrUnknownStatus},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev := baseEvent()
			c.mutate(ev)
			_, err := Transform(ev, testStart)
			var te *Error
			require.ErrorAs(t, err, &te)
			require.Equal(t, c.field, te.Field)
			require.ErrorIs(t, err, c.sentinel)
			require.False(t, te.Retryable())
		})
	}
	_, err := Transform(nil, testStart)
	require.ErrorIs(t, err, ErrMissingField)
	_, err = Transform(baseEvent(), time.Time{})
	require.ErrorIs(t, err, ErrInvalidField, "a zero observation time is a caller bug")
}

func TestTransformDropsImplausibleOptionalTimes(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Race.ActualStart = 1e13
	ev.Data.Runners[0].ScratchTime = 1e14
	ev.Header.GeneratedTime = "9999-01-01T00:00:00Z"
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Nil(t, s.Race.ActualStart)
	require.Nil(t, s.Race.APIGeneratedAt)
	require.Nil(t, s.Entrants[1].ScratchTime)
	require.Contains(t, s.Quality.Warnings, "scratch_time of entrant e-2 is 100000000000000, not a plausible Unix time; ignored")
	_, err = json.Marshal(s)
	require.NoError(t, err)
}

func TestTransformFallsBackToRaceIDFieldAndNameFields(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Race.EventID, ev.Data.Race.ID = "", "race-by-id"
	ev.Data.Race.Description, ev.Data.Race.Name = "", "BY NAME"
	ev.Data.Race.MeetingName, ev.Data.Race.DisplayMeetingName = "", "Display Name"
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, "race-by-id", s.RaceID)
	require.Equal(t, "BY NAME", s.Race.Name)
	require.Equal(t, "Display Name", s.Meeting.MeetingName)
}

func TestMapStatusIsCaseInsensitiveAndKnowsLegacySpellings(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"Open": StatusOpen, "OPEN": StatusOpen, " closed ": StatusClosed,
		"Interim": StatusInterim, "Paying": StatusInterim,
		"Final": StatusFinal, "Finalized": StatusFinal, "finalised": StatusFinal,
		"Abandoned": StatusAbandoned,
	}
	for in, want := range cases {
		got, err := MapStatus(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "Postponed", "resulted", "final!"} {
		_, err := MapStatus(bad)
		require.ErrorIs(t, err, ErrUnknownStatus, bad)
	}
}

func TestTransformSortsEntrantsAndMapsRunnerFields(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Runners = append(ev.Data.Runners,
		nztab.Runner{EntrantID: "e-3", Name: "Gamma", RunnerNumber: 3, BarrierPosition: "Fr1",
			RunnerChange: json.RawMessage(` { "01/01/2025" : "Gelding" } `)},
		nztab.Runner{EntrantID: "e-4", Name: "Delta", RunnerNumber: 4, Barrier: ptr(0), BarrierPosition: "Sr12",
			RunnerChange: json.RawMessage(`null`)},
		nztab.Runner{EntrantID: "e-5", Name: "Eps", RunnerNumber: 5, Barrier: ptr(0)},
		nztab.Runner{EntrantID: "e-6", Name: "Zeta", RunnerNumber: 6, BarrierPosition: "tba"},
	)
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Len(t, s.Entrants, 6)
	for i, e := range s.Entrants {
		require.Equal(t, i+1, e.RunnerNumber)
		require.Equal(t, "race-1", e.RaceID)
	}
	require.Equal(t, ptr(2), s.Entrants[0].Barrier)                                  // numeric barrier
	require.Equal(t, ptr(1), s.Entrants[2].Barrier)                                  // "Fr1"
	require.Equal(t, ptr(12), s.Entrants[3].Barrier)                                 // barrier 0 loses to "Sr12"
	require.Equal(t, ptr(0), s.Entrants[4].Barrier)                                  // barrier 0 and nothing better
	require.Nil(t, s.Entrants[5].Barrier)                                            // no digits anywhere
	require.Equal(t, `{"01/01/2025":"Gelding"}`, string(s.Entrants[2].RunnerChange)) // compacted
	require.Nil(t, s.Entrants[3].RunnerChange)
	require.Nil(t, s.Entrants[2].Jockey)
}

func TestTransformSkipsRunnersThatCannotBeRows(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Runners = append(ev.Data.Runners,
		nztab.Runner{EntrantID: "", Name: "No id", RunnerNumber: 7},
		nztab.Runner{EntrantID: "e-1", Name: "Duplicate", RunnerNumber: 8},
		nztab.Runner{EntrantID: "e-9", Name: "Zero", RunnerNumber: 0},
	)
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Len(t, s.Entrants, 2)
	require.Equal(t, "Alpha", s.Entrants[0].Name)
	require.Len(t, s.Quality.Warnings, 3)
}

func TestTransformScratchedRunnersKeepTheirRowButEmitNoOdds(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	scratchedAt := time.Date(2025, 7, 16, 21, 3, 0, 0, time.UTC)
	ev.Data.Runners = append(ev.Data.Runners,
		nztab.Runner{EntrantID: "e-3", Name: "Scratched", RunnerNumber: 3, IsScratched: true,
			ScratchTime: scratchedAt.Unix(), Odds: nztab.Odds{FixedWin: ptr(51.0)}},
		nztab.Runner{EntrantID: "e-4", Name: "Late", RunnerNumber: 4, IsLateScratched: true,
			Odds: nztab.Odds{FixedWin: ptr(21.0)}},
	)
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Len(t, s.Entrants, 4)
	require.True(t, s.Entrants[2].IsScratched)
	require.Equal(t, &scratchedAt, s.Entrants[2].ScratchTime)
	require.Equal(t, ptr(51.0), s.Entrants[2].FixedWinOdds)
	require.Nil(t, s.Entrants[0].ScratchTime)
	for _, o := range s.Odds {
		require.NotEqual(t, "e-3", o.EntrantID)
		require.NotEqual(t, "e-4", o.EntrantID)
	}
	// Alpha has 2 prices, Beta 4.
	require.Len(t, s.Odds, 6)
	require.Equal(t, []string{"e-1", "e-1", "e-2", "e-2", "e-2", "e-2"}, oddsEntrants(s.Odds))
	require.Equal(t, []string{OddsFixedWin, OddsFixedPlace, OddsFixedWin, OddsFixedPlace, OddsPoolWin, OddsPoolPlace},
		oddsTypes(s.Odds))
}

func TestTransformDropsOddsTheColumnsCannotHold(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Runners[0].Odds = nztab.Odds{FixedWin: ptr(0.0), FixedPlace: ptr(-1.0), PoolWin: ptr(1e9), PoolPlace: ptr(99999999.99)}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	beta := s.Entrants[1]
	require.Nil(t, beta.FixedWinOdds)
	require.Nil(t, beta.FixedPlaceOdds)
	require.Nil(t, beta.PoolWinOdds)
	require.Equal(t, ptr(99999999.99), beta.PoolPlaceOdds)
	require.Equal(t, []string{OddsFixedWin, OddsFixedPlace, OddsPoolPlace}, oddsTypes(s.Odds))
}

func TestTransformSumsMoneyTrackerRowsAndSkipsUnknownIDs(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.MoneyTracker.Entrants = append(ev.Data.MoneyTracker.Entrants,
		nztab.MoneyTrackerEntry{EntrantID: "ghost-1", HoldPercentage: 3},
		nztab.MoneyTrackerEntry{EntrantID: "ghost-1", HoldPercentage: 1},
		nztab.MoneyTrackerEntry{EntrantID: "ghost-2"},
	)
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, 2, s.Quality.UnknownMoneyTrackerIDs) // distinct ids
	require.Len(t, s.MoneyFlow, 2)
	for _, mf := range s.MoneyFlow {
		require.Contains(t, []string{"e-1", "e-2"}, mf.EntrantID)
	}
	alpha := s.Entrants[0]
	require.Equal(t, ptr(50.0), alpha.HoldPercentage) // 40 + 10: summed, not last row
	require.Equal(t, ptr(40.0), alpha.BetPercentage)
	require.Equal(t, ptr(int64(50000)), alpha.WinPoolAmount) // $1000 × 50 %
	require.Equal(t, ptr(int64(25000)), alpha.PlacePoolAmount)
	require.Equal(t, 100.0, s.Quality.HoldPercentageSum)
	require.Equal(t, 100.0, s.Quality.BetPercentageSum)
	require.Contains(t, s.Quality.Warnings, "2 money-tracker entrant ids are not runners of the race; their rows were skipped")
	require.Equal(t, 4.0, s.Quality.UnknownHoldPercentage)
	require.Equal(t, 100, s.Quality.Score, "hold on ids that are not runners is reported, not failed")
	require.True(t, s.Quality.Valid)
}

func TestTransformWithholdsMoneyThatCannotBeTrue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		rows []nztab.MoneyTrackerEntry
		want string
	}{
		{"hold of 900 %", []nztab.MoneyTrackerEntry{
			{EntrantID: "e-1", HoldPercentage: 100, BetPercentage: 50},
			{EntrantID: "e-1", HoldPercentage: 100}, {EntrantID: "e-1", HoldPercentage: 100},
			{EntrantID: "e-1", HoldPercentage: 100}, {EntrantID: "e-2", HoldPercentage: 100, BetPercentage: 50},
			{EntrantID: "e-2", HoldPercentage: 100}, {EntrantID: "e-2", HoldPercentage: 100},
			{EntrantID: "e-2", HoldPercentage: 100}, {EntrantID: "e-2", HoldPercentage: 100},
		}, "sum to 900.00% hold / 100.00% bet"},
		{"bet over 105 %", []nztab.MoneyTrackerEntry{
			{EntrantID: "e-1", HoldPercentage: 50, BetPercentage: 60},
			{EntrantID: "e-2", HoldPercentage: 50, BetPercentage: 46},
		}, "sum to 100.00% hold / 106.00% bet"},
		{"hold over 105 % with ids that are not runners", []nztab.MoneyTrackerEntry{
			{EntrantID: "e-1", HoldPercentage: 50, BetPercentage: 50},
			{EntrantID: "e-2", HoldPercentage: 50, BetPercentage: 50},
			{EntrantID: "ghost", HoldPercentage: 6},
		}, "sum to 106.00% hold / 100.00% bet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := baseEvent()
			ev.Data.MoneyTracker.Entrants = tc.rows
			s, err := Transform(ev, testStart)
			require.NoError(t, err)
			require.Empty(t, s.MoneyFlow, "no money-flow rows")
			for _, e := range s.Entrants {
				require.Nil(t, e.HoldPercentage, "stored money fields stand")
				require.Nil(t, e.WinPoolAmount)
				require.Nil(t, e.WinPoolPercentage)
			}
			require.False(t, s.Quality.Valid)
			require.Contains(t, s.Quality.MoneyWithheld, tc.want)
			require.Contains(t, s.Quality.Warnings, s.Quality.MoneyWithheld)
			require.Len(t, s.Entrants, 2, "the race's entrants still update")
			require.NotEmpty(t, s.Odds, "odds still update")
			require.NotNil(t, s.RacePools, "pools still update")
		})
	}
}

func TestTransformReportsReplacedCharactersAsAQualityNote(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.ReplacedChars = 3
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, 3, s.Quality.ReplacedChars)
	require.Contains(t, s.Quality.Warnings, "3 NUL characters or invalid UTF-8 sequences, which the database cannot store, were replaced with U+FFFD")
	require.True(t, s.Quality.Valid, "a note, not a failure")
}

func TestTransformWithoutMoneyTrackerLeavesMoneyFieldsNil(t *testing.T) {
	t.Parallel()
	for _, mt := range []*nztab.MoneyTracker{nil, {}} {
		ev := baseEvent()
		ev.Data.MoneyTracker = mt
		s, err := Transform(ev, testStart)
		require.NoError(t, err)
		require.Empty(t, s.MoneyFlow)
		for _, e := range s.Entrants {
			require.Nil(t, e.HoldPercentage)
			require.Nil(t, e.BetPercentage)
			require.Nil(t, e.WinPoolAmount)
			require.Nil(t, e.PlacePoolAmount)
			require.Nil(t, e.WinPoolPercentage)
			require.Nil(t, e.PlacePoolPercentage)
		}
		require.NotNil(t, s.RacePools)
	}
}

func TestTransformWithoutPoolsKeepsPercentagesButEmitsNoMoneyFlow(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.TotePools = nil
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Nil(t, s.RacePools)
	require.Empty(t, s.MoneyFlow)
	alpha := s.Entrants[0]
	require.Equal(t, ptr(50.0), alpha.HoldPercentage) // the tracker still spoke
	require.Nil(t, alpha.WinPoolAmount)
	require.Nil(t, alpha.WinPoolPercentage)
	// no win/place percentages −40, no pools −25, no money flow −10
	require.Equal(t, 25, s.Quality.Score)
	require.False(t, s.Quality.Valid)
	require.Contains(t, s.Quality.Warnings, "no race pools in the payload")
}

func TestTransformRunnerWithZeroHoldGetsNoMoneyFlowRow(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.MoneyTracker.Entrants = []nztab.MoneyTrackerEntry{
		{EntrantID: "e-1", HoldPercentage: 0, BetPercentage: 5},
		{EntrantID: "e-2", HoldPercentage: 100, BetPercentage: 95},
	}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Len(t, s.MoneyFlow, 1)
	require.Equal(t, "e-2", s.MoneyFlow[0].EntrantID)
	require.Equal(t, ptr(0.0), s.Entrants[0].HoldPercentage)
	require.Nil(t, s.Entrants[0].WinPoolAmount)
}

func TestTransformPlaceOnlyPoolGivesNilWinPercentage(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.TotePools = []nztab.TotePool{{ProductType: "Place", Total: 500}}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Len(t, s.MoneyFlow, 2)
	mf := s.MoneyFlow[0]
	require.Zero(t, mf.WinPoolAmount)
	require.Nil(t, mf.WinPoolPercentage)
	require.Equal(t, int64(25000), mf.PlacePoolAmount)
	require.Equal(t, ptr(50.0), mf.PlacePoolPercentage)
	require.Equal(t, 70, s.RacePools.DataQualityScore) // −30: no win pool
}

func TestTransformPoolTypeSpellings(t *testing.T) {
	t.Parallel()
	for _, spelling := range []string{"FirstFour", "First Four", "First 4", "first4", "FIRST4", "firstfour"} {
		ev := baseEvent()
		ev.Data.TotePools = append(ev.Data.TotePools, nztab.TotePool{ProductType: spelling, Total: 123.45})
		s, err := Transform(ev, testStart)
		require.NoError(t, err)
		require.Equal(t, int64(12345), s.RacePools.First4PoolTotal, spelling)
		require.Equal(t, 100, s.RacePools.DataQualityScore, spelling)
		require.Zero(t, s.Quality.UnknownPoolTypes, spelling)
	}
	ev := baseEvent()
	ev.Data.TotePools = []nztab.TotePool{
		{ProductType: "WIN", Total: 10}, {ProductType: " place ", Total: 20}, {ProductType: "Quinella", Total: 30},
		{ProductType: "Trifecta", Total: 40}, {ProductType: "Exacta", Total: 50},
		{ProductType: "EarlyQuadrella", Total: 60}, {ProductType: "Double", Total: 70},
	}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, &RacePools{
		RaceID: "race-1", WinPoolTotal: 1000, PlacePoolTotal: 2000, QuinellaPoolTotal: 3000,
		TrifectaPoolTotal: 4000, ExactaPoolTotal: 5000, TotalRacePool: 28000, Currency: "$",
		DataQualityScore: 90, ExtractedPools: 7, Source: SourceTotePools,
	}, s.RacePools)
	require.Equal(t, 2, s.Quality.UnknownPoolTypes)
}

func TestTransformPoolScoresAndBadAmounts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		pools     []nztab.TotePool
		win       int64
		total     int64
		score     int
		warnings  int
		extracted int
	}{
		{"win and place zero", []nztab.TotePool{{ProductType: "Win"}, {ProductType: "Place"}}, 0, 0, 70, 1, 2},
		{"repeated win keeps the largest", []nztab.TotePool{{ProductType: "Win", Total: 5}, {ProductType: "Win", Total: 9},
			{ProductType: "Win", Total: 7}, {ProductType: "Place", Total: 1}}, 900, 2200, 100, 2, 4},
		{"negative amount counts as 0", []nztab.TotePool{{ProductType: "Win", Total: -5}, {ProductType: "Place", Total: 1}},
			0, 100, 70, 2, 2},
		{"absurd amount counts as 0", []nztab.TotePool{{ProductType: "Win", Total: 1e300}, {ProductType: "Place", Total: 1}},
			0, 100, 70, 2, 2},
		{"many unknowns floor at 0", func() []nztab.TotePool {
			p := make([]nztab.TotePool, 25)
			for i := range p {
				p[i] = nztab.TotePool{ProductType: "Mystery", Total: 1}
			}
			return p
		}(), 0, 2500, 0, 1, 25},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q := &qualityAcc{}
			pools := poolsFromTote("r", c.pools, q)
			require.Equal(t, c.win, pools.WinPoolTotal)
			require.Equal(t, c.total, pools.TotalRacePool)
			require.Equal(t, c.score, pools.DataQualityScore)
			require.Equal(t, c.extracted, pools.ExtractedPools)
			require.Len(t, q.warnings, c.warnings, q.warnings)
		})
	}
}

func TestTransformFallsBackToDividendPoolSizes(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.TotePools = []nztab.TotePool{} // present but empty
	ev.Data.Race.Status = "Interim"
	ev.Data.Dividends = []nztab.Dividend{
		{ProductName: "Pool Win", Status: "Interim", PoolSize: 9000.10},
		{ProductName: "Pool Win", Status: "Final", PoolSize: 9151.38}, // max wins
		{ProductName: "Pool Place", Status: "Interim", PoolSize: 3923.51},
		{ProductName: "Pool Place", Status: "Final", PoolSize: 3900},
		{ProductName: "pool place", Status: "Final", PoolSize: 3900}, // same product, other case
		{ProductName: "Pool First4", Status: "Final", PoolSize: 4617.92},
		{ProductName: "Pool Quinella", Status: "Final", PoolSize: 5341.06},
		{ProductName: "Pool Trifecta", Status: "Final", PoolSize: 7976.24},
		{ProductName: "Pool Exacta", Status: "Final", PoolSize: 10},
		{ProductName: "Pool Double", Status: "Final", PoolSize: 1},
	}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, &RacePools{
		RaceID: "race-1", WinPoolTotal: 915138, PlacePoolTotal: 392351, QuinellaPoolTotal: 534106,
		TrifectaPoolTotal: 797624, ExactaPoolTotal: 1000, First4PoolTotal: 461792,
		TotalRacePool: 915138 + 392351 + 534106 + 797624 + 1000 + 461792 + 100,
		Currency:      "$", DataQualityScore: 90, ExtractedPools: 7, Source: SourceDividends,
	}, s.RacePools)
	require.Equal(t, 1, s.Quality.UnknownPoolTypes)
	// Money flow uses the fallback pools.
	require.Equal(t, ptr(int64(457569)), s.Entrants[0].WinPoolAmount) // 915138 × 50 %

	ev.Data.Dividends = []nztab.Dividend{{ProductName: "Pool Win", PoolSize: 100}}
	s, err = Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, 60, s.RacePools.DataQualityScore) // 90 − 30: no place pool
}

func TestTransformMeetingFromPayload(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, raceType, raceDate string
		wantType, wantDate       string
		start                    time.Time
	}{
		{"thoroughbred", "T", "2025-07-17", RaceTypeThoroughbred, "2025-07-17", testStart},
		{"harness lower-case", "h", "2025-07-17", RaceTypeHarness, "2025-07-17", testStart},
		{"greyhound", "G", "2025-07-17", RaceTypeGreyhound, "2025-07-17", testStart},
		// 13:00Z on 17 July is 01:00 NZST on 18 July.
		{"date from advertised start in NZ", "T", "", RaceTypeThoroughbred, "2025-07-18",
			time.Date(2025, 7, 17, 13, 0, 0, 0, time.UTC)},
		// 11:30Z on 17 Jan is 00:30 NZDT (+13) on 18 Jan.
		{"date from advertised start in NZ summer", "T", "", RaceTypeThoroughbred, "2025-01-18",
			time.Date(2025, 1, 17, 11, 30, 0, 0, time.UTC)},
		{"malformed race date falls back", "T", "17/07/2025", RaceTypeThoroughbred, "2025-07-17", testStart},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev := baseEvent()
			ev.Data.Race.Type = c.raceType
			ev.Data.Race.RaceDateNZ = c.raceDate
			ev.Data.Race.AdvertisedStart = c.start.Unix()
			s, err := Transform(ev, testStart)
			require.NoError(t, err)
			require.NotNil(t, s.Meeting)
			require.Equal(t, c.wantType, s.Meeting.RaceType)
			require.Equal(t, c.wantDate, s.Meeting.Date)
			require.Equal(t, "meeting-1", s.Meeting.MeetingID)
			require.Equal(t, "Testville", s.Meeting.MeetingName)
		})
	}

	ev := baseEvent()
	ev.Data.Race.Type = "X"
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Nil(t, s.Meeting)
	require.Contains(t, s.Quality.Warnings, `race type "X" is not T, H or G; meeting not written`)
	require.Equal(t, 95, s.Quality.Score) // −5: no meeting
}

func TestTransformRaceOptionalFieldsAreNilWhenAbsent(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Header.GeneratedTime = ""
	ev.Data.Race.StartTimeNZ, ev.Data.Race.RaceDateNZ, ev.Data.Race.Type = "", "", ""
	ev.Data.Race.State = ""
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	r := s.Race
	require.Nil(t, r.ActualStart)
	require.Nil(t, r.RaceDateNZ)
	require.Nil(t, r.StartTimeNZ)
	require.Nil(t, r.Distance)
	require.Nil(t, r.TrackCondition)
	require.Nil(t, r.Type)
	require.Nil(t, r.TotalPrizeMoney)
	require.Nil(t, r.VideoChannels)
	require.Nil(t, r.APIGeneratedAt)
	require.Nil(t, r.EntrantCount)
	require.Equal(t, StatusOpen, r.Status)
	require.Equal(t, testStart, r.StartTime)
}

func TestTransformRaceMetadataEdgeValues(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Race.PrizeMonies = map[string]any{"total_value": 17000.5}
	ev.Data.Race.VideoChannels = json.RawMessage(`{"not":"an array"}`)
	ev.Header.GeneratedTime = "yesterday"
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, ptr(int64(1700050)), s.Race.TotalPrizeMoney)
	require.Nil(t, s.Race.VideoChannels)
	require.Nil(t, s.Race.APIGeneratedAt)
	require.Contains(t, s.Quality.Warnings, "race.video_channels race-1 is not a JSON array; ignored")

	ev.Data.Race.PrizeMonies = map[string]any{"total_value": "lots"}
	s, err = Transform(ev, testStart)
	require.NoError(t, err)
	require.Nil(t, s.Race.TotalPrizeMoney)
}

func TestTransformResults(t *testing.T) {
	t.Parallel()
	results := []nztab.Result{
		{Position: 2, Name: "Alpha", RunnerNumber: 1, EntrantID: "e-1"},
		{Position: 1, Name: "Beta", RunnerNumber: 2, EntrantID: "e-2"},
	}
	divs := []nztab.Dividend{{ID: "d1", ProductName: "Pool Win", Status: "Final", Dividend: 3.2, PoolSize: 1000}}
	cases := []struct {
		name        string
		status      string
		results     []nztab.Result
		divs        []nztab.Dividend
		protest     bool
		want        bool
		available   bool
		finalStatus string
	}{
		{"open race without results", "Open", nil, nil, false, false, false, ""},
		{"open race with stray dividends", "Open", nil, divs, false, false, false, ""},
		{"interim with dividends only", "Interim", nil, divs, false, true, false, ResultInterim},
		{"interim with results", "Interim", results, divs, false, true, true, ResultInterim},
		{"final", "Final", results, divs, false, true, true, ResultFinal},
		{"closed with results", "Closed", results, nil, true, true, true, ResultInterim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev := baseEvent()
			ev.Data.Race.Status = c.status
			ev.Data.Race.Protest = c.protest
			ev.Data.Results = c.results
			ev.Data.Dividends = c.divs
			ev.Data.TotePools = nil
			at := testStart.Add(10 * time.Minute)
			s, err := Transform(ev, at)
			require.NoError(t, err)
			if !c.want {
				require.Nil(t, s.Results)
				return
			}
			rr := s.Results
			require.NotNil(t, rr)
			require.Equal(t, c.available, rr.ResultsAvailable)
			require.Equal(t, c.finalStatus, rr.ResultStatus)
			require.Equal(t, c.protest, rr.ProtestLodged)
			require.Equal(t, at, rr.ResultTime)
			if c.results == nil {
				require.JSONEq(t, `[]`, string(rr.ResultsData))
			} else {
				// sorted by position regardless of API order
				require.JSONEq(t, `[
					{"position":1,"name":"Beta","barrier":null,"runner_number":2,"entrant_id":"e-2","margin_length":null,"winning_time":null,"time_ran":null},
					{"position":2,"name":"Alpha","barrier":null,"runner_number":1,"entrant_id":"e-1","margin_length":null,"winning_time":null,"time_ran":null}
				]`, string(rr.ResultsData))
			}
			require.JSONEq(t, `{
				"1":{"fixed_win":2,"fixed_place":1.2,"runner_name":"Alpha","entrant_id":"e-1"},
				"2":{"fixed_win":3,"fixed_place":1.5,"runner_name":"Beta","entrant_id":"e-2"}
			}`, string(rr.FixedOddsData))
		})
	}
}

func TestTransformResultFlagsFromDividendStatuses(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Race.Status = "Interim"
	ev.Data.Dividends = []nztab.Dividend{
		{ID: "a", ProductName: "Pool Win", Status: "Photo"},
		{ID: "b", ProductName: "Pool Win", Status: "INQUIRY"},
		{ID: "c", ProductName: "Pool Place", Status: "protest"},
	}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.True(t, s.Results.PhotoFinish)
	require.True(t, s.Results.StewardsInquiry)
	require.True(t, s.Results.ProtestLodged)

	// Dividend order in the payload does not change the stored JSON.
	ev2 := baseEvent()
	ev2.Data.Race.Status = "Interim"
	ev2.Data.Dividends = []nztab.Dividend{ev.Data.Dividends[2], ev.Data.Dividends[0], ev.Data.Dividends[1]}
	s2, err := Transform(ev2, testStart)
	require.NoError(t, err)
	require.Equal(t, string(s.Results.DividendsData), string(s2.Results.DividendsData))
}

func TestTransformQualityOfAHealthyPoll(t *testing.T) {
	t.Parallel()
	s, err := Transform(baseEvent(), testStart.Add(-20*time.Minute))
	require.NoError(t, err)
	require.Equal(t, Quality{Score: 100, Valid: true, HoldPercentageSum: 100, BetPercentageSum: 100}, s.Quality)
}

func TestTransformQualityEntrantCountBounds(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.Runners = ev.Data.Runners[:1]
	ev.Data.MoneyTracker.Entrants = []nztab.MoneyTrackerEntry{{EntrantID: "e-2", HoldPercentage: 100, BetPercentage: 100}}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Equal(t, 85, s.Quality.Score)
	require.True(t, s.Quality.Valid)
	require.Contains(t, s.Quality.Warnings, "1 entrants, want 2 to 30")
}

func TestTransformQualityPercentageTolerance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		holdA, holdB float64
		score        int
	}{
		{50, 45, 100},   // 95: at the edge, inside
		{50, 55, 100},   // 105
		{50, 44.99, 60}, // 94.99: outside
		{50, 55.01, 50}, // 105.01: impossible, money withheld (no percentages −40, no money flow −10)
	}
	for _, c := range cases {
		ev := baseEvent()
		ev.Data.MoneyTracker.Entrants = []nztab.MoneyTrackerEntry{
			{EntrantID: "e-1", HoldPercentage: c.holdA, BetPercentage: 50},
			{EntrantID: "e-2", HoldPercentage: c.holdB, BetPercentage: 50},
		}
		s, err := Transform(ev, testStart)
		require.NoError(t, err)
		require.Equal(t, c.score, s.Quality.Score, "%v + %v", c.holdA, c.holdB)
	}
}

func TestTransformRejectsOutOfRangeTrackerData(t *testing.T) {
	t.Parallel()
	ev := baseEvent()
	ev.Data.MoneyTracker.Entrants = []nztab.MoneyTrackerEntry{
		{EntrantID: "e-1", HoldPercentage: 1e300},
		{EntrantID: "e-2", HoldPercentage: 600},
		{EntrantID: "e-2", HoldPercentage: 600}, // 1200 % cannot be stored in numeric(5,2)
	}
	s, err := Transform(ev, testStart)
	require.NoError(t, err)
	require.Empty(t, s.MoneyFlow)
	require.Nil(t, s.Entrants[0].HoldPercentage)
	require.Nil(t, s.Entrants[1].HoldPercentage)
	require.Len(t, s.Quality.Warnings, 5, s.Quality.Warnings)
}

func TestTransformTimesAreUTCAndObservedAtDrivesHistoryRows(t *testing.T) {
	t.Parallel()
	nz := time.FixedZone("NZST", 12*3600)
	at := time.Date(2025, 7, 17, 12, 30, 0, 0, nz) // 00:30Z
	s, err := Transform(baseEvent(), at)
	require.NoError(t, err)
	require.Equal(t, time.UTC, s.ObservedAt.Location())
	require.True(t, s.ObservedAt.Equal(at))
	for _, mf := range s.MoneyFlow {
		require.Equal(t, s.ObservedAt, mf.PollingTimestamp)
		require.Equal(t, s.ObservedAt, mf.EventTimestamp)
		require.Equal(t, 20, mf.TimeToStart)
		require.Equal(t, 20, mf.TimeInterval)
		require.Equal(t, IntervalTwoMinutes, mf.IntervalType)
	}
	for _, o := range s.Odds {
		require.Equal(t, s.ObservedAt, o.EventTimestamp)
	}
	require.Equal(t, time.UTC, s.Race.StartTime.Location())
}

func TestErrorMessageNamesRaceFieldAndReason(t *testing.T) {
	t.Parallel()
	err := &Error{RaceID: "r1", Field: "data.race.status", Reason: "bad", Err: ErrUnknownStatus}
	require.Equal(t, "transform race r1: data.race.status: bad", err.Error())
	require.True(t, errors.Is(err, ErrUnknownStatus))
	require.Equal(t, "transform race (unknown): f: r", (&Error{Field: "f", Reason: "r"}).Error())
}

func oddsEntrants(o []Odds) []string {
	out := make([]string, len(o))
	for i := range o {
		out[i] = o[i].EntrantID
	}
	return out
}

func oddsTypes(o []Odds) []string {
	out := make([]string, len(o))
	for i := range o {
		out[i] = o[i].Type
	}
	return out
}
