package schedule_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
)

func TestTrackedReportsCadenceLastAndNextPoll(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	cfg.MaxInFlight = 1
	clock := schedule.NewFakeClock(t0)
	near := race("near", t0.Add(3*time.Minute), "open")
	far := race("far", t0.Add(40*time.Minute), "open")
	races := &fakeRaces{cfg: cfg, races: map[string]schedule.Race{}}
	races.put(near, far)
	poller := &fakePoller{now: clock.Now}
	s, err := schedule.New(cfg, schedule.Deps{Races: races, Poller: poller, Clock: clock})
	require.NoError(t, err)

	// One slot: the near race is polled, the far one waits for the slot.
	require.NoError(t, s.Tick(context.Background(), t0))
	got, err := s.Tracked(context.Background())
	require.NoError(t, err)
	require.Equal(t, []schedule.TrackedRace{
		{Race: near, Cadence: cfg.NearInterval, Polls: 1, LastRequest: t0, InFlight: true},
		{Race: far, Cadence: cfg.FarInterval, NextPoll: t0},
	}, got)

	// The near race's result frees the slot; the far race is polled next.
	s.OnResult(handlers.ProcessResult{RaceID: "near", PollID: poller.last("near").PollID, Status: handlers.StatusSuccess,
		RaceStatus: "open"})
	t1 := t0.Add(cfg.Tick)
	clock.Set(t1)
	require.NoError(t, s.Tick(context.Background(), t1))
	got, err = s.Tracked(context.Background())
	require.NoError(t, err)
	require.Equal(t, []schedule.TrackedRace{
		{Race: near, Cadence: cfg.NearInterval, Polls: 1, LastRequest: t0, NextPoll: t0.Add(cfg.NearInterval)},
		{Race: far, Cadence: cfg.FarInterval, Polls: 1, LastRequest: t1, InFlight: true},
	}, got)

	// The far race's result never comes: after PollTimeout it is lost and due.
	t2 := t1.Add(cfg.PollTimeout)
	clock.Set(t2)
	races.fail(context.Canceled) // no refresh: only the expiry matters here
	_ = s.Tick(context.Background(), t2)
	got, err = s.Tracked(context.Background())
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.True(t, got[1].Lost, "far race's poll was given up on: %+v", got[1])
	require.False(t, got[1].InFlight)
}

// blockingRaces holds a tick inside Candidates until released.
type blockingRaces struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingRaces) Candidates(ctx context.Context, _ time.Time) ([]schedule.Race, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil, nil
}

func TestTrackedGivesUpWhenATickHoldsTheSchedulerPastTheDeadline(t *testing.T) {
	t.Parallel()
	races := blockingRaces{entered: make(chan struct{}), release: make(chan struct{})}
	s, err := schedule.New(schedule.DefaultConfig(), schedule.Deps{Races: races, Poller: &fakePoller{now: time.Now},
		Clock: schedule.NewFakeClock(t0)})
	require.NoError(t, err)
	tickDone := make(chan error, 1)
	go func() { tickDone <- s.Tick(context.Background(), t0) }()
	<-races.entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Tracked(ctx)
	require.ErrorIs(t, err, context.Canceled)

	close(races.release)
	require.NoError(t, <-tickDone)
	got, err := s.Tracked(context.Background())
	require.NoError(t, err)
	require.Empty(t, got)
}
