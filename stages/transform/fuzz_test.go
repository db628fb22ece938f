package transform

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/raceflow/raceflow/stages/nztab"
)

// FuzzTransform feeds arbitrary JSON through the decoder the pipeline uses;
// whatever decodes must transform without panicking, fail only with the
// typed permanent error, and give a snapshot that marshals.
func FuzzTransform(f *testing.F) {
	seed := func(ev *nztab.EventResponse) {
		b, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Seeds stay small: the fuzzer minimises every new interesting input,
	// and minimising a 30 KB payload stalls fuzzing for a minute each time.
	seed(baseEvent())
	withResults := baseEvent()
	withResults.Data.Race.Status = "Final"
	withResults.Data.TotePools = nil
	withResults.Data.Results = []nztab.Result{{Position: 1, RunnerNumber: 2, EntrantID: "e-2"}}
	withResults.Data.Dividends = []nztab.Dividend{{ID: "d", ProductName: "Pool Win", Status: "Final", PoolSize: 10}}
	seed(withResults)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"header":{"generated_time":"9999-12-31T23:59:59Z"},"data":{"race":{"event_id":"r","meeting_id":"m",` +
		`"status":"Open","advertised_start":1752713400,"actual_start":99999999999999},` +
		`"runners":[{"entrant_id":"a","runner_number":1,"scratch_time":-5}]}}`))
	f.Add([]byte(`{"data":{"race":{"event_id":"r","meeting_id":"m","status":"Final","advertised_start":1752713400,` +
		`"prize_monies":{"total_value":"x"},"video_channels":{"a":1}},` +
		`"runners":[{"entrant_id":"a","runner_number":1,"barrier_position":"Fr99999999999999999999","runner_change":[1]}],` +
		`"money_tracker":{"entrants":[{"entrant_id":"a","hold_percentage":1e308,"bet_percentage":-1e308}]},` +
		`"tote_pools":[{"product_type":"Win","total":9e18},{"product_type":"First 4","total":-1}],` +
		`"dividends":[{"product_name":"Pool Place","status":"protest","pool_size":1.005}]}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var ev nztab.EventResponse
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		s, err := Transform(&ev, testStart)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *transform.Error", err)
			}
			return
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("snapshot does not marshal: %v", err)
		}
		for _, mf := range s.MoneyFlow {
			if mf.WinPoolAmount < 0 || mf.PlacePoolAmount < 0 || mf.TotalPoolAmount < 0 {
				t.Fatalf("negative amount in %+v", mf)
			}
		}
	})
}
