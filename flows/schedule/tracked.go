package schedule

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// TrackedRace is what the scheduler knows of one race it polls, for the
// status page.
type TrackedRace struct {
	Race
	// Cadence is the race's current polling interval.
	Cadence time.Duration
	// Polls is how many polls of the race were requested.
	Polls int
	// LastRequest is when the last poll was requested; zero before the first.
	LastRequest time.Time
	// NextPoll is when the race is next due; zero while a poll is in flight
	// (the next one follows its result). A due race waiting for a free slot
	// has a NextPoll in the past.
	NextPoll time.Time
	// InFlight: a poll was requested and its result has not arrived.
	InFlight bool
	// Lost: the last poll's result never arrived within PollTimeout.
	Lost bool
}

// trackedWait is how often Tracked retries the scheduler's lock while a
// tick holds it.
const trackedWait = 2 * time.Millisecond

// Tracked returns the races being polled, earliest start first, as of the
// scheduler's clock. It waits for a tick in progress, but no longer than ctx
// allows: a tick blocked on a stalled database must not hang a reader.
func (s *Scheduler) Tracked(ctx context.Context) ([]TrackedRace, error) {
	for !s.mu.TryLock() {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("schedule: tracked races: %w", ctx.Err())
		case <-time.After(trackedWait):
		}
	}
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := make([]TrackedRace, 0, len(s.tracked))
	for _, st := range s.tracked {
		if st.gone {
			continue
		}
		tr := TrackedRace{Race: st.Race, Cadence: s.cfg.Interval(st.Start.Sub(now), st.Status), Polls: st.polls,
			LastRequest: st.lastRequest, InFlight: st.inFlight, Lost: st.lost}
		switch {
		case st.inFlight:
		case st.lastRequest.IsZero():
			tr.NextPoll = now
		default:
			tr.NextPoll = st.lastRequest.Add(tr.Cadence)
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}
