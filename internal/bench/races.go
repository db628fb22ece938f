package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nztab"
)

// API is what SelectRaces needs of an NZ TAB API client.
type API interface {
	FetchMeetings(ctx context.Context, day string) (nztab.MeetingsList, error)
	FetchEvent(ctx context.Context, raceID string) (*nztab.Fetched, error)
}

// SelectedRace is a race SelectRaces picked, with its field size.
type SelectedRace struct {
	ID      string
	Runners int
}

// SelectRaces picks n open races of the day's NZ and AUS thoroughbred and
// harness meetings from an external API (a `raceflow simulate` server, say),
// fullest fields first: it fetches up to probe candidates' events, in start
// order, to count their runners. probe below n means 3n.
func SelectRaces(ctx context.Context, api API, day string, n, probe int) ([]SelectedRace, error) {
	if n < 1 {
		return nil, fmt.Errorf("bench: select %d races: must be at least 1", n)
	}
	if probe < n {
		probe = 3 * n
	}
	list, err := api.FetchMeetings(ctx, day)
	if err != nil {
		return nil, fmt.Errorf("bench: list the day's meetings: %w", err)
	}
	type candidate struct {
		id      string
		start   string
		runners int
	}
	var cands []candidate
	for _, m := range list.Meetings {
		if (m.Country != "NZ" && m.Country != "AUS") || (m.Category != "T" && m.Category != "H") {
			continue
		}
		for _, r := range m.Races {
			if st, err := nztab.ParseStatus(r.Status); err == nil && st == nztab.StatusOpen {
				cands = append(cands, candidate{id: r.ID, start: r.StartTime})
			}
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return startBefore(cands[i].start, cands[j].start) })
	if len(cands) > probe {
		cands = cands[:probe]
	}
	if len(cands) < n {
		return nil, fmt.Errorf("%w: the API lists %d open horse races on %s, want %d", ErrNotEnoughRaces, len(cands), day, n)
	}
	for i := range cands {
		f, err := api.FetchEvent(ctx, cands[i].id)
		if err != nil {
			return nil, fmt.Errorf("bench: probe race %s: %w", cands[i].id, err)
		}
		cands[i].runners = len(f.Event.Data.Runners)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].runners > cands[j].runners })
	out := make([]SelectedRace, n)
	for i := range out {
		out[i] = SelectedRace{ID: cands[i].id, Runners: cands[i].runners}
	}
	return out, nil
}

// startBefore orders RFC 3339 start times, unparsable ones last.
func startBefore(a, b string) bool {
	ta, ea := time.Parse(time.RFC3339, strings.TrimSpace(a))
	tb, eb := time.Parse(time.RFC3339, strings.TrimSpace(b))
	switch {
	case ea != nil:
		return false
	case eb != nil:
		return true
	}
	return ta.Before(tb)
}
