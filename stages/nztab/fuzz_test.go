package nztab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeEvent checks that no input panics DecodeEvent and that every
// accepted payload upholds what downstream relies on: a race id, a mapped
// status, and a payload that re-validates.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(eventBody(f, nil))
	f.Add(eventBody(f, func(m obj) { raceOf(m)["status"] = "Paying" }))
	f.Add(eventBody(f, func(m obj) { runnerOf(m, 1)["entrant_id"] = "e1" }))
	f.Add(eventBody(f, func(m obj) { delete(dataOf(m), "race"); dataOf(m)["error"] = "not found" }))
	f.Add([]byte(`{"data":{"race":{"id":"x","meeting_id":"m","status":"open","advertised_start":1}}}`))
	f.Add([]byte(`{"data":{"race":{"advertised_start":"soon"}}}`))
	f.Add([]byte(`{"data":{"tote_pools":[{"total":1e308}]}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	if b, err := os.ReadFile(filepath.Join(fixtureDirOrEmpty(), "race-event-full-response.json")); err == nil {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		if err != nil {
			var ve *ValidationError
			var de *DecodeError
			if !errors.As(err, &ve) && !errors.As(err, &de) {
				t.Fatalf("error of unexpected type %T: %v", err, err)
			}
			if ev != nil {
				t.Fatalf("non-nil result with error %v", err)
			}
			return
		}
		if ev.Data.Race.RaceID() == "" {
			t.Fatal("accepted payload without race id")
		}
		if !ev.RaceStatus.Valid() {
			t.Fatalf("accepted payload with unmapped status %q", ev.RaceStatus)
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted payload fails re-validation: %v", err)
		}
	})
}
