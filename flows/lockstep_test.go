package flows_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
)

// lockstep drives the simulated race day of services under test by their
// progress rather than by the wall clock: the clock moves one step only when
// every loop that waits on it is waiting again and every poll the schedulers
// requested has its result. A busy machine makes such a test slower, never
// different (an accelerated wall clock let the day run ahead of the polls).
type lockstep struct {
	clock   *schedule.FakeClock
	loops   int
	svcs    []*flows.Service
	results []atomic.Int64
	wake    chan struct{}
}

// newLockstep watches the results of svcs, whose leader runs loops timers
// on clock while it waits (its scheduler and its daily baseline: 2). Call it
// before the services run, so no result goes uncounted.
func newLockstep(clock *schedule.FakeClock, loops int, svcs ...*flows.Service) *lockstep {
	l := &lockstep{clock: clock, loops: loops, svcs: svcs, results: make([]atomic.Int64, len(svcs)), wake: make(chan struct{}, 1)}
	for i, s := range svcs {
		s.Engine().OnResult(func(handlers.ProcessResult) {
			l.results[i].Add(1)
			select {
			case l.wake <- struct{}{}:
			default:
			}
		})
	}
	return l
}

// runUntil steps the clock by step until it reaches end, settling before
// each step and after the last.
func (l *lockstep) runUntil(t *testing.T, end time.Time, step time.Duration) {
	t.Helper()
	for l.clock.Now().Before(end) {
		l.settle(t)
		l.clock.Advance(step)
	}
	l.settle(t)
}

// settle waits until the loops wait on the clock again (the scheduler has
// finished its tick, so its Polled count is current) and every requested
// poll has its result. The minute is a failure bound, not a budget.
func (l *lockstep) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, l.clock.WaitForWaiters(ctx, l.loops), "at %s the service's loops did not come back to wait on the clock",
		l.clock.Now().Format(time.TimeOnly))
	for i, s := range l.svcs {
		for {
			polled, got := s.Scheduler().Stats().Polled, l.results[i].Load()
			if got >= int64(polled) {
				break
			}
			select {
			case <-l.wake:
			case <-ctx.Done():
				t.Fatalf("at %s service %d has %d results for %d requested polls after a minute",
					l.clock.Now().Format(time.TimeOnly), i, got, polled)
			}
		}
	}
}

// simStep is how far a lockstep test moves its simulated clock at a time,
// and its schedulers' tick: fine enough for the 15 s cadence near a start.
const simStep = 5 * time.Second
