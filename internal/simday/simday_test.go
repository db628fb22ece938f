package simday_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestDefaultDayHasWhatAReplayTestNeeds(t *testing.T) {
	t.Parallel()
	day, err := simday.Build(context.Background(), simday.Config{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(day.Races), 30)
	require.GreaterOrEqual(t, len(day.Fetches), 1000)
	require.NotEmpty(t, day.Baselines)
	for i := 1; i < len(day.Fetches); i++ {
		require.False(t, day.Fetches[i].ObservedAt.Before(day.Fetches[i-1].ObservedAt), "fetches in time order")
	}

	snaps, err := day.Snapshots()
	require.NoError(t, err)
	var scratched, late, results, dividends int
	seen := map[string]bool{}
	for _, s := range snaps {
		for _, e := range s.Entrants {
			if e.IsScratched && !seen["s"+e.EntrantID] {
				seen["s"+e.EntrantID] = true
				scratched++
			}
			if e.IsLateScratched && !seen["l"+e.EntrantID] {
				seen["l"+e.EntrantID] = true
				late++
			}
		}
		if s.Results != nil && s.Results.ResultsAvailable && !seen["r"+s.RaceID] {
			seen["r"+s.RaceID] = true
			results++
		}
		if s.Results != nil && len(s.Results.DividendsData) > 2 && !seen["d"+s.RaceID] {
			seen["d"+s.RaceID] = true
			dividends++
		}
	}
	t.Logf("%d races, %d polls, %d baselines, %d scratched, %d late scratched, %d with results, %d with dividends",
		len(day.Races), len(snaps), len(day.Baselines), scratched, late, results, dividends)
	require.Positive(t, scratched)
	require.Positive(t, late)
	require.Positive(t, results)
	require.Positive(t, dividends)

	list, err := nztab.DecodeMeetings(day.Baselines[0].Pages[0])
	require.NoError(t, err)
	require.Greater(t, len(list.Meetings), simday.DefaultMeetings, "the list also holds meetings the baseline filters out")
}

func TestSameConfigGivesTheSameDay(t *testing.T) {
	t.Parallel()
	cfg := simday.Config{Date: "2026-03-14", Meetings: 1, RacesPerMeeting: 2}
	a, err := simday.Build(context.Background(), cfg)
	require.NoError(t, err)
	b, err := simday.Build(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, len(a.Fetches), len(b.Fetches))
	for i := range a.Fetches {
		require.True(t, a.Fetches[i].ObservedAt.Equal(b.Fetches[i].ObservedAt))
		require.True(t, bytes.Equal(a.Fetches[i].Body, b.Fetches[i].Body), "fetch %d", i)
	}
}
