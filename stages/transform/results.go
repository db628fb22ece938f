package transform

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nztab"
)

// Result statuses stored in race_results.result_status.
const (
	ResultInterim = "interim"
	ResultFinal   = "final"
)

// fixedOdds is one value of race_results.fixed_odds_data: the fixed prices a
// runner went off at, kept with the result as the reference system did.
type fixedOdds struct {
	FixedWin   *float64 `json:"fixed_win"`
	FixedPlace *float64 `json:"fixed_place"`
	RunnerName string   `json:"runner_name"`
	EntrantID  string   `json:"entrant_id"`
}

// buildResults implements docs/DOMAIN.md §2.7. Results and dividends are sorted
// before marshalling so the stored jsonb does not change when the API merely
// reorders them; otherwise every poll would look like an update.
func buildResults(raceID, status string, race *nztab.Race, d *nztab.EventData, entrants []Entrant, observedAt time.Time) (*RaceResults, error) {
	resulted := status == StatusInterim || status == StatusFinal
	if len(d.Results) == 0 && !(len(d.Dividends) > 0 && resulted) {
		return nil, nil
	}
	results := slices.Clone(d.Results)
	if results == nil {
		results = []nztab.Result{}
	}
	slices.SortStableFunc(results, func(a, b nztab.Result) int {
		return cmp.Or(cmp.Compare(a.Position, b.Position), cmp.Compare(a.RunnerNumber, b.RunnerNumber),
			strings.Compare(a.EntrantID, b.EntrantID))
	})
	divs := slices.Clone(d.Dividends)
	if divs == nil {
		divs = []nztab.Dividend{}
	}
	slices.SortStableFunc(divs, func(a, b nztab.Dividend) int {
		return cmp.Or(strings.Compare(a.ProductName, b.ProductName), strings.Compare(a.Status, b.Status),
			strings.Compare(a.Description, b.Description), strings.Compare(a.ID, b.ID))
	})

	rr := &RaceResults{
		RaceID:           raceID,
		ResultsAvailable: len(results) > 0,
		ResultStatus:     ResultInterim,
		ProtestLodged:    race.Protest,
		ResultTime:       observedAt,
	}
	if status == StatusFinal {
		rr.ResultStatus = ResultFinal
	}
	for _, dv := range divs {
		switch strings.ToLower(strings.TrimSpace(dv.Status)) {
		case "photo":
			rr.PhotoFinish = true
		case "inquiry":
			rr.StewardsInquiry = true
		case "protest":
			rr.ProtestLodged = true
		}
	}

	odds := make(map[string]fixedOdds, len(entrants))
	for i := range entrants {
		e := &entrants[i]
		odds[strconv.Itoa(e.RunnerNumber)] = fixedOdds{
			FixedWin: e.FixedWinOdds, FixedPlace: e.FixedPlaceOdds, RunnerName: e.Name, EntrantID: e.EntrantID,
		}
	}
	var err error
	if rr.ResultsData, err = json.Marshal(results); err != nil {
		return nil, fmt.Errorf("marshal results: %w", err)
	}
	if rr.DividendsData, err = json.Marshal(divs); err != nil {
		return nil, fmt.Errorf("marshal dividends: %w", err)
	}
	if rr.FixedOddsData, err = json.Marshal(odds); err != nil { // map keys come out sorted
		return nil, fmt.Errorf("marshal fixed odds: %w", err)
	}
	return rr, nil
}
