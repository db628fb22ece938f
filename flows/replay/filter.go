package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Filter selects stored polls. Zero fields select everything retained.
type Filter struct {
	// From and To bound the observation instant, both inclusive; zero is open.
	From, To time.Time
	// RaceIDs limits the replay to these races.
	RaceIDs []string
	// MeetingID limits the replay to the races of one meeting: as the races
	// table says, or, for races the database does not know (a new
	// database), as their first stored poll says.
	MeetingID string
}

// Validate checks the filter.
func (f Filter) Validate() error {
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return fmt.Errorf("replay: filter: to %s is before from %s", f.To.Format(time.RFC3339), f.From.Format(time.RFC3339))
	}
	for _, id := range f.RaceIDs {
		if strings.TrimSpace(id) == "" {
			return errors.New("replay: filter: empty race id")
		}
	}
	return nil
}

// IsZero reports whether the filter selects everything.
func (f Filter) IsZero() bool {
	return f.From.IsZero() && f.To.IsZero() && len(f.RaceIDs) == 0 && f.MeetingID == ""
}

func (f Filter) inRange(t time.Time) bool {
	return (f.From.IsZero() || !t.Before(f.From)) && (f.To.IsZero() || !t.After(f.To))
}

// timeBound says whether the filter bounds the observation instant.
func (f Filter) timeBound() bool { return !f.From.IsZero() || !f.To.IsZero() }

// selectsRaces says whether the filter names races or a meeting, so a
// meetings list is applied only for what it selects (see listRows).
func (f Filter) selectsRaces() bool { return len(f.RaceIDs) > 0 || f.MeetingID != "" }

// storedFilter is how a run's selection is kept with it (replay_runs.filter):
// the filter, and whether the run rebuilds.
type storedFilter struct {
	From      *time.Time `json:"from,omitempty"`
	To        *time.Time `json:"to,omitempty"`
	RaceIDs   []string   `json:"race_ids,omitempty"`
	MeetingID string     `json:"meeting_id,omitempty"`
	Rebuild   bool       `json:"rebuild,omitempty"`
}

// canonical renders the selection the same way whatever the order of its
// race ids or the zone of its instants, so a resumed run can be compared.
func (f Filter) canonical(rebuild bool) storedFilter {
	s := storedFilter{MeetingID: f.MeetingID, Rebuild: rebuild}
	if !f.From.IsZero() {
		t := f.From.UTC()
		s.From = &t
	}
	if !f.To.IsZero() {
		t := f.To.UTC()
		s.To = &t
	}
	if len(f.RaceIDs) > 0 {
		s.RaceIDs = slices.Compact(slices.Sorted(slices.Values(f.RaceIDs)))
	}
	return s
}

func (s storedFilter) filter() Filter {
	f := Filter{RaceIDs: s.RaceIDs, MeetingID: s.MeetingID}
	if s.From != nil {
		f.From = *s.From
	}
	if s.To != nil {
		f.To = *s.To
	}
	return f
}

func (s storedFilter) equal(o storedFilter) bool {
	a, errA := json.Marshal(s)
	b, errB := json.Marshal(o)
	return errA == nil && errB == nil && string(a) == string(b)
}
