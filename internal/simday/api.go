package simday

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nztab"
)

// API serves the recorded day as the NZ TAB API (under any base path): an
// event request gets the body recorded for that race at now(), a meetings
// request the page recorded at now(). Anything not recorded is a 404, so a
// flow polling off the recording fails loudly instead of seeing other data.
// Run the flow's clock (the client's Now) on the same now and step it
// through the recorded instants (Steps).
func (d *Day) API(now func() time.Time) http.Handler {
	events := make(map[string]map[int64][]byte)
	for _, f := range d.Fetches {
		if events[f.RaceID] == nil {
			events[f.RaceID] = make(map[int64][]byte)
		}
		events[f.RaceID][f.ObservedAt.UnixNano()] = f.Body
	}
	lists := make(map[int64][][]byte)
	for _, b := range d.Baselines {
		lists[b.ObservedAt.UnixNano()] = b.Pages
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := now().UnixNano()
		var body []byte
		switch dir, id := path.Split(r.URL.Path); {
		case strings.HasSuffix(dir, "/racing/events/"):
			body = events[id][at]
		case strings.HasSuffix(r.URL.Path, "/racing/meetings"):
			pages := lists[at]
			offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
			if i := offset / nztab.MeetingsPageSize; len(pages) > 0 {
				// Past the last page the API repeats itself, which ends
				// the client's paging.
				body = pages[min(i, len(pages)-1)]
			}
		}
		if body == nil {
			http.Error(w, "not recorded at "+now().UTC().Format(time.RFC3339Nano), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// Step is one thing the flow does on the recorded day: an event fetch or a
// meetings-list fetch.
type Step struct {
	At time.Time
	// Fetch is the event fetch of the step; nil for a meetings list.
	Fetch *Fetch
	// Baseline is the meetings-list fetch of the step; nil for an event.
	Baseline *Baseline
}

// Steps are the day's fetches and meetings lists in observation order; at
// one instant the list goes first.
func (d *Day) Steps() []Step {
	out := make([]Step, 0, len(d.Fetches)+len(d.Baselines))
	i, j := 0, 0
	for i < len(d.Fetches) || j < len(d.Baselines) {
		if j == len(d.Baselines) || (i < len(d.Fetches) && d.Fetches[i].ObservedAt.Before(d.Baselines[j].ObservedAt)) {
			out = append(out, Step{At: d.Fetches[i].ObservedAt, Fetch: &d.Fetches[i]})
			i++
			continue
		}
		out = append(out, Step{At: d.Baselines[j].ObservedAt, Baseline: &d.Baselines[j]})
		j++
	}
	return out
}
