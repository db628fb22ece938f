// Package baseline turns the NZ TAB meetings list into meeting and race rows
// and upserts them, so the scheduler knows every race of the day before its
// first poll and meeting-level fields (track condition, tote status) stay
// current through the day. It knows nothing of Watermill.
package baseline

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Race types as the database spells them (meetings.race_type).
const (
	RaceTypeThoroughbred = "thoroughbred"
	RaceTypeHarness      = "harness"
	RaceTypeGreyhound    = "greyhound"
)

// RaceType maps an API meeting category (T, H, G; any case) to the race type
// stored in meetings.race_type, and reports whether the category is known.
func RaceType(category string) (string, bool) {
	switch strings.ToUpper(strings.TrimSpace(category)) {
	case "T":
		return RaceTypeThoroughbred, true
	case "H":
		return RaceTypeHarness, true
	case "G":
		return RaceTypeGreyhound, true
	}
	return "", false
}

// Filter selects the meetings the pipeline keeps. A nil field means the
// default, so the zero Filter keeps NZ and AUS thoroughbred and harness
// racing (domain.md §1.4).
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
		if _, ok := RaceType(c); !ok {
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
	ToteStatus     *string
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
}

// Skip reports a meeting or race of a kept meeting that Rows could not map.
// Err matches nztab.ErrUnknownStatus for an unknown race status.
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
// with an unknown status or an unreadable start time is left out and
// reported in skipped rather than stored with a guessed value; a kept meeting
// whose category has no race type is reported likewise. When an id occurs
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
	rt, ok := RaceType(m.Category)
	if !ok {
		return MeetingRow{}, fmt.Errorf("category %q has no race type", m.Category)
	}
	// The date part as written is the NZ day (domain.md §1.7); converting
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
		ToteStatus:     nullable(m.ToteStatus),
	}, nil
}

func raceRow(meetingID string, r nztab.MeetingRace) (RaceRow, error) {
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
