package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Kinds of baseline run.
const (
	BaselineStartup = "startup" // the run when the runner starts
	BaselineDaily   = "daily"   // the run at DailyAt NZ time
	BaselineRefresh = "refresh" // the meeting refresh every Refresh
	BaselineManual  = "manual"  // RunOnce called from outside
)

// ErrBaselineBusy is returned by RunOnce while another run is in progress.
var ErrBaselineBusy = errors.New("schedule: a baseline run is already in progress")

// BaselineRunner keeps today's meetings and races in the database: a run at
// start, a run at DailyAt (06:00 Pacific/Auckland) every day, and a meeting
// refresh every Refresh in between, so track conditions, tote status, start
// time changes and late races reach the scheduler. Runs never overlap. A failed run is logged and the next slot is the
// retry; nothing here is fatal.
//
// Fill the fields and call Run; the zero values of the durations mean the
// defaults.
type BaselineRunner struct {
	// Fetch returns the meetings of one NZ day (YYYY-MM-DD);
	// (*nztab.Client).FetchMeetings fits.
	Fetch func(ctx context.Context, day string) (nztab.MeetingsList, error)
	// Upsert writes the rows; a closure over baseline.Upsert and a pool fits.
	Upsert func(ctx context.Context, meetings []baseline.MeetingRow, races []baseline.RaceRow) (baseline.Counts, error)
	// Store, when set, keeps each fetched list for replay before it is
	// applied; a closure over baseline.Store and a pool fits. A failure is
	// logged and does not stop the run.
	Store func(ctx context.Context, resp baseline.Response) error
	// Clock defaults to the wall clock.
	Clock Clock
	// Filter selects the meetings kept; the zero value is NZ/AUS T/H.
	Filter baseline.Filter
	// Log defaults to discarding.
	Log logrus.FieldLogger
	// Refresh is the meeting refresh period (default 30 min), counted from
	// the start of the previous run of any kind.
	Refresh time.Duration
	// DailyAt is the NZ wall-clock time of the daily run as an offset from
	// midnight (default 6 h). It is wall-clock time, so on a DST change day
	// it is still 06:00 local.
	DailyAt time.Duration
	// Timeout bounds one run (default 15 min).
	Timeout time.Duration
	// OnRun, when set, sees every run's outcome (tests, the demo's progress).
	OnRun func(BaselineRun)

	running   sync.Mutex // single flight
	firstOnce sync.Once
	firstMu   sync.Mutex
	first     chan struct{}
}

// BaselineRun is the outcome of one run.
type BaselineRun struct {
	Kind string
	Day  string // the NZ day fetched
	At   time.Time
	// Meetings and Races are the rows mapped after filtering.
	Meetings, Races int
	// Invalid are meetings the API sent that failed validation; Skipped are
	// kept meetings or races that could not be mapped.
	Invalid []nztab.MeetingError
	Skipped []baseline.Skip
	Counts  baseline.Counts
	// ObservedAt is when the list was fetched, the instant its rows carry.
	ObservedAt time.Time
	// StoreErr is why the list could not be stored (Store), if it could not.
	StoreErr error
	Err      error
}

func (r *BaselineRunner) clock() Clock {
	if r.Clock == nil {
		return RealClock{}
	}
	return r.Clock
}

func (r *BaselineRunner) log() logrus.FieldLogger {
	if r.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		return l
	}
	return r.Log
}

func (r *BaselineRunner) refresh() time.Duration { return orDefault(r.Refresh, 30*time.Minute) }
func (r *BaselineRunner) dailyAt() time.Duration { return orDefault(r.DailyAt, 6*time.Hour) }
func (r *BaselineRunner) timeout() time.Duration { return orDefault(r.Timeout, 15*time.Minute) }

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Validate checks the runner's fields (zero durations mean the defaults).
func (r *BaselineRunner) Validate() error {
	var errs []error
	if r.Fetch == nil || r.Upsert == nil {
		errs = append(errs, errors.New("schedule: baseline needs Fetch and Upsert"))
	}
	if r.Refresh < 0 || r.Timeout < 0 {
		errs = append(errs, fmt.Errorf("schedule: baseline Refresh %s and Timeout %s must not be negative", r.Refresh, r.Timeout))
	}
	if r.DailyAt < 0 || r.DailyAt >= 24*time.Hour {
		errs = append(errs, fmt.Errorf("schedule: baseline DailyAt %s must be within [0, 24h)", r.DailyAt))
	}
	if err := r.Filter.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// FirstRun is closed once the first run (successful or not) has finished,
// so the caller can start the scheduler on a populated races table.
func (r *BaselineRunner) FirstRun() <-chan struct{} { return r.firstChan() }

func (r *BaselineRunner) firstChan() chan struct{} {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	if r.first == nil {
		r.first = make(chan struct{})
	}
	return r.first
}

// Run runs at start, then at every slot until ctx ends; it returns nil then,
// or an error at once when the fields are invalid.
func (r *BaselineRunner) Run(ctx context.Context) error {
	if err := r.Validate(); err != nil {
		return err
	}
	clock := r.clock()
	start := clock.Now()
	nextDaily := r.nextDaily(start)
	r.runLogged(ctx, BaselineStartup)
	lastRun := start
	for {
		next, kind := lastRun.Add(r.refresh()), BaselineRefresh
		if !nextDaily.After(next) {
			next, kind = nextDaily, BaselineDaily
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clock.After(next.Sub(clock.Now())):
		}
		lastRun = clock.Now()
		r.runLogged(ctx, kind)
		if kind == BaselineDaily {
			// From the slot, not from now: a run that overran must not
			// skip the next day's slot.
			nextDaily = r.nextDaily(later(nextDaily, lastRun))
		}
	}
}

// RunOnce runs the baseline now, unless a run is already in progress
// (ErrBaselineBusy). The run's own failure is in BaselineRun.Err.
func (r *BaselineRunner) RunOnce(ctx context.Context) (BaselineRun, error) {
	if err := r.Validate(); err != nil {
		return BaselineRun{}, err
	}
	return r.runOnce(ctx, BaselineManual)
}

func (r *BaselineRunner) runLogged(ctx context.Context, kind string) {
	if _, err := r.runOnce(ctx, kind); err != nil {
		r.log().WithField("kind", kind).WithError(err).Warn("baseline run skipped")
	}
}

func (r *BaselineRunner) runOnce(ctx context.Context, kind string) (BaselineRun, error) {
	if !r.running.TryLock() {
		return BaselineRun{}, ErrBaselineBusy
	}
	defer r.running.Unlock()
	run := r.do(ctx, kind)
	log := r.log().WithFields(logrus.Fields{
		"kind": kind, "day": run.Day, "meetings": run.Meetings, "races": run.Races,
		"meetings_inserted": run.Counts.MeetingsInserted, "meetings_updated": run.Counts.MeetingsUpdated,
		"races_inserted": run.Counts.RacesInserted, "races_updated": run.Counts.RacesUpdated,
		"invalid_meetings": len(run.Invalid), "skipped": len(run.Skipped),
		"meetings_rejected": run.Counts.MeetingsRejected, "races_rejected": run.Counts.RacesRejected,
		"duration_ms": float64(r.clock().Now().Sub(run.At)) / float64(time.Millisecond),
	})
	for _, sk := range run.Skipped {
		log.WithError(sk).Warn("baseline row skipped")
	}
	for _, inv := range run.Invalid {
		log.WithError(inv.Err).WithField("meeting_id", inv.MeetingID).Warn("baseline meeting invalid")
	}
	// A run that shutdown cut short did not fail (its writes, the list's
	// storing, each meeting's retry all end with the context): the next
	// start runs it again.
	if ctx.Err() != nil && (run.Err != nil || run.StoreErr != nil || len(run.Counts.Rejected) > 0) {
		log.Info("baseline interrupted by shutdown")
	} else {
		for _, rj := range run.Counts.Rejected {
			log.WithError(rj).Warn("baseline meeting refused by the database")
		}
		if run.StoreErr != nil {
			log.WithError(run.StoreErr).Warn("baseline response not stored for replay")
		}
		if run.Err != nil {
			log.WithError(run.Err).Error("baseline failed; retrying at the next slot")
		} else {
			log.Info("baseline done")
		}
	}
	if r.OnRun != nil {
		r.OnRun(run)
	}
	r.firstOnce.Do(func() { close(r.firstChan()) })
	return run, nil
}

func (r *BaselineRunner) do(ctx context.Context, kind string) BaselineRun {
	now := r.clock().Now()
	run := BaselineRun{Kind: kind, At: now, Day: nzday.Of(now).String()}
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	list, err := r.Fetch(ctx, run.Day)
	if err != nil {
		run.Err = fmt.Errorf("schedule: baseline fetch meetings of %s: %w", run.Day, err)
		return run
	}
	// The rows are mapped from the response as stored, so a replay applying
	// the stored response (baseline.Apply) writes what this run wrote.
	run.ObservedAt = r.clock().Now()
	resp, err := baseline.ResponseOf(run.Day, run.ObservedAt, list)
	if err != nil {
		run.Err = fmt.Errorf("schedule: baseline of %s: %w", run.Day, err)
		return run
	}
	if r.Store != nil {
		run.StoreErr = r.Store(ctx, resp)
	}
	plan, err := baseline.PlanOf(resp, r.Filter)
	if err != nil {
		run.Err = fmt.Errorf("schedule: baseline of %s: %w", run.Day, err)
		return run
	}
	run.Invalid, run.Skipped = plan.Invalid, plan.Skipped
	run.Meetings, run.Races = len(plan.Meetings), len(plan.Races)
	if run.Counts, err = r.Upsert(ctx, plan.Meetings, plan.Races); err != nil {
		run.Err = fmt.Errorf("schedule: baseline upsert of %s: %w", run.Day, err)
	}
	return run
}

// nextDaily is the first DailyAt NZ wall-clock instant strictly after t.
func (r *BaselineRunner) nextDaily(t time.Time) time.Time {
	at := r.dailyAt()
	h, m := int(at/time.Hour), int(at%time.Hour/time.Minute)
	for d := nzday.Of(t); ; d = d.AddDays(1) {
		slot := time.Date(d.Year, d.Month, d.Day, h, m, 0, 0, nzday.Location())
		if slot.After(t) {
			return slot
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
