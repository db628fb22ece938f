package status_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/status"
)

// manualClock is a clock a test moves by hand.
type manualClock struct{ now time.Time }

func (c *manualClock) Now() time.Time { return c.now }

func newRecorder(t *testing.T, mod func(*status.RecorderConfig)) (*status.Recorder, *manualClock) {
	t.Helper()
	clock := &manualClock{now: time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC)}
	cfg := status.DefaultRecorderConfig()
	cfg.Now, cfg.Wall = clock.Now, clock.Now
	if mod != nil {
		mod(&cfg)
	}
	r, err := status.NewRecorder(cfg)
	require.NoError(t, err)
	return r, clock
}

func result(race string, n int, status string, total float64) handlers.ProcessResult {
	r := handlers.ProcessResult{RaceID: race, PollID: fmt.Sprintf("%s#%d", race, n), Status: status,
		Timings: handlers.Timings{FetchMS: total / 2, TransformMS: total / 4, WriteMS: total / 4, TotalMS: total}}
	if status != handlers.StatusSuccess {
		r.Error = &handlers.ErrorInfo{Stage: handlers.StageFetch, Kind: "decode", Message: "bad body"}
		r.Timings.TransformMS, r.Timings.WriteMS = 0, 0
	}
	return r
}

func TestRecorderKeepsEachRacesLatestPollsNewestFirst(t *testing.T) {
	t.Parallel()
	r, clock := newRecorder(t, func(c *status.RecorderConfig) { c.PerRace = 3 })
	for i := 1; i <= 5; i++ {
		clock.now = clock.now.Add(time.Second)
		r.Observe(result("a", i, handlers.StatusSuccess, 10))
	}
	r.Observe(handlers.ProcessResult{RaceID: "a", PollID: "replayed", Status: handlers.StatusSuccess, Replay: true})
	polls := r.Polls("a")
	require.Len(t, polls, 3)
	require.Equal(t, []string{"a#5", "a#4", "a#3"}, []string{polls[0].PollID, polls[1].PollID, polls[2].PollID})
	require.Equal(t, clock.now, polls[0].At)
	require.Equal(t, "a#5", r.Last()["a"].PollID, "replayed results are not the flow's")
	require.Nil(t, r.Polls("unknown"))
}

func TestRecorderForgetsTheLeastRecentlyPolledRaces(t *testing.T) {
	t.Parallel()
	r, _ := newRecorder(t, func(c *status.RecorderConfig) { c.MaxRaces = 10 })
	for i := 0; i < 10; i++ {
		r.Observe(result(fmt.Sprint("race", i), 1, handlers.StatusSuccess, 10))
	}
	r.Observe(result("race0", 2, handlers.StatusSuccess, 10)) // race0 is recent again
	r.Observe(result("new", 1, handlers.StatusSuccess, 10))
	last := r.Last()
	require.Len(t, last, 10)
	require.Contains(t, last, "race0")
	require.Contains(t, last, "new")
	require.NotContains(t, last, "race1", "the least recently polled race went")
}

func TestRecorderFigures(t *testing.T) {
	t.Parallel()
	r, clock := newRecorder(t, nil)
	// An old poll outside the span, then 20 polls in the last minute: 19
	// successes of 1..19 ms total and one fetch failure.
	r.Observe(result("old", 1, handlers.StatusSuccess, 1000))
	clock.now = clock.now.Add(10 * time.Minute)
	for i := 1; i <= 19; i++ {
		r.Observe(result("a", i, handlers.StatusSuccess, float64(i)))
	}
	r.Observe(result("b", 1, handlers.StatusFailed, 3))

	figures, counts := r.Figures(time.Minute)
	require.Equal(t, map[string]int{handlers.StatusSuccess: 19, handlers.StatusFailed: 1}, counts)
	total := figures[status.StageTotal]
	require.Equal(t, 19, total.Samples, "latency of successful polls only")
	require.Equal(t, 10.0, total.P50MS)
	require.Equal(t, 19.0, total.P95MS)
	require.Equal(t, 20.0, total.PerMinute)
	require.Equal(t, 20.0, figures[status.StageFetch].PerMinute, "every poll went through fetch")
	require.Equal(t, 19.0, figures[status.StageTransform].PerMinute, "the failed poll stopped at fetch")
	require.Equal(t, 5.0, figures[status.StageFetch].P50MS)
}

func TestRecorderRatesCoverWhatAFullWindowHolds(t *testing.T) {
	t.Parallel()
	r, clock := newRecorder(t, func(c *status.RecorderConfig) { c.Window = 10 })
	// 30 polls, one every 2 s: the window keeps the last 10, 18 s apart.
	for i := 0; i < 30; i++ {
		clock.now = clock.now.Add(2 * time.Second)
		r.Observe(result("a", i, handlers.StatusSuccess, 5))
	}
	figures, _ := r.Figures(5 * time.Minute)
	require.InDelta(t, 10/(18.0/60), figures[status.StageTotal].PerMinute, 0.01)
}

func TestRecorderConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*status.RecorderConfig)
	}{
		{"no per-race polls", func(c *status.RecorderConfig) { c.PerRace = 0 }},
		{"no races", func(c *status.RecorderConfig) { c.MaxRaces = 0 }},
		{"no window", func(c *status.RecorderConfig) { c.Window = 0 }},
		{"no clock", func(c *status.RecorderConfig) { c.Now = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := status.DefaultRecorderConfig()
			tc.mod(&cfg)
			_, err := status.NewRecorder(cfg)
			require.Error(t, err)
		})
	}
}
