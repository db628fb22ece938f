package bench

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nztab"
)

const simDate = "2025-07-17"

func TestSimConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     SimConfig
		wantErr string
	}{
		{"defaults", SimConfig{Races: 1}, ""},
		{"no races", SimConfig{}, "races 0"},
		{"too many steps", SimConfig{Races: 1, Steps: MaxSimSteps + 1}, "steps"},
		{"negative latency", SimConfig{Races: 1, Latency: -time.Second}, "latency"},
		{"bad date", SimConfig{Races: 1, Date: "17/07/2025"}, "date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestNewSimSelectsDistinctFullFieldRacesAcrossSeeds(t *testing.T) {
	t.Parallel()
	sim, err := NewSim(SimConfig{Seed: 1, Races: 30, Date: simDate, Steps: 10})
	require.NoError(t, err)
	races := sim.Races()
	require.Len(t, races, 30)
	require.Greater(t, len(sim.Seeds()), 1, "one simulated day has too few 16-runner races for 30")
	seen := map[string]bool{}
	for _, r := range races {
		require.Equal(t, 16, r.Runners)
		require.True(t, r.AbandonedAt.IsZero())
		require.False(t, seen[r.ID], "race %s selected twice", r.ID)
		seen[r.ID] = true
	}
	require.Equal(t, len(races), len(sim.RaceIDs()))
	require.Equal(t, races[0].ID, sim.RaceIDs()[0])
}

func TestNewSimFailsWhenTheSeedsRunOut(t *testing.T) {
	t.Parallel()
	_, err := NewSim(SimConfig{Seed: 1, Races: 500, MaxSeeds: 2, Date: simDate})
	require.ErrorIs(t, err, ErrNotEnoughRaces)
}

func TestSimClockStepsOncePerAdvanceAndStopsBeforeTheFirstClose(t *testing.T) {
	t.Parallel()
	const steps = 3
	sim, err := NewSim(SimConfig{Seed: 1, Races: 5, Date: simDate, Steps: steps})
	require.NoError(t, err)
	first := sim.Races()[0].StartTime
	for _, r := range sim.Races() {
		if r.StartTime.Before(first) {
			first = r.StartTime
		}
	}
	start := sim.Now()
	require.Equal(t, first.Add(-(steps+1)*nztabsim.Step), start)
	for i := 1; i <= steps; i++ {
		require.Equal(t, start.Add(time.Duration(i)*nztabsim.Step), sim.Advance())
	}
	require.Equal(t, first.Add(-nztabsim.Step), sim.Advance(), "never past the last open step")
}

func TestSimServesEveryRaceFromTheDayThatOwnsIt(t *testing.T) {
	t.Parallel()
	sim, err := NewSim(SimConfig{Seed: 1, Races: 25, Date: simDate, Steps: 5})
	require.NoError(t, err)
	require.Greater(t, len(sim.Seeds()), 1)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := nztab.NewClient(nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com", PartnerName: "test", PartnerID: "test",
	})
	require.NoError(t, err)
	ctx := context.Background()
	ids := sim.RaceIDs()
	// The first race comes from the first seed, the last from a later one.
	for _, id := range []string{ids[0], ids[len(ids)-1]} {
		f, err := client.FetchEvent(ctx, id)
		require.NoError(t, err)
		require.Len(t, f.Event.Data.Runners, 16)
		st, err := nztab.ParseStatus(f.Event.Data.Race.Status)
		require.NoError(t, err)
		require.Equal(t, nztab.StatusOpen, st)
	}
	require.Equal(t, int64(2), sim.Requests())
	_, err = client.FetchEvent(ctx, "00000000-0000-4000-8000-000000000000")
	require.Error(t, err, "an unknown race is still a 404")
}

// fakeAPI answers SelectRaces from memory.
type fakeAPI struct {
	meetings []nztab.Meeting
	runners  map[string]int
	fetched  []string
}

func (f *fakeAPI) FetchMeetings(context.Context, string) (nztab.MeetingsList, error) {
	return nztab.MeetingsList{Meetings: f.meetings}, nil
}

func (f *fakeAPI) FetchEvent(_ context.Context, id string) (*nztab.Fetched, error) {
	f.fetched = append(f.fetched, id)
	n, ok := f.runners[id]
	if !ok {
		return nil, errors.New("not found")
	}
	ev := &nztab.EventResponse{}
	ev.Data.Runners = make([]nztab.Runner, n)
	return &nztab.Fetched{Event: ev}, nil
}

func TestSelectRacesPicksOpenHorseRacesWithTheFullestFields(t *testing.T) {
	t.Parallel()
	race := func(id, start, status string) nztab.MeetingRace {
		return nztab.MeetingRace{ID: id, StartTime: start, Status: status}
	}
	api := &fakeAPI{
		meetings: []nztab.Meeting{
			{Country: "NZ", Category: "T", Races: []nztab.MeetingRace{
				race("t1", "2025-07-17T00:00:00Z", "Open"),
				race("t2", "2025-07-17T00:30:00Z", "Open"),
				race("closed", "2025-07-16T23:00:00Z", "Closed"),
			}},
			{Country: "AUS", Category: "H", Races: []nztab.MeetingRace{race("h1", "2025-07-17T00:10:00Z", "open")}},
			{Country: "AUS", Category: "G", Races: []nztab.MeetingRace{race("dogs", "2025-07-17T00:05:00Z", "Open")}},
			{Country: "USA", Category: "T", Races: []nztab.MeetingRace{race("usa", "2025-07-17T00:05:00Z", "Open")}},
		},
		runners: map[string]int{"t1": 10, "t2": 16, "h1": 12},
	}
	got, err := SelectRaces(context.Background(), api, simDate, 2, 0)
	require.NoError(t, err)
	require.Equal(t, []SelectedRace{{"t2", 16}, {"h1", 12}}, got)
	require.Equal(t, []string{"t1", "h1", "t2"}, api.fetched, "probed in start order, only open horse races")

	_, err = SelectRaces(context.Background(), api, simDate, 4, 0)
	require.ErrorIs(t, err, ErrNotEnoughRaces)

	api.fetched = nil
	got, err = SelectRaces(context.Background(), api, simDate, 1, 2)
	require.NoError(t, err)
	require.Equal(t, []SelectedRace{{"h1", 12}}, got, "only the first probe races are considered")
	require.Equal(t, []string{"t1", "h1"}, api.fetched)
}
