// Package baseline turns the NZ TAB meetings list into meeting and race rows
// and upserts them, so the scheduler knows every race of the day before its
// first poll and meeting-level fields (track condition, tote status) stay
// current through the day. Each fetched list is stored raw, so a replay can
// apply it again exactly as the live baseline did (Response, Apply). It knows
// nothing of Watermill.
package baseline

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// Race types as the database spells them (meetings.race_type); the mapping
// from API codes is transform.RaceType, shared with the event payload.
const (
	RaceTypeThoroughbred = transform.RaceTypeThoroughbred
	RaceTypeHarness      = transform.RaceTypeHarness
	RaceTypeGreyhound    = transform.RaceTypeGreyhound
)

// Tote statuses stored in meetings.tote_status; any other value the list
// sends is stored as NULL (unknown), never as an empty or unexpected string.
const (
	ToteOpen   = "Open"
	ToteClosed = "Closed"
)

// ErrBadValue marks a meeting or race whose id, name or other text the
// database cannot store (a NUL, invalid UTF-8) or whose number is out of
// range. Such a meeting or race is skipped and reported; the rest of the
// list is written.
var ErrBadValue = errors.New("baseline: value cannot be stored")

// Filter selects the meetings the pipeline keeps. A nil field means the
// default, so the zero Filter keeps NZ and AUS thoroughbred and harness
// racing (docs/DOMAIN.md §1.2).
type Filter struct {
	// Countries are API country codes (NZ, AUS, ...), compared ignoring case.
	Countries []string
	// Categories are API meeting categories: T, H or G, compared ignoring case.
	Categories []string
}

// DefaultFilter keeps NZ and AUS thoroughbred and harness meetings.
func DefaultFilter() Filter {
	return Filter{Countries: []string{"NZ", "AUS"}, Categories: []string{"T", "H"}}
}

// WithDefaults fills nil fields from DefaultFilter.
func (f Filter) WithDefaults() Filter {
	d := DefaultFilter()
	if f.Countries == nil {
		f.Countries = d.Countries
	}
	if f.Categories == nil {
		f.Categories = d.Categories
	}
	return f
}

// Validate checks the filter after defaults: an explicitly empty list would
// keep nothing, and a category without a race type could never be stored.
func (f Filter) Validate() error {
	f = f.WithDefaults()
	var errs []error
	if len(f.Countries) == 0 {
		errs = append(errs, errors.New("baseline: filter needs at least one country"))
	}
	for _, c := range f.Countries {
		if strings.TrimSpace(c) == "" {
			errs = append(errs, errors.New("baseline: filter country must be non-empty"))
		}
	}
	if len(f.Categories) == 0 {
		errs = append(errs, errors.New("baseline: filter needs at least one category"))
	}
	for _, c := range f.Categories {
		if _, ok := transform.RaceType(c); !ok {
			errs = append(errs, fmt.Errorf("baseline: filter category %q must be one of T, H, G", c))
		}
	}
	return errors.Join(errs...)
}

// Keeps reports whether the filter keeps a meeting of this country and category.
func (f Filter) Keeps(country, category string) bool {
	f = f.WithDefaults()
	match := func(list []string, v string) bool {
		v = strings.TrimSpace(v)
		return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(strings.TrimSpace(s), v) })
	}
	return match(f.Countries, country) && match(f.Categories, category)
}

// MeetingRow is one row of the meetings table as the baseline writes it.
// Nil pointers are NULL and never overwrite a stored value.
type MeetingRow struct {
	MeetingID   string
	MeetingName string
	Country     string
	State       *string
	RaceType    string
	Category    string
	// Date is the NZ racing day: the date part of the API's meeting date.
	Date           nzday.Day
	TrackCondition *string
	// ToteStatus is ToteOpen, ToteClosed or nil (absent or unknown).
	ToteStatus *string
	// ObservedAt is when the list was fetched (Plan sets it); zero means
	// unknown, older than any observation (see Upsert).
	ObservedAt time.Time
}

// RaceRow is one row of the races table as the baseline writes it, from the
// race summary inside a meeting.
type RaceRow struct {
	RaceID     string
	MeetingID  string
	Name       string
	RaceNumber int
	StartTime  time.Time // UTC
	Status     nztab.Status
	// Distance is metres.
	Distance       *int
	TrackCondition *string
	Weather        *string
	// ObservedAt is as MeetingRow's.
	ObservedAt time.Time
}

// Skip reports a meeting or race of a kept meeting that was left out: one
// Rows could not map (Err matches nztab.ErrUnknownStatus for an unknown race
// status, ErrBadValue for a value the database cannot store) or one the
// database refused (Upsert's Counts.Rejected).
type Skip struct {
	MeetingID string
	RaceID    string // empty when the whole meeting was skipped
	Err       error
}

// Error names the meeting (and race) skipped and why.
func (s Skip) Error() string {
	if s.RaceID == "" {
		return fmt.Sprintf("meeting %s skipped: %v", s.MeetingID, s.Err)
	}
	return fmt.Sprintf("race %s of meeting %s skipped: %v", s.RaceID, s.MeetingID, s.Err)
}

// Unwrap exposes the cause.
func (s Skip) Unwrap() error { return s.Err }

// Rows maps the meetings the filter keeps to meeting and race rows. A race
// with an unknown status, an unreadable start time or a value the database
// cannot store is left out and reported in skipped rather than stored with a
// guessed value; a kept meeting whose category has no race type, or with a
// value the database cannot store, is reported likewise with its races. One
// bad meeting or race never costs the others. When an id occurs
// more than once the last occurrence wins, so the rows can go into one
// INSERT ... ON CONFLICT statement.
func Rows(list nztab.MeetingsList, filter Filter) (meetings []MeetingRow, races []RaceRow, skipped []Skip) {
	filter = filter.WithDefaults()
	meetingAt := make(map[string]int)
	raceAt := make(map[string]int)
	for _, m := range list.Meetings {
		if !filter.Keeps(m.Country, m.Category) {
			continue
		}
		row, err := meetingRow(m)
		if err != nil {
			skipped = append(skipped, Skip{MeetingID: m.Meeting, Err: err})
			continue
		}
		if i, ok := meetingAt[row.MeetingID]; ok {
			meetings[i] = row
		} else {
			meetingAt[row.MeetingID] = len(meetings)
			meetings = append(meetings, row)
		}
		for _, r := range m.Races {
			rr, err := raceRow(m.Meeting, r)
			if err != nil {
				skipped = append(skipped, Skip{MeetingID: m.Meeting, RaceID: r.ID, Err: err})
				continue
			}
			if i, ok := raceAt[rr.RaceID]; ok {
				races[i] = rr
			} else {
				raceAt[rr.RaceID] = len(races)
				races = append(races, rr)
			}
		}
	}
	return meetings, races, skipped
}

func meetingRow(m nztab.Meeting) (MeetingRow, error) {
	var cond string
	if m.TrackCondition != nil {
		cond = *m.TrackCondition
	}
	if err := storable(map[string]string{"meeting": m.Meeting, "name": m.Name, "country": m.Country,
		"state": m.State, "category": m.Category, "track_condition": cond, "tote_status": m.ToteStatus}); err != nil {
		return MeetingRow{}, err
	}
	rt, ok := transform.RaceType(m.Category)
	if !ok {
		return MeetingRow{}, fmt.Errorf("category %q has no race type", m.Category)
	}
	// The date part as written is the NZ day (docs/DOMAIN.md §1.3); converting
	// the instant to any zone would shift it.
	d, err := time.Parse(time.RFC3339, m.Date)
	if err != nil {
		return MeetingRow{}, fmt.Errorf("date %q: %w", m.Date, err)
	}
	var tc *string
	if m.TrackCondition != nil {
		tc = nullable(*m.TrackCondition)
	}
	return MeetingRow{
		MeetingID:      m.Meeting,
		MeetingName:    m.Name,
		Country:        strings.ToUpper(strings.TrimSpace(m.Country)),
		State:          nullable(m.State),
		RaceType:       rt,
		Category:       strings.ToUpper(strings.TrimSpace(m.Category)),
		Date:           nzday.Day{Year: d.Year(), Month: d.Month(), Day: d.Day()},
		TrackCondition: tc,
		ToteStatus:     toteStatus(m.ToteStatus),
	}, nil
}

// toteStatus maps the list's tote_status to ToteOpen or ToteClosed (any
// case), and anything else, blank included, to NULL: an unknown value is not
// stored as if it meant something.
func toteStatus(s string) *string {
	var v string
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "open":
		v = ToteOpen
	case "closed":
		v = ToteClosed
	default:
		return nil
	}
	return &v
}

// maxText bounds every stored string; real names and ids are far shorter.
const maxText = 1024

// storable checks that every named text value can be stored as it is:
// PostgreSQL text refuses NUL and invalid UTF-8, and nothing real is longer
// than maxText bytes. The first offending field (in name order) is reported.
func storable(fields map[string]string) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := fields[n]
		var why string
		switch {
		case strings.ContainsRune(v, 0):
			why = "contains a NUL"
		case !utf8.ValidString(v):
			why = "is not valid UTF-8"
		case len(v) > maxText:
			why = fmt.Sprintf("is longer than %d bytes", maxText)
		default:
			continue
		}
		return fmt.Errorf("%w: %s %s (%.40q)", ErrBadValue, n, why, v)
	}
	return nil
}

func raceRow(meetingID string, r nztab.MeetingRace) (RaceRow, error) {
	if err := storable(map[string]string{"id": r.ID, "name": r.Name, "track_condition": r.TrackCondition,
		"weather": r.Weather}); err != nil {
		return RaceRow{}, err
	}
	if r.RaceNumber < 0 || r.RaceNumber > math.MaxInt32 {
		return RaceRow{}, fmt.Errorf("%w: race_number %d is out of range", ErrBadValue, r.RaceNumber)
	}
	if r.Distance != nil && (*r.Distance < 0 || *r.Distance > math.MaxInt32) {
		return RaceRow{}, fmt.Errorf("%w: distance %d is out of range", ErrBadValue, *r.Distance)
	}
	st, err := nztab.ParseStatus(r.Status)
	if err != nil {
		return RaceRow{}, fmt.Errorf("status: %w", err)
	}
	start, err := time.Parse(time.RFC3339, r.StartTime)
	if err != nil {
		return RaceRow{}, fmt.Errorf("start_time %q: %w", r.StartTime, err)
	}
	return RaceRow{
		RaceID:         r.ID,
		MeetingID:      meetingID,
		Name:           r.Name,
		RaceNumber:     r.RaceNumber,
		StartTime:      start.UTC(),
		Status:         st,
		Distance:       r.Distance,
		TrackCondition: nullable(r.TrackCondition),
		Weather:        nullable(r.Weather),
	}, nil
}

// nullable turns the API's "no value" (an empty string) into NULL, so it
// never overwrites a stored value.
func nullable(s string) *string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return &s
}
