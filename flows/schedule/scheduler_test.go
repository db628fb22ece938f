package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is an arbitrary instant; every test counts from it.
var t0 = time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC)

// fakeRaces behaves like PGRaces over an in-memory races table.
type fakeRaces struct {
	cfg   schedule.Config
	mu    sync.Mutex
	races map[string]schedule.Race
	err   error
	calls int
}

func (f *fakeRaces) Candidates(_ context.Context, now time.Time) ([]schedule.Race, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	var out []schedule.Race
	for _, r := range f.races {
		active := r.Status == "open" || r.Status == "closed" || r.Status == "interim"
		if active && !r.Start.Before(now.Add(-f.cfg.StuckAfter)) && !r.Start.After(now.Add(f.cfg.Horizon)) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

func (f *fakeRaces) put(rs ...schedule.Race) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		f.races[r.ID] = r
	}
}

func (f *fakeRaces) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.races, id)
}

func (f *fakeRaces) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

type pollReq struct {
	RaceID, PollID, Reason string
	At                     time.Time
}

// fakePoller records requests; onPoll, when set, runs inside RequestPoll
// (for example to feed a result back at once, as a fast pipeline would).
type fakePoller struct {
	now    func() time.Time
	mu     sync.Mutex
	reqs   []pollReq
	err    error
	onPoll func(pollReq)
}

func (p *fakePoller) RequestPoll(_ context.Context, raceID, reason string) (string, error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return "", p.err
	}
	req := pollReq{RaceID: raceID, PollID: fmt.Sprintf("%s#%d", raceID, len(p.reqs)+1), Reason: reason, At: p.now()}
	p.reqs = append(p.reqs, req)
	on := p.onPoll
	p.mu.Unlock()
	if on != nil {
		on(req)
	}
	return req.PollID, nil
}

func (p *fakePoller) polls(raceID string) []pollReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pollReq
	for _, r := range p.reqs {
		if raceID == "" || r.RaceID == raceID {
			out = append(out, r)
		}
	}
	return out
}

func (p *fakePoller) last(raceID string) pollReq {
	ps := p.polls(raceID)
	if len(ps) == 0 {
		return pollReq{}
	}
	return ps[len(ps)-1]
}

// harness drives a Scheduler tick by tick on a fake timeline.
type harness struct {
	t      *testing.T
	cfg    schedule.Config
	now    time.Time
	races  *fakeRaces
	poller *fakePoller
	s      *schedule.Scheduler
}

func newHarness(t *testing.T, cfg schedule.Config, rs ...schedule.Race) *harness {
	t.Helper()
	h := &harness{t: t, cfg: cfg, now: t0, races: &fakeRaces{cfg: cfg, races: map[string]schedule.Race{}}}
	h.poller = &fakePoller{now: func() time.Time { return h.now }}
	h.races.put(rs...)
	s, err := schedule.New(cfg, schedule.Deps{Races: h.races, Poller: h.poller})
	require.NoError(t, err)
	h.s = s
	return h
}

// tick evaluates at the current instant.
func (h *harness) tick() {
	h.t.Helper()
	require.NoError(h.t, h.s.Tick(context.Background(), h.now))
}

// run ticks once per cfg.Tick until d has passed (the tick at now+d included).
func (h *harness) run(d time.Duration) {
	h.t.Helper()
	for end := h.now.Add(d); h.now.Before(end); {
		h.now = h.now.Add(h.cfg.Tick)
		h.tick()
	}
}

// autoRespond feeds every poll a successful result with the status status(req).
func (h *harness) autoRespond(status func(pollReq) string) {
	h.poller.onPoll = func(req pollReq) {
		h.s.OnResult(handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID,
			Status: handlers.StatusSuccess, RaceStatus: status(req)})
	}
}

func (h *harness) respond(req pollReq, raceStatus string) {
	h.s.OnResult(handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusSuccess, RaceStatus: raceStatus})
}

// offsets returns the poll instants of raceID relative to ref.
func (h *harness) offsets(raceID string, ref time.Time) []time.Duration {
	var out []time.Duration
	for _, p := range h.poller.polls(raceID) {
		out = append(out, p.At.Sub(ref))
	}
	return out
}

// seq is from, from+step, ... up to and including to.
func seq(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for d := from; d <= to; d += step {
		out = append(out, d)
	}
	return out
}

func race(id string, start time.Time, status string) schedule.Race {
	return schedule.Race{ID: id, Start: start, Status: status}
}

func TestCadenceFollowsTimeToStartAndStopsAtFinal(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	start := t0.Add(17 * time.Minute)
	h := newHarness(t, cfg, race("r1", start, "open"))
	h.autoRespond(func(req pollReq) string {
		switch {
		case req.At.Before(start):
			return "open"
		case req.At.Before(start.Add(2 * time.Minute)):
			return "closed"
		default:
			return "final"
		}
	})
	h.tick()
	h.run(25 * time.Minute)

	var want []time.Duration
	want = append(want, -17*time.Minute, -16*time.Minute)                                       // > 15 min out: every 60 s
	want = append(want, seq(-15*time.Minute, -5*time.Minute-30*time.Second, 30*time.Second)...) // within 15 min: every 30 s
	want = append(want, seq(-5*time.Minute, 2*time.Minute, 15*time.Second)...)                  // within 5 min and after the start: every 15 s
	require.Equal(t, want, h.offsets("r1", start))
	require.Equal(t, schedule.Stats{Polled: len(want), Finished: 1}, h.s.Stats(), "final stops the race")
}

func TestCadenceOfClosedAndInterimRacesIsNear(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status string
		want   []time.Duration
	}{
		{"open", seq(0, 2*time.Minute, 60*time.Second)},
		{"closed", seq(0, 2*time.Minute, 15*time.Second)},
		{"interim", seq(0, 2*time.Minute, 15*time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			t.Parallel()
			// Start an hour away: only the status can make it near.
			h := newHarness(t, schedule.DefaultConfig(), race("r1", t0.Add(time.Hour), tc.status))
			h.autoRespond(func(pollReq) string { return tc.status })
			h.tick()
			h.run(2 * time.Minute)
			require.Equal(t, tc.want, h.offsets("r1", t0))
		})
	}
}

func TestIntervalShrinksAsSoonAsABandIsCrossed(t *testing.T) {
	t.Parallel()
	// First poll 15m20s out (60 s band). 20 s later the race is within
	// 15 min, so the next poll is 30 s after the first, not 60 s: an
	// interval change neither restarts nor delays the cadence.
	h := newHarness(t, schedule.DefaultConfig(), race("r1", t0.Add(15*time.Minute+20*time.Second), "open"))
	h.autoRespond(func(pollReq) string { return "open" })
	h.tick()
	h.run(time.Minute)
	require.Equal(t, []time.Duration{0, 30 * time.Second, 60 * time.Second}, h.offsets("r1", t0))
}

func TestFirstPollOfANewlySeenRaceIsImmediate(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("a", t0.Add(3*time.Hour), "open"))
	h.autoRespond(func(pollReq) string { return "open" })
	h.tick()
	require.Equal(t, []pollReq{{RaceID: "a", PollID: "a#1", Reason: schedule.ReasonFirst, At: t0}}, h.poller.polls(""))

	// A race added to the database between refreshes is polled on the
	// tick that first reads it, without waiting for any interval.
	h.run(10 * time.Second)
	h.races.put(race("b", t0.Add(5*time.Hour), "open"))
	h.run(cfg.RefreshCandidates - 10*time.Second - cfg.Tick)
	require.Empty(t, h.poller.polls("b"), "not yet re-read")
	h.run(cfg.Tick)
	require.Equal(t, []pollReq{{RaceID: "b", PollID: "b#2", Reason: schedule.ReasonFirst, At: t0.Add(cfg.RefreshCandidates)}}, h.poller.polls("b"))
	require.Len(t, h.poller.polls("a"), 1, "a keeps its own 60 s cadence")
}

func TestARaceIsNeverPolledWhileItsPollIsInFlight(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(time.Minute), "open")) // 15 s cadence
	h.tick()
	h.run(time.Minute) // four intervals pass without a result
	require.Len(t, h.poller.polls("r1"), 1)
	require.Equal(t, 1, h.s.Stats().InFlight)

	h.respond(h.poller.last("r1"), "open")
	h.run(cfg.Tick)
	require.Equal(t, []time.Duration{0, time.Minute + cfg.Tick}, h.offsets("r1", t0),
		"the result frees the race and it is overdue, so it is polled on the next tick")
}

func TestGlobalBoundPollsTheEarliestStartsFirst(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig() // MaxInFlight 5
	// Ids sort the opposite way to start times, so order by id would differ.
	var rs []schedule.Race
	for i := 1; i <= 8; i++ {
		rs = append(rs, race(fmt.Sprintf("r%d", 9-i), t0.Add(time.Duration(i)*time.Minute), "open"))
	}
	h := newHarness(t, cfg, rs...)
	h.tick()
	polled := func() []string {
		var ids []string
		for _, p := range h.poller.polls("") {
			ids = append(ids, p.RaceID)
		}
		return ids
	}
	require.Equal(t, []string{"r8", "r7", "r6", "r5", "r4"}, polled(), "the five earliest starts")
	require.Equal(t, schedule.Stats{Tracked: 8, InFlight: 5, Polled: 5}, h.s.Stats())

	h.run(10 * time.Second)
	require.Len(t, polled(), 5, "no slot frees without a result")

	// One result frees one slot. The freed race is not due again for 15 s,
	// so the slot goes to the earliest race never polled.
	h.respond(h.poller.polls("r8")[0], "open")
	h.run(cfg.Tick)
	require.Equal(t, []string{"r8", "r7", "r6", "r5", "r4", "r3"}, polled())
	require.Equal(t, 5, h.s.Stats().InFlight)
}

func TestStopRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		result func(req pollReq) handlers.ProcessResult
	}{
		{"final", func(req pollReq) handlers.ProcessResult {
			return handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusSuccess, RaceStatus: "final"}
		}},
		{"abandoned", func(req pollReq) handlers.ProcessResult {
			return handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusSuccess, RaceStatus: "abandoned"}
		}},
		{"404", func(req pollReq) handlers.ProcessResult {
			return handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusSkipped,
				Error: &handlers.ErrorInfo{Stage: handlers.StageFetch, Kind: "not_found", Message: "404"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, schedule.DefaultConfig(), race("r1", t0.Add(time.Minute), "open"))
			h.tick()
			h.s.OnResult(tc.result(h.poller.last("r1")))
			// The database still says open (it may lag, and a 404 race is
			// never updated): the race must stay stopped across refreshes.
			h.run(10 * time.Minute)
			require.Len(t, h.poller.polls("r1"), 1)
			require.Equal(t, schedule.Stats{Polled: 1, Finished: 1}, h.s.Stats())
		})
	}

	t.Run("stuck", func(t *testing.T) {
		t.Parallel()
		cfg := schedule.DefaultConfig()
		start := t0.Add(-cfg.StuckAfter + 30*time.Second)
		h := newHarness(t, cfg, race("r1", start, "interim"))
		h.autoRespond(func(pollReq) string { return "interim" })
		h.tick()
		h.run(5 * time.Minute)
		require.Equal(t, []time.Duration{0, 15 * time.Second}, h.offsets("r1", t0),
			"polled until StuckAfter past its start, then never again")
		require.Equal(t, schedule.Stats{Polled: 2, Finished: 1}, h.s.Stats())
	})

	t.Run("failed poll does not stop", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, schedule.DefaultConfig(), race("r1", t0.Add(time.Minute), "open"))
		h.poller.onPoll = func(req pollReq) {
			h.s.OnResult(handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusFailed,
				Error: &handlers.ErrorInfo{Stage: handlers.StageWrite, Kind: "db", Retryable: true}})
		}
		h.tick()
		h.run(30 * time.Second)
		require.Len(t, h.poller.polls("r1"), 3)
	})
}

func TestLostPollIsRetriedAfterPollTimeout(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(10*time.Minute), "open"))
	h.tick()
	first := h.poller.last("r1")
	h.run(cfg.PollTimeout - cfg.Tick)
	require.Len(t, h.poller.polls("r1"), 1, "still waiting for the result")

	h.run(cfg.Tick)
	second := h.poller.last("r1")
	require.Equal(t, pollReq{RaceID: "r1", PollID: "r1#2", Reason: schedule.ReasonLost, At: t0.Add(cfg.PollTimeout)}, second)
	require.Equal(t, schedule.Stats{Tracked: 1, InFlight: 1, Polled: 2, Lost: 1}, h.s.Stats())

	// The lost poll's result turns up late: it must not free the race while
	// the retry is in flight.
	h.respond(first, "open")
	h.run(time.Minute)
	require.Len(t, h.poller.polls("r1"), 2)

	h.respond(second, "open")
	h.run(cfg.Tick)
	require.Len(t, h.poller.polls("r1"), 3)
}

func TestReplayedResultsAreIgnored(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(time.Minute), "open"))
	h.tick()
	req := h.poller.last("r1")
	h.s.OnResult(handlers.ProcessResult{RaceID: "r1", PollID: req.PollID, Status: handlers.StatusSuccess, RaceStatus: "final", Replay: true})
	h.s.OnResult(handlers.ProcessResult{RaceID: "r1", PollID: req.PollID, Status: handlers.StatusSkipped, Replay: true,
		Error: &handlers.ErrorInfo{Stage: handlers.StageFetch, Kind: "not_found"}})
	h.run(30 * time.Second)
	require.Equal(t, schedule.Stats{Tracked: 1, InFlight: 1, Polled: 1}, h.s.Stats(),
		"neither stopped nor freed by a replay")

	h.respond(req, "open")
	h.run(cfg.Tick)
	require.Len(t, h.poller.polls("r1"), 2)
}

func TestRaceLeavingTheCandidatesIsDropped(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(time.Hour), "open"), race("r2", t0.Add(2*time.Hour), "open"))
	h.autoRespond(func(pollReq) string { return "open" })
	h.tick()
	h.races.remove("r1") // e.g. finalised by a process run, or postponed past the horizon
	h.run(cfg.RefreshCandidates)
	require.Equal(t, 1, h.s.Stats().Tracked)
	h.run(5 * time.Minute)
	require.Len(t, h.poller.polls("r1"), 1)
	require.Len(t, h.poller.polls("r2"), 6)
}

func TestFailuresAreReportedAndRetried(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(time.Minute), "open"))
	h.autoRespond(func(pollReq) string { return "open" })
	h.tick()

	// The database goes away: the refresh fails, known races keep their cadence.
	h.races.fail(errors.New("db down"))
	h.now = h.now.Add(cfg.RefreshCandidates)
	require.ErrorContains(t, h.s.Tick(context.Background(), h.now), "db down")
	require.Len(t, h.poller.polls("r1"), 2)

	// The pub/sub goes away: the request fails, the race waits its interval.
	h.poller.mu.Lock()
	h.poller.err = errors.New("publish failed")
	h.poller.mu.Unlock()
	h.now = h.now.Add(cfg.NearInterval)
	require.ErrorContains(t, h.s.Tick(context.Background(), h.now), "publish failed")
	h.poller.mu.Lock()
	h.poller.err = nil
	h.poller.mu.Unlock()
	h.races.fail(nil)
	h.run(cfg.NearInterval - cfg.Tick)
	require.Len(t, h.poller.polls("r1"), 2)
	h.run(cfg.Tick)
	require.Len(t, h.poller.polls("r1"), 3)
	require.Equal(t, 0, h.s.Stats().Lost)
}

func TestOnResultIsSafeFromOtherGoroutines(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	var rs []schedule.Race
	for i := range 20 {
		rs = append(rs, race(fmt.Sprintf("r%02d", i), t0.Add(time.Duration(i)*time.Minute), "open"))
	}
	h := newHarness(t, cfg, rs...)
	var wg sync.WaitGroup
	h.poller.onPoll = func(req pollReq) {
		wg.Add(2)
		// Delivered from other goroutines while the tick is still running.
		go func() { defer wg.Done(); h.respond(req, "final") }()
		go func() { defer wg.Done(); _ = h.s.Stats() }()
	}
	for i := 0; i < 10 && h.s.Stats().Finished < 20; i++ {
		h.tick()
		wg.Wait()
		h.now = h.now.Add(cfg.Tick)
	}
	require.Equal(t, schedule.Stats{Polled: 20, Finished: 20}, h.s.Stats())
}

func TestRunTicksOnTheClockUntilCancelled(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	clk := schedule.NewFakeClock(t0)
	races := &fakeRaces{cfg: cfg, races: map[string]schedule.Race{"r1": race("r1", t0.Add(time.Hour), "open")}}
	polled := make(chan pollReq, 10)
	var s *schedule.Scheduler
	poller := &fakePoller{now: clk.Now, onPoll: func(req pollReq) {
		s.OnResult(handlers.ProcessResult{RaceID: req.RaceID, PollID: req.PollID, Status: handlers.StatusSuccess, RaceStatus: "open"})
		polled <- req
	}}
	s, err := schedule.New(cfg, schedule.Deps{Races: races, Poller: poller, Clock: clk})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	require.Equal(t, t0, recv(t, polled).At, "first poll at start")
	for range 60 {
		require.NoError(t, clk.WaitForWaiters(ctx, 1))
		require.Empty(t, polled)
		clk.Advance(cfg.Tick)
	}
	require.Equal(t, t0.Add(time.Minute), recv(t, polled).At, "60 one-second ticks later")
	cancel()
	require.NoError(t, recv(t, done))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*schedule.Config)
		wantErr string
	}{
		{"default", func(*schedule.Config) {}, ""},
		{"zero tick", func(c *schedule.Config) { c.Tick = 0 }, "Tick"},
		{"near beyond mid", func(c *schedule.Config) { c.Near = time.Hour }, "Near"},
		{"intervals shrink with distance", func(c *schedule.Config) { c.FarInterval = 10 * time.Second }, "intervals"},
		{"tick slower than the near cadence", func(c *schedule.Config) { c.Tick = time.Minute }, "Tick"},
		{"no polls allowed", func(c *schedule.Config) { c.MaxInFlight = 0 }, "MaxInFlight"},
		{"negative timeout", func(c *schedule.Config) { c.PollTimeout = -time.Second }, "PollTimeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := schedule.DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			_, err = schedule.New(cfg, schedule.Deps{Races: &fakeRaces{}, Poller: &fakePoller{}})
			require.Error(t, err)
		})
	}
}

// recv waits for a value the code under test is bound to send; the timeout
// only turns a hang into a failure.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("timed out waiting for a value")
		var zero T
		return zero
	}
}

// TestSettleAppliesResultsWithoutRequestingPolls is the drain after
// scheduling stopped: results that arrive are applied, nothing new is
// requested, however overdue a race is.
func TestSettleAppliesResultsWithoutRequestingPolls(t *testing.T) {
	t.Parallel()
	cfg := schedule.DefaultConfig()
	h := newHarness(t, cfg, race("r1", t0.Add(time.Minute), "open"), race("r2", t0.Add(2*time.Minute), "open"))
	h.tick()
	require.Equal(t, 2, h.s.Stats().InFlight)

	h.respond(h.poller.last("r1"), "open")
	h.now = h.now.Add(time.Minute) // r1 is overdue now
	st := h.s.Settle(h.now)
	require.Equal(t, 1, st.InFlight, "r1's result is applied")
	require.Equal(t, st, h.s.Stats(), "the stats are published")
	require.Len(t, h.poller.polls("r1"), 1, "settling requests nothing")

	h.respond(h.poller.last("r2"), "final")
	st = h.s.Settle(h.now)
	require.Zero(t, st.InFlight)
	require.Equal(t, 1, st.Finished, "a final result still ends its race")
	require.Len(t, h.poller.polls("r2"), 1)
}
