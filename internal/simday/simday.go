// Package simday records one simulated NZ TAB race day (internal/nztabsim)
// the way the flow would have fetched it: every event fetch of every kept
// race on a polling plan, and the meetings list at every baseline run. Tests
// and benchmarks write or replay the whole day from it; the same Config gives
// byte-identical fetches.
package simday

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// Defaults of Config.
const (
	DefaultSeed            = 7
	DefaultMeetings        = 4
	DefaultRacesPerMeeting = 8
	DefaultBaselineEvery   = 30 * time.Minute
	// DefaultBaselineAt is the first baseline run, as an offset from NZ
	// midnight (the flow's daily run).
	DefaultBaselineAt = 6 * time.Hour
)

// Config selects the day. Zero fields take the defaults.
type Config struct {
	// Seed selects the simulated day (default DefaultSeed).
	Seed int64
	// Date is the NZ racing day, YYYY-MM-DD; default today in NZ, so history
	// rows fall into the partitions kept around now.
	Date string
	// Meetings is the number of kept meetings (NZ and AUS thoroughbred and
	// harness); the simulator adds meetings a baseline filters out.
	Meetings int
	// RacesPerMeeting is the card length (default 8).
	RacesPerMeeting int
	// BaselineEvery is the meetings-list refresh period (default 30 min).
	BaselineEvery time.Duration
	// Plan is when each race is polled (default PollTimes; ScheduledTimes
	// is the flow's own cadence).
	Plan func(nztabsim.RaceInfo) []time.Time
	// Plunges are staged on the simulated day (nztabsim.Plunge).
	Plunges []nztabsim.Plunge
}

func (c Config) withDefaults() Config {
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.Date == "" {
		c.Date = nzday.Of(time.Now()).String()
	}
	if c.Meetings == 0 {
		c.Meetings = DefaultMeetings
	}
	if c.RacesPerMeeting == 0 {
		c.RacesPerMeeting = DefaultRacesPerMeeting
	}
	if c.BaselineEvery == 0 {
		c.BaselineEvery = DefaultBaselineEvery
	}
	if c.Plan == nil {
		c.Plan = PollTimes
	}
	return c
}

// Validate checks the configuration after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := nzday.Parse(c.Date); err != nil {
		errs = append(errs, fmt.Errorf("simday: date: %w", err))
	}
	if c.Meetings < 1 || c.RacesPerMeeting < 1 {
		errs = append(errs, fmt.Errorf("simday: meetings %d and races per meeting %d must be positive", c.Meetings, c.RacesPerMeeting))
	}
	if c.BaselineEvery < time.Minute {
		errs = append(errs, fmt.Errorf("simday: baseline period %s must be at least a minute", c.BaselineEvery))
	}
	return errors.Join(errs...)
}

// Fetch is one event fetch of a race, as the fetch stage stores it.
type Fetch struct {
	RaceID     string
	ObservedAt time.Time
	Body       []byte
}

// Baseline is one fetch of the day's meetings list: the raw pages, as the
// API client returned them.
type Baseline struct {
	Day        string
	ObservedAt time.Time
	Pages      [][]byte
}

// Day is a recorded race day.
type Day struct {
	// Sim is the simulator the day was recorded from.
	Sim *nztabsim.Sim
	// Races are the kept races (NZ and AUS, thoroughbred and harness), in
	// start order.
	Races []nztabsim.RaceInfo
	// Fetches are every event fetch, ordered by observation instant.
	Fetches []Fetch
	// Baselines are every meetings-list fetch, in order.
	Baselines []Baseline
}

// Build records the day. Every kept race is polled on the Plan (by default
// PollTimes: every 5 minutes from an hour before its start, every minute
// from 10 minutes before, and every 30 seconds from the start until 30
// seconds after it is final or abandoned); the meetings list is fetched at
// 06:00 NZ and every BaselineEvery until the last poll. Instants are whole
// milliseconds, each race a few milliseconds apart from the others, as real
// polls never coincide.
func Build(ctx context.Context, cfg Config) (*Day, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	day, _ := nzday.Parse(cfg.Date)
	clock := nztabsim.NewManualClock(day.Start())
	sim, err := nztabsim.New(nztabsim.Config{Seed: cfg.Seed, Date: cfg.Date, Meetings: cfg.Meetings,
		RacesPerMeeting: cfg.RacesPerMeeting, Clock: clock, Plunges: cfg.Plunges})
	if err != nil {
		return nil, fmt.Errorf("simday: %w", err)
	}
	d := &Day{Sim: sim}
	for _, r := range sim.Races() {
		if kept(r.Country, r.Category) {
			d.Races = append(d.Races, r)
		}
	}
	var last time.Time
	for i, r := range d.Races {
		skew := time.Duration(i+1) * 7 * time.Millisecond
		for _, at := range cfg.Plan(r) {
			at = at.Add(skew)
			body, err := sim.EventJSON(r.ID, at)
			if err != nil {
				return nil, fmt.Errorf("simday: event %s at %s: %w", r.ID, at, err)
			}
			d.Fetches = append(d.Fetches, Fetch{RaceID: r.ID, ObservedAt: at, Body: body})
			if at.After(last) {
				last = at
			}
		}
	}
	slices.SortStableFunc(d.Fetches, func(a, b Fetch) int {
		if c := a.ObservedAt.Compare(b.ObservedAt); c != 0 {
			return c
		}
		return strings.Compare(a.RaceID, b.RaceID)
	})

	srv := httptest.NewServer(sim)
	defer srv.Close()
	client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: srv.URL, FromEmail: "sim@example.org",
		PartnerName: "simday", PartnerID: "simday", Now: clock.Now})
	if err != nil {
		return nil, fmt.Errorf("simday: client: %w", err)
	}
	at := time.Date(day.Year, day.Month, day.Day, 0, 0, 0, 0, nzday.Location()).Add(DefaultBaselineAt)
	for ; !at.After(last); at = at.Add(cfg.BaselineEvery) {
		clock.Set(at)
		list, err := client.FetchMeetings(ctx, cfg.Date)
		if err != nil {
			return nil, fmt.Errorf("simday: meetings at %s: %w", at, err)
		}
		d.Baselines = append(d.Baselines, Baseline{Day: cfg.Date, ObservedAt: at, Pages: list.Pages})
	}
	return d, nil
}

// kept says whether the flow's default baseline filter keeps a race.
func kept(country, category string) bool {
	return (country == "NZ" || country == "AUS") && (category == "T" || category == "H")
}

// pollsEnd is when a race's polls stop: 30 s after it is final or
// abandoned, whichever comes first.
func pollsEnd(r nztabsim.RaceInfo) time.Time {
	end := r.FinalAt
	if !r.AbandonedAt.IsZero() && r.AbandonedAt.Before(end) {
		end = r.AbandonedAt
	}
	return end.Add(30 * time.Second)
}

// PollTimes is the polling plan of one race (see Build), before the race's
// skew.
func PollTimes(r nztabsim.RaceInfo) []time.Time {
	end := pollsEnd(r)
	var out []time.Time
	t := r.StartTime.Add(-time.Hour)
	for ; t.Before(r.StartTime.Add(-10 * time.Minute)); t = t.Add(5 * time.Minute) {
		out = append(out, t)
	}
	for ; t.Before(r.StartTime); t = t.Add(time.Minute) {
		out = append(out, t)
	}
	for ; !t.After(end); t = t.Add(30 * time.Second) {
		out = append(out, t)
	}
	return out
}

// ScheduledTimes is the polling plan of the flow's scheduler at its default
// cadence (flows/schedule.DefaultConfig): every minute from an hour before
// the start, every 30 s within 15 minutes of it, every 15 s within 5 and
// until 30 seconds after the race is final or abandoned.
func ScheduledTimes(r nztabsim.RaceInfo) []time.Time {
	end := pollsEnd(r)
	var out []time.Time
	t := r.StartTime.Add(-time.Hour)
	for ; t.Before(r.StartTime.Add(-15 * time.Minute)); t = t.Add(time.Minute) {
		out = append(out, t)
	}
	for ; t.Before(r.StartTime.Add(-5 * time.Minute)); t = t.Add(30 * time.Second) {
		out = append(out, t)
	}
	for ; !t.After(end); t = t.Add(15 * time.Second) {
		out = append(out, t)
	}
	return out
}

// Snapshots decodes and transforms every fetch, in fetch order, as the
// transform stage would.
func (d *Day) Snapshots() ([]transform.RaceSnapshot, error) {
	out := make([]transform.RaceSnapshot, 0, len(d.Fetches))
	for _, f := range d.Fetches {
		ev, err := nztab.DecodeEvent(f.Body)
		if err != nil {
			return nil, fmt.Errorf("simday: decode %s at %s: %w", f.RaceID, f.ObservedAt, err)
		}
		s, err := transform.Transform(ev, f.ObservedAt)
		if err != nil {
			return nil, fmt.Errorf("simday: transform %s at %s: %w", f.RaceID, f.ObservedAt, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Histories is each race of the day as the alert rules (stages/alerts) see
// it once the flow has stored it: every poll with money, each runner's
// money, its prices as odds_history keeps them (a price is stored when it
// moves by more than 0.01 from the last one stored) and its scratching, and
// whether the race was open.
func (d *Day) Histories() (map[string]alerts.History, error) {
	snaps, err := d.Snapshots()
	if err != nil {
		return nil, err
	}
	out := map[string]alerts.History{}
	stored := map[string]float64{} // entrant/type → price
	for _, s := range snaps {
		for _, o := range s.Odds {
			k, v := o.EntrantID+"/"+o.Type, math.Round(o.Odds*100)/100
			if prev, ok := stored[k]; !ok || math.Abs(prev-v) > 0.01+1e-9 {
				stored[k] = v
			}
		}
		if len(s.MoneyFlow) == 0 {
			continue
		}
		money := make(map[string]transform.MoneyFlow, len(s.MoneyFlow))
		for _, m := range s.MoneyFlow {
			money[m.EntrantID] = m
		}
		p := alerts.Poll{At: s.ObservedAt, MinutesToStart: s.MoneyFlow[0].TimeToStart, Bucket: s.MoneyFlow[0].TimeInterval,
			Open: s.Race.Status == transform.StatusOpen}
		for _, e := range s.Entrants {
			m := money[e.EntrantID]
			p.Runners = append(p.Runners, alerts.Runner{EntrantID: e.EntrantID, HoldPct: m.HoldPercentage,
				WinCents: m.WinPoolAmount, FixedWin: stored[e.EntrantID+"/fixed_win"], PoolWin: stored[e.EntrantID+"/pool_win"],
				Scratched: e.ScratchTime != nil && !e.ScratchTime.After(s.ObservedAt)})
		}
		h := out[s.RaceID]
		h.RaceID = s.RaceID
		h.Polls = append(h.Polls, p)
		out[s.RaceID] = h
	}
	return out, nil
}
