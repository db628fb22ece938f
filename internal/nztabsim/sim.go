// Package nztabsim simulates the NZ TAB Affiliates API for one racing day:
// meetings, races, runners whose prices, money and pools move every 15 s,
// races that close, run, post interim and final results, scratchings and the
// odd abandonment, plus injectable faults.
//
// The day is deterministic. Its plan (ids, fields, start times, results) is
// drawn once from (Seed, Date); what a race looks like at an instant is then
// a pure function of the plan and that instant, computed on demand. The same
// Config therefore serves byte-identical bodies for the same simulated
// instant, whatever the order or number of requests.
//
// Sim is an http.Handler. It answers under "/affiliates/v1/..." and under
// "/...", so a client's base URL may be either srv.URL or
// srv.URL+"/affiliates/v1".
package nztabsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raceflow/raceflow/stages/nzday"
)

// ErrUnknownRace is returned for a race id the simulated day does not have.
var ErrUnknownRace = errors.New("nztabsim: unknown race")

// Sim is a simulated NZ TAB API for one racing day. It is safe for
// concurrent use.
type Sim struct {
	seed     uint64
	dayKey   uint64
	date     string
	loc      *time.Location
	dayStart time.Time
	clock    Clock

	meetings    []*meeting
	meetingByID map[string]*meeting
	races       []*race
	byID        map[string]*race

	requests atomic.Int64
	raceReqs map[string]*atomic.Int64

	plunges []PlungeInfo

	faultMu    sync.Mutex
	faults     Faults
	faultRand  *rand.Rand
	raceFaults map[string]FaultKind
}

// MeetingInfo describes a simulated meeting.
type MeetingInfo struct {
	ID       string
	Name     string
	Country  string
	Category string // T, H or G
	State    string
	// RaceIDs lists the meeting's races in race-number order.
	RaceIDs []string
	// FirstStart is the advertised start of race 1.
	FirstStart time.Time
}

// RaceInfo describes a simulated race and its planned lifecycle.
type RaceInfo struct {
	ID          string
	MeetingID   string
	MeetingName string
	RaceNumber  int
	Country     string
	Category    string
	// StartTime is the advertised start; betting closes (status Closed) here.
	StartTime time.Time
	// Runners is the number of entrants, scratched ones included (6–16).
	Runners int
	// Scratchings is how many runners are scratched during the day, and
	// ScratchedAt when, in order.
	Scratchings int
	ScratchedAt []time.Time
	// ActualStart is when the field jumps.
	ActualStart time.Time
	// InterimAt and FinalAt are when the status becomes Interim and Final.
	InterimAt time.Time
	FinalAt   time.Time
	// AbandonedAt is when the race is abandoned; zero for most races.
	AbandonedAt time.Time
}

// New plans the race day described by cfg.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	day, err := nzday.Parse(cfg.Date)
	if err != nil {
		return nil, fmt.Errorf("%w: Date: %w", ErrInvalidConfig, err)
	}
	s := &Sim{
		seed:        uint64(cfg.Seed),
		dayKey:      uint64(day.Year*10000 + int(day.Month)*100 + day.Day),
		date:        day.String(),
		loc:         nzday.Location(),
		dayStart:    day.Start(),
		clock:       cfg.Clock,
		meetingByID: map[string]*meeting{},
		byID:        map[string]*race{},
		raceReqs:    map[string]*atomic.Int64{},
		raceFaults:  map[string]FaultKind{},
	}
	s.faultRand = s.rand(purposeFaults)
	s.build(cfg)
	if err := s.stagePlunges(cfg.Plunges); err != nil {
		return nil, err
	}
	for _, rc := range s.races {
		s.raceReqs[rc.id] = new(atomic.Int64)
	}
	return s, nil
}

// rand returns the generator for one aspect of the day, keyed by the seed,
// the date, the purpose and the given indices.
func (s *Sim) rand(purpose uint64, xs ...uint64) *rand.Rand {
	parts := make([]uint64, 0, 3+len(xs))
	parts = append(parts, s.seed, s.dayKey, purpose)
	return keyedRand(append(parts, xs...)...)
}

// Clock is the clock that decides the simulated "now".
func (s *Sim) Clock() Clock { return s.clock }

// Date is the simulated NZ racing day, YYYY-MM-DD.
func (s *Sim) Date() string { return s.date }

// Meetings lists every meeting of the day, extras included, ordered by the
// start of their first race.
func (s *Sim) Meetings() []MeetingInfo {
	out := make([]MeetingInfo, len(s.meetings))
	for i, m := range s.meetings {
		ids := make([]string, len(m.races))
		for j, rc := range m.races {
			ids[j] = rc.id
		}
		out[i] = MeetingInfo{
			ID: m.id, Name: m.name, Country: m.kind.country, Category: m.kind.category,
			State: m.venue.state, RaceIDs: ids, FirstStart: m.races[0].adv,
		}
	}
	return out
}

// Races lists every race of the day ordered by advertised start (then
// meeting and race number).
func (s *Sim) Races() []RaceInfo {
	out := make([]RaceInfo, len(s.races))
	for i, rc := range s.races {
		out[i] = rc.info()
	}
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].StartTime.Equal(out[b].StartTime) {
			return out[a].StartTime.Before(out[b].StartTime)
		}
		if out[a].MeetingName != out[b].MeetingName {
			return out[a].MeetingName < out[b].MeetingName
		}
		return out[a].RaceNumber < out[b].RaceNumber
	})
	return out
}

// Race describes one race.
func (s *Sim) Race(id string) (RaceInfo, error) {
	rc, ok := s.byID[id]
	if !ok {
		return RaceInfo{}, fmt.Errorf("%w: %q", ErrUnknownRace, id)
	}
	return rc.info(), nil
}

func (rc *race) info() RaceInfo {
	var scratched []time.Time
	for _, rn := range rc.runners {
		if !rn.scratchAt.IsZero() {
			scratched = append(scratched, rn.scratchAt)
		}
	}
	sort.Slice(scratched, func(i, j int) bool { return scratched[i].Before(scratched[j]) })
	return RaceInfo{
		ID: rc.id, MeetingID: rc.meeting.id, MeetingName: rc.meeting.name, RaceNumber: rc.number,
		Country: rc.meeting.kind.country, Category: rc.meeting.kind.category,
		StartTime: rc.adv, Runners: len(rc.runners), Scratchings: len(scratched), ScratchedAt: scratched,
		ActualStart: rc.actual, InterimAt: rc.interimAt, FinalAt: rc.finalAt, AbandonedAt: rc.abandonAt,
	}
}

// Status is the API status of a race at instant t ("Open", "Closed",
// "Interim", "Final" or "Abandoned").
func (s *Sim) Status(id string, t time.Time) (string, error) {
	rc, ok := s.byID[id]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownRace, id)
	}
	return rc.status(t), nil
}

// Requests is the number of HTTP requests served so far, faulted ones
// included.
func (s *Sim) Requests() int64 { return s.requests.Load() }

// RaceRequests is the number of event requests for race id so far, faulted
// ones included; 0 for an unknown id.
func (s *Sim) RaceRequests(id string) int64 {
	if c, ok := s.raceReqs[id]; ok {
		return c.Load()
	}
	return 0
}

// EventJSON returns the body GET /racing/events/{id} serves at simulated
// instant at, with the query the pipeline sends (money tracker, tote trends
// and will-pays on). It bypasses faults and request counting.
func (s *Sim) EventJSON(id string, at time.Time) ([]byte, error) {
	rc, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRace, id)
	}
	q := map[string][]string{
		"with_money_tracker":    {"true"},
		"with_tote_trends_data": {"true"},
		"with_will_pays":        {"true"},
	}
	return s.renderEvent(rc, q, at)
}
