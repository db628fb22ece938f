// Package schedule decides when each active race is polled, keeps the day's
// meetings and races current (the daily baseline), and makes sure only one
// process does either (leader election on a PostgreSQL advisory lock).
//
// The scheduler is one loop, not a timer per race: every tick it computes
// which races are due, so a race's cadence follows its time to start the
// moment a band is crossed, a new race's first poll is immediate, and a
// global bound on polls in flight is trivial to keep (the pipeline this
// replaces ran one timer per race and could not bound its load).
// It depends on small interfaces (Races, Poller, Clock) rather than on the
// engine, so it is tested with fakes and driven by a fake clock.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Config shapes the scheduler. Start from DefaultConfig; every cadence
// number is here so the demo can compress a race day.
type Config struct {
	// Tick is how often the loop evaluates which races are due.
	Tick time.Duration
	// Near is the time to start within which (and after the start) a race is
	// polled every NearInterval. Closed and interim races are always near.
	Near         time.Duration
	NearInterval time.Duration
	// Mid is the time to start within which a race is polled every MidInterval.
	Mid         time.Duration
	MidInterval time.Duration
	// FarInterval is the cadence of races further out than Mid.
	FarInterval time.Duration
	// Horizon is how far ahead candidates are looked for.
	Horizon time.Duration
	// StuckAfter stops polling a race that is still not final this long
	// after its start, so a race the API never finalises is not polled forever.
	StuckAfter time.Duration
	// MaxInFlight bounds the polls in flight across all races.
	MaxInFlight int
	// PollTimeout is how long a poll may stay without a result before it is
	// considered lost and its race may be polled again.
	PollTimeout time.Duration
	// RefreshCandidates is how often the candidate races are re-read.
	RefreshCandidates time.Duration
}

// DefaultConfig is the production cadence: every 15 s from 5 minutes
// before the start, 30 s within 15 minutes, 60 s further out.
func DefaultConfig() Config {
	return Config{
		Tick:              time.Second,
		Near:              5 * time.Minute,
		NearInterval:      15 * time.Second,
		Mid:               15 * time.Minute,
		MidInterval:       30 * time.Second,
		FarInterval:       60 * time.Second,
		Horizon:           24 * time.Hour,
		StuckAfter:        2 * time.Hour,
		MaxInFlight:       5,
		PollTimeout:       2 * time.Minute,
		RefreshCandidates: 30 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Tick", c.Tick}, {"Near", c.Near}, {"NearInterval", c.NearInterval}, {"Mid", c.Mid},
		{"MidInterval", c.MidInterval}, {"FarInterval", c.FarInterval}, {"Horizon", c.Horizon},
		{"StuckAfter", c.StuckAfter}, {"PollTimeout", c.PollTimeout}, {"RefreshCandidates", c.RefreshCandidates},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("schedule: %s %s must be positive", d.name, d.v))
		}
	}
	if c.Near > c.Mid {
		errs = append(errs, fmt.Errorf("schedule: Near %s must not exceed Mid %s", c.Near, c.Mid))
	}
	if c.NearInterval > c.MidInterval || c.MidInterval > c.FarInterval {
		errs = append(errs, fmt.Errorf("schedule: intervals must not shrink with distance: near %s, mid %s, far %s",
			c.NearInterval, c.MidInterval, c.FarInterval))
	}
	if c.Tick > c.NearInterval {
		errs = append(errs, fmt.Errorf("schedule: Tick %s must not exceed NearInterval %s", c.Tick, c.NearInterval))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("schedule: MaxInFlight %d must be at least 1", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

// Interval is the cadence of a race whose start is untilStart away
// (negative once started) and whose status is status.
func (c Config) Interval(untilStart time.Duration, status string) time.Duration {
	switch {
	case status == string(nztab.StatusClosed) || status == string(nztab.StatusInterim):
		return c.NearInterval
	case untilStart <= c.Near:
		return c.NearInterval
	case untilStart <= c.Mid:
		return c.MidInterval
	default:
		return c.FarInterval
	}
}

// Race is a candidate for polling.
type Race struct {
	ID     string
	Start  time.Time
	Status string // open|closed|interim (final and abandoned are never polled)
}

// Races lists the races that may need polling at now.
type Races interface {
	Candidates(ctx context.Context, now time.Time) ([]Race, error)
}

// Poller requests one poll of a race and returns its poll id; the result
// arrives later through Scheduler.OnResult. *flows.Engine implements it.
type Poller interface {
	RequestPoll(ctx context.Context, raceID, reason string) (string, error)
}

// Poll reasons, carried on race.poll for the logs.
const (
	ReasonFirst   = "first"   // the first poll of a newly seen race
	ReasonCadence = "cadence" // the race's interval has passed
	ReasonLost    = "lost"    // the previous poll's result never arrived
)

// Reasons a race stops being polled.
const (
	StopFinal     = "final"
	StopAbandoned = "abandoned"
	StopNotFound  = "not_found"
	StopStuck     = "stuck"
)

// Stats is a snapshot for the demo and metrics. Polled, Finished and Lost
// are totals since the scheduler was built.
type Stats struct {
	Tracked  int // races being polled
	InFlight int // polls requested whose result has not arrived
	Polled   int // polls requested
	Finished int // races that stopped being polled (final, abandoned, 404, stuck)
	Lost     int // polls given up on after PollTimeout
}

// Deps are what the scheduler runs on. Races and Poller are required; Clock
// defaults to the wall clock and Logger to discarding.
type Deps struct {
	Races  Races
	Poller Poller
	Clock  Clock
	Logger logrus.FieldLogger
}

// inboxLimit bounds results waiting for the next tick. A process that is not
// the leader still sees every result; dropping the oldest is safe because a
// lost result only delays the next poll until PollTimeout, and terminal
// statuses are also read back from the database.
const inboxLimit = 4096

// Scheduler polls every active race at its cadence.
type Scheduler struct {
	cfg    Config
	races  Races
	poller Poller
	clock  Clock
	log    logrus.FieldLogger

	// mu is held for a whole Tick: ticks never overlap, and nothing else
	// touches the state below.
	mu          sync.Mutex
	tracked     map[string]*raceState
	finished    map[string]time.Time // race id → when it can be forgotten
	nextRefresh time.Time
	totals      Stats

	inboxMu sync.Mutex
	inbox   []handlers.ProcessResult
	dropped int

	statsMu sync.Mutex
	stats   Stats
}

type raceState struct {
	Race
	lastRequest time.Time // zero: never polled
	sentAt      time.Time
	pollID      string
	inFlight    bool
	lost        bool // the last poll was given up on
	gone        bool // no longer a candidate; dropped once idle
	polls       int
}

// New builds a scheduler; cfg is validated.
func New(cfg Config, deps Deps) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Races == nil || deps.Poller == nil {
		return nil, errors.New("schedule: Races and Poller are required")
	}
	if deps.Clock == nil {
		deps.Clock = RealClock{}
	}
	if deps.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		deps.Logger = l
	}
	return &Scheduler{
		cfg: cfg, races: deps.Races, poller: deps.Poller, clock: deps.Clock,
		log:      deps.Logger.WithField("component", "scheduler"),
		tracked:  make(map[string]*raceState),
		finished: make(map[string]time.Time),
	}, nil
}

// OnResult feeds a poll result back to the scheduler; register it with
// Engine.OnResult. It never blocks on the scheduler's work and is safe from
// any goroutine; the result takes effect at the next tick. Replayed results
// are ignored: a replay re-feeds old polls and must not move the schedule.
func (s *Scheduler) OnResult(res handlers.ProcessResult) {
	if res.Replay {
		return
	}
	s.inboxMu.Lock()
	defer s.inboxMu.Unlock()
	if len(s.inbox) >= inboxLimit {
		s.inbox = s.inbox[1:]
		s.dropped++
	}
	s.inbox = append(s.inbox, res)
}

// Stats returns the counts as of the last tick; it does not wait for a tick
// in progress.
func (s *Scheduler) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// Run ticks every cfg.Tick until ctx ends, then returns nil. A failed tick
// (the database or the pub/sub unavailable) is logged; the next tick retries.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.WithField("max_in_flight", s.cfg.MaxInFlight).Info("scheduler started")
	defer s.log.Info("scheduler stopped")
	for {
		if err := s.Tick(ctx, s.clock.Now()); err != nil && ctx.Err() == nil {
			s.log.WithError(err).Warn("scheduler tick")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(s.cfg.Tick):
		}
	}
}

// Tick does one evaluation at now: applies the results received since the
// last tick, stops stuck races, gives up on lost polls, re-reads the
// candidates when due (dropping vanished races), and requests polls for the due
// races, most urgent (earliest start) first, within MaxInFlight. The error
// joins what went wrong; the state stays consistent either way.
func (s *Scheduler) Tick(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	s.applyResults(now)
	// Stop stuck races before the refresh, which would otherwise drop them
	// silently as no longer candidates.
	s.expire(now)
	if !now.Before(s.nextRefresh) {
		if err := s.refresh(ctx, now); err != nil {
			errs = append(errs, err)
			// Retry sooner than a full refresh period: until the first
			// success nothing is polled at all.
			s.nextRefresh = now.Add(min(s.cfg.RefreshCandidates, 5*s.cfg.Tick))
		} else {
			s.nextRefresh = now.Add(s.cfg.RefreshCandidates)
		}
	}
	errs = append(errs, s.request(ctx, now)...)
	s.publishStats()
	return errors.Join(errs...)
}

// Settle applies the results received since the last tick and returns the
// counts, requesting nothing: a drain uses it once scheduling has stopped,
// when no tick applies results any more.
func (s *Scheduler) Settle(now time.Time) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyResults(now)
	s.publishStats()
	return s.Stats()
}

func (s *Scheduler) applyResults(now time.Time) {
	s.inboxMu.Lock()
	results, dropped := s.inbox, s.dropped
	s.inbox, s.dropped = nil, 0
	s.inboxMu.Unlock()
	if dropped > 0 {
		s.log.WithField("dropped", dropped).Warn("scheduler result inbox overflowed; oldest results dropped")
	}
	for _, res := range results {
		st := s.tracked[res.RaceID]
		if st != nil {
			// Only the result of the poll in flight frees the race: a late
			// result of a poll given up on must not let a second poll
			// overlap the current one.
			if st.inFlight && res.PollID == st.pollID {
				st.inFlight, st.pollID = false, ""
			}
			if res.RaceStatus != "" {
				st.Status = res.RaceStatus
			}
		}
		// Any result may carry the news that ends a race, whoever asked for
		// the poll (process, a lost poll arriving late).
		switch {
		case res.RaceStatus == string(nztab.StatusFinal):
			s.finish(res.RaceID, StopFinal, now)
		case res.RaceStatus == string(nztab.StatusAbandoned):
			s.finish(res.RaceID, StopAbandoned, now)
		case res.Error != nil && res.Error.Kind == handlers.KindNotFound:
			s.finish(res.RaceID, StopNotFound, now)
		case st != nil && st.gone && !st.inFlight:
			delete(s.tracked, res.RaceID)
		}
	}
}

func (s *Scheduler) refresh(ctx context.Context, now time.Time) error {
	list, err := s.races.Candidates(ctx, now)
	if err != nil {
		return fmt.Errorf("schedule: candidates: %w", err)
	}
	seen := make(map[string]bool, len(list))
	for _, r := range list {
		if _, done := s.finished[r.ID]; done {
			continue
		}
		if r.Status == string(nztab.StatusFinal) || r.Status == string(nztab.StatusAbandoned) {
			continue
		}
		if !now.Before(r.Start.Add(s.cfg.StuckAfter)) {
			continue // stuck; expire stops a tracked one
		}
		seen[r.ID] = true
		st := s.tracked[r.ID]
		if st == nil {
			s.tracked[r.ID] = &raceState{Race: r}
			s.log.WithFields(logrus.Fields{"race_id": r.ID, "start": r.Start, "status": r.Status}).Debug("race scheduled")
			continue
		}
		st.Start, st.Status, st.gone = r.Start, r.Status, false
	}
	for id, st := range s.tracked {
		if seen[id] {
			continue
		}
		if st.inFlight {
			st.gone = true // its result (or PollTimeout) still counts against the bound
			continue
		}
		delete(s.tracked, id)
	}
	return nil
}

func (s *Scheduler) expire(now time.Time) {
	for id, until := range s.finished {
		if !now.Before(until) {
			delete(s.finished, id)
		}
	}
	for id, st := range s.tracked {
		if !now.Before(st.Start.Add(s.cfg.StuckAfter)) {
			s.finish(id, StopStuck, now)
			continue
		}
		if st.inFlight && !now.Before(st.sentAt.Add(s.cfg.PollTimeout)) {
			s.log.WithFields(logrus.Fields{"race_id": id, "poll_id": st.pollID, "sent_at": st.sentAt}).
				Warn("poll result never arrived; race may be polled again")
			st.inFlight, st.pollID, st.lost = false, "", true
			s.totals.Lost++
			if st.gone {
				delete(s.tracked, id)
			}
		}
	}
}

// finish stops polling a race for good. It is remembered until it can no
// longer be a candidate, so a database that lags behind the result (or a
// 404 race the database still calls open) does not bring it back.
func (s *Scheduler) finish(id, reason string, now time.Time) {
	forget := now.Add(s.cfg.Horizon + s.cfg.StuckAfter)
	fields := logrus.Fields{"race_id": id, "reason": reason}
	if st := s.tracked[id]; st != nil {
		forget = st.Start.Add(s.cfg.StuckAfter)
		if forget.Before(now) {
			forget = now
		}
		fields["polls"], fields["status"] = st.polls, st.Status
		delete(s.tracked, id)
		s.totals.Finished++
		s.log.WithFields(fields).Info("race completed")
	} else if _, done := s.finished[id]; done {
		return
	}
	s.finished[id] = forget
}

func (s *Scheduler) request(ctx context.Context, now time.Time) []error {
	inFlight := 0
	var due []*raceState
	for _, st := range s.tracked {
		switch {
		case st.inFlight:
			inFlight++
		case st.gone:
		case st.lastRequest.IsZero(),
			!now.Before(st.lastRequest.Add(s.cfg.Interval(st.Start.Sub(now), st.Status))):
			due = append(due, st)
		}
	}
	slots := s.cfg.MaxInFlight - inFlight
	if slots <= 0 || len(due) == 0 {
		return nil
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Start.Equal(due[j].Start) {
			return due[i].Start.Before(due[j].Start)
		}
		return due[i].ID < due[j].ID
	})
	var errs []error
	for _, st := range due[:min(slots, len(due))] {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		reason := ReasonCadence
		switch {
		case st.polls == 0:
			reason = ReasonFirst
		case st.lost:
			reason = ReasonLost
		}
		// A request that fails still counts as this slot's attempt: the
		// race waits its interval instead of hammering a broken backend
		// every tick.
		st.lastRequest = now
		pollID, err := s.poller.RequestPoll(ctx, st.ID, reason)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule: request poll of %s: %w", st.ID, err))
			continue
		}
		st.inFlight, st.pollID, st.sentAt, st.lost = true, pollID, now, false
		st.polls++
		s.totals.Polled++
		s.log.WithFields(logrus.Fields{"race_id": st.ID, "poll_id": pollID, "reason": reason,
			"until_start_s": int(st.Start.Sub(now).Seconds())}).Debug("race polled")
	}
	return errs
}

func (s *Scheduler) publishStats() {
	st := s.totals
	st.Tracked = len(s.tracked)
	for _, r := range s.tracked {
		if r.inFlight {
			st.InFlight++
		}
	}
	s.statsMu.Lock()
	s.stats = st
	s.statsMu.Unlock()
}
