package status_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/status"
	"github.com/raceflow/raceflow/status/statustest"
)

// TestReadModelOfAFlowOnTheSimulator runs the continuous service on the
// simulator (postgres backend) with one race whose API answers are broken,
// and reads every page from what the flow stored and knows.
func TestReadModelOfAFlowOnTheSimulator(t *testing.T) {
	t.Parallel()
	f := statustest.Start(t, config.BackendPostgres)
	bad := f.HorseRaces(t, 1)[0]
	require.NoError(t, f.Sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	ctx := context.Background()

	good := f.RaceWithPolls(t, 5)
	f.WaitFor(t, "the broken race poisoned", func() bool {
		st, err := f.Service.Engine().Driver().Poison().Summary(ctx)
		require.NoError(t, err)
		return st.ByRace[bad] > 0
	})

	page, err := f.Model.Races(ctx)
	require.NoError(t, err)
	require.True(t, page.Scheduling)
	require.Empty(t, page.Warnings)
	rows := map[string]status.RaceRow{}
	for _, m := range page.Meetings {
		for _, r := range m.Races {
			rows[r.ID] = r
		}
	}
	g := rows[good]
	require.True(t, g.Tracked, "race %s is tracked: %+v", good, g)
	require.Positive(t, g.CadenceS)
	require.NotNil(t, g.LastPoll)
	require.Contains(t, []string{handlers.StatusSuccess, "stored"}, g.LastPoll.Outcome)
	require.GreaterOrEqual(t, g.LastPoll.AgeS, 0.0)
	require.False(t, g.Failing)
	require.Zero(t, g.Poisoned)
	// The baseline stored the broken race; none of its polls got through,
	// and the page flags it.
	b := rows[bad]
	require.Equal(t, bad, b.ID, "broken race listed")
	require.True(t, b.Failing, "broken race is failing: %+v", b)
	require.Positive(t, b.Poisoned)
	require.Equal(t, handlers.StatusFailed, b.LastPoll.Outcome)
	require.GreaterOrEqual(t, page.Totals.Poisoned, 1)

	race, err := f.Model.Race(ctx, good)
	require.NoError(t, err)
	require.NotEmpty(t, race.Runners)
	require.GreaterOrEqual(t, len(race.Hold), 5, "a point per stored poll")
	require.NotEmpty(t, race.Increments)
	require.NotNil(t, race.Pools)
	require.NotNil(t, race.Schedule)
	require.NotEmpty(t, race.Stored)
	require.NotEmpty(t, race.Polls, "the flow's own results of the race")
	require.Positive(t, race.Polls[0].TotalMS)
	// The chart's hold % at the latest poll is the runners' stored hold %.
	lastHold := race.Hold[len(race.Hold)-1]
	var stored int
	for i, r := range race.Runners {
		if r.HoldPct != nil && lastHold.Hold[i] != nil && race.Stored[0].ObservedAt.Equal(lastHold.At) {
			require.InDelta(t, *r.HoldPct, *lastHold.Hold[i], 0.001, "runner %d", r.Number)
			stored++
		}
	}
	t.Logf("race %s: %d runners, %d charted polls, %d buckets, %d hold values checked against entrants",
		good, len(race.Runners), len(race.Hold), len(race.Increments), stored)

	pipe, err := f.Model.Pipeline(ctx)
	require.NoError(t, err)
	require.Empty(t, pipe.Warnings)
	require.True(t, pipe.QueuesMeasured)
	for _, h := range pipe.Hops {
		if h.Topic == "" {
			require.Nil(t, h.Backlog, "hop %s has no topic of its own, so no backlog", h.Stage)
			continue
		}
		require.NotNil(t, h.Backlog, "hop %s", h.Stage)
		require.NotEmpty(t, h.Shards, "hop %s", h.Stage)
	}
	require.Positive(t, pipe.Hops[0].Figures.Samples, "fetch latency sampled")
	require.Positive(t, pipe.Hops[0].Figures.PerMinute)
	require.Positive(t, pipe.Total.P95MS)
	require.Positive(t, pipe.API["2xx"], "API responses counted: %v", pipe.API)
	require.True(t, pipe.Database.PoolKnown)
	require.Positive(t, pipe.Database.Max)
	require.NotNil(t, pipe.Scheduler)
	require.Positive(t, pipe.Scheduler.Tracked)
	require.NotNil(t, pipe.Poison)
	require.Positive(t, pipe.Poison.Count)
	require.NotEmpty(t, pipe.Poison.Recent)
	require.Equal(t, bad, pipe.Poison.Recent[0].RaceID)
	require.Equal(t, handlers.StageFetch, pipe.Poison.Recent[0].Stage, "the API answer did not decode")

	msg, err := f.Model.PoisonMessage(ctx, pipe.Poison.Recent[0].ID)
	require.NoError(t, err)
	require.Equal(t, bad, msg.RaceID)
	require.NotEmpty(t, msg.Payload)
	for _, unknown := range []int64{1 << 30, 1 << 40} {
		_, err = f.Model.PoisonMessage(ctx, unknown)
		require.ErrorIs(t, err, status.ErrPoisonNotFound, "id %d", unknown)
	}
}
