package bench

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nzday"
)

// Simulator defaults.
const (
	DefaultSimRunners = 16
	DefaultSimSteps   = 200
	DefaultSimSeeds   = 64
	// MaxSimSteps keeps the first poll on the racing day: races start at
	// noon NZ time and a step is 15 s.
	MaxSimSteps = 2000
)

// ErrNotEnoughRaces means the simulated days of every allowed seed hold
// fewer races of the wanted field size than asked for.
var ErrNotEnoughRaces = errors.New("bench: not enough simulated races of that field size")

// SimConfig selects the simulated races a benchmark polls.
type SimConfig struct {
	// Seed is the first simulator seed. One simulated day holds only a
	// handful of full-field races, so further seeds (Seed+1, Seed+2, ...) are
	// added until Races races are found.
	Seed int64
	// Races is how many distinct races are wanted.
	Races int
	// Runners is the field size every selected race has (default 16, the
	// largest the simulator builds and the target's reference race).
	Runners int
	// Steps is how many polls each race will get; the clock starts Steps+1
	// simulator steps (15 s each) before the earliest selected race so every
	// poll sees an open race with new money (default 200).
	Steps int
	// MaxSeeds bounds how many simulated days are built (default 64).
	MaxSeeds int
	// Date is the NZ racing day (default: today in NZ), so history rows fall
	// into the partitions around now.
	Date string
	// Latency delays every API response (real time).
	Latency time.Duration
}

func (c SimConfig) withDefaults() SimConfig {
	if c.Runners == 0 {
		c.Runners = DefaultSimRunners
	}
	if c.Steps == 0 {
		c.Steps = DefaultSimSteps
	}
	if c.MaxSeeds == 0 {
		c.MaxSeeds = DefaultSimSeeds
	}
	if c.Date == "" {
		c.Date = nzday.Of(time.Now()).String()
	}
	return c
}

// Validate checks the configuration (zero fields take their defaults).
func (c SimConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Races < 1 {
		errs = append(errs, fmt.Errorf("bench: simulator races %d must be at least 1", c.Races))
	}
	if c.Runners < 1 {
		errs = append(errs, fmt.Errorf("bench: simulator runners %d must be positive", c.Runners))
	}
	if c.Steps < 1 || c.Steps > MaxSimSteps {
		errs = append(errs, fmt.Errorf("bench: simulator steps %d must be within 1..%d", c.Steps, MaxSimSteps))
	}
	if c.MaxSeeds < 1 {
		errs = append(errs, fmt.Errorf("bench: simulator max seeds %d must be positive", c.MaxSeeds))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("bench: simulator latency %s must not be negative", c.Latency))
	}
	if _, err := nzday.Parse(c.Date); err != nil {
		errs = append(errs, fmt.Errorf("bench: simulator date: %w", err))
	}
	return errors.Join(errs...)
}

// Sim is the API a benchmark polls: one or more simulated race days (one
// per seed) behind one handler, on a shared clock the benchmark moves one
// step per iteration. It also measures the CPU time its handlers use, so
// the pipeline's own CPU cost can be told apart from the in-process API's.
type Sim struct {
	clock *nztabsim.ManualClock
	sims  []*nztabsim.Sim
	owner map[string]*nztabsim.Sim
	races []nztabsim.RaceInfo
	seeds []int64
	last  time.Time // the clock never passes this: the earliest start − 1 step
	cpuNS atomic.Int64
}

// NewSim builds the simulated days and selects the races.
func NewSim(cfg SimConfig) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// The clock is set once the races are known; until then it stands at
	// the start of the day, before any race.
	day, _ := nzday.Parse(cfg.Date)
	s := &Sim{clock: nztabsim.NewManualClock(day.Start()), owner: map[string]*nztabsim.Sim{}}
	for i := 0; i < cfg.MaxSeeds && len(s.races) < cfg.Races; i++ {
		seed := cfg.Seed + int64(i)
		sim, err := nztabsim.New(nztabsim.Config{
			Seed: seed, Date: cfg.Date, Meetings: nztabsim.MaxMeetings, ExtraMeetings: -1,
			RacesPerMeeting: nztabsim.MaxRacesPerMeeting, Clock: s.clock,
		})
		if err != nil {
			return nil, fmt.Errorf("bench: simulator seed %d: %w", seed, err)
		}
		picked := pickRaces(sim.Races(), cfg.Runners, cfg.Races-len(s.races))
		if len(picked) == 0 {
			continue
		}
		if err := sim.SetFaults(nztabsim.Faults{Latency: cfg.Latency}); err != nil {
			return nil, fmt.Errorf("bench: simulator faults: %w", err)
		}
		s.sims = append(s.sims, sim)
		s.seeds = append(s.seeds, seed)
		for _, r := range picked {
			s.owner[r.ID] = sim
			s.races = append(s.races, r)
		}
	}
	if len(s.races) < cfg.Races {
		return nil, fmt.Errorf("%w: found %d %d-runner races in %d seeds from %d, want %d",
			ErrNotEnoughRaces, len(s.races), cfg.Runners, cfg.MaxSeeds, cfg.Seed, cfg.Races)
	}
	first := s.races[0].StartTime
	for _, r := range s.races {
		if r.StartTime.Before(first) {
			first = r.StartTime
		}
	}
	s.last = first.Add(-nztabsim.Step)
	s.clock.Set(first.Add(-time.Duration(cfg.Steps+1) * nztabsim.Step))
	return s, nil
}

// pickRaces returns up to n races with the given field size that are never
// abandoned, in start order.
func pickRaces(all []nztabsim.RaceInfo, runners, n int) []nztabsim.RaceInfo {
	var out []nztabsim.RaceInfo
	for _, r := range all {
		if r.Runners == runners && r.AbandonedAt.IsZero() {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime.Before(out[j].StartTime) })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Races are the selected races.
func (s *Sim) Races() []nztabsim.RaceInfo { return append([]nztabsim.RaceInfo(nil), s.races...) }

// RaceIDs are the selected races' ids, in the order of Races.
func (s *Sim) RaceIDs() []string {
	ids := make([]string, len(s.races))
	for i, r := range s.races {
		ids[i] = r.ID
	}
	return ids
}

// Seeds are the simulator seeds whose days hold the selected races.
func (s *Sim) Seeds() []int64 { return append([]int64(nil), s.seeds...) }

// Now is the simulated instant.
func (s *Sim) Now() time.Time { return s.clock.Now() }

// Advance moves the simulated clock one step (15 s), so the next poll of a
// race sees new prices and money, as a live poll would. It stops one step
// before the earliest selected race closes.
func (s *Sim) Advance() time.Time {
	if next := s.clock.Now().Add(nztabsim.Step); !next.After(s.last) {
		s.clock.Set(next)
	}
	return s.clock.Now()
}

// Requests is the number of requests served so far.
func (s *Sim) Requests() int64 {
	var n int64
	for _, sim := range s.sims {
		n += sim.Requests()
	}
	return n
}

// CPU is the CPU time the simulator's handlers used so far (zero where the
// platform cannot measure a thread's CPU time).
func (s *Sim) CPU() time.Duration { return time.Duration(s.cpuNS.Load()) }

// ServeHTTP routes an event request to the simulated day that owns the
// race and every other request to the first day.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sim := s.sims[0]
	if i := strings.LastIndex(r.URL.Path, "/racing/events/"); i >= 0 {
		if o, ok := s.owner[r.URL.Path[i+len("/racing/events/"):]]; ok {
			sim = o
		}
	}
	// Locked to its thread, the handler's CPU time is the thread's: the
	// in-process API's share of the process CPU can then be subtracted.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	sim.ServeHTTP(w, r)
	s.cpuNS.Add(int64(threadCPU() - start))
}
