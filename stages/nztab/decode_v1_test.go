package nztab

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
)

// The API's bodies are read with encoding/json/v2 for speed. Stored bodies
// were decoded with encoding/json before, and replay decodes them again, so
// a body must mean the same to both: these compare DecodeEvent with
// encoding/json followed by Validate on the real API's event response and on the
// simulator's races through a whole day, and DecodeMeetings with
// encoding/json on the real meetings list, field by field.

// decodeEventV1 is what DecodeEvent did with encoding/json.
func decodeEventV1(body []byte) (*EventResponse, error) {
	var ev EventResponse
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	st, err := ev.validate()
	if err != nil {
		return nil, err
	}
	ev.RaceStatus = st
	return &ev, nil
}

func requireDecodesAsEncodingJSONDid(t *testing.T, name string, body []byte) {
	t.Helper()
	want, err := decodeEventV1(body)
	require.NoError(t, err, "%s: encoding/json", name)
	got, err := DecodeEvent(body)
	require.NoError(t, err, name)
	require.Zero(t, got.ReplacedChars, "%s: this comparison takes bodies with nothing to replace", name)
	require.Equal(t, want, got, name)
}

func TestDecodeEventReadsTheRealAPIsBodyAsEncodingJSONDid(t *testing.T) {
	t.Parallel()
	const name = "race-event-full-response.json"
	requireDecodesAsEncodingJSONDid(t, name, readFixture(t, name))
}

func TestDecodeEventReadsTheSimulatorsRacesAsEncodingJSONDid(t *testing.T) {
	t.Parallel()
	clk := nztabsim.NewManualClock(time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC))
	sim, err := nztabsim.New(nztabsim.Config{Seed: 7, Date: "2025-07-17", Clock: clk})
	require.NoError(t, err)
	races := sim.Races()
	require.NotEmpty(t, races)
	checked := 0
	for i, r := range races {
		if i%5 != 0 {
			continue // a fifth of the day's races covers every kind of field
		}
		for _, offset := range []time.Duration{-90 * time.Minute, -2 * time.Minute, 0, 3 * time.Minute, 20 * time.Minute, 2 * time.Hour} {
			body, err := sim.EventJSON(r.ID, r.StartTime.Add(offset))
			require.NoError(t, err)
			requireDecodesAsEncodingJSONDid(t, r.ID+" at "+offset.String(), body)
			checked++
		}
	}
	require.Greater(t, checked, 50)
}

func TestDecodeMeetingsReadsTheRealAPIsListAsEncodingJSONDid(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "meetings-list-response.json")
	var resp MeetingsResponse
	require.NoError(t, json.Unmarshal(body, &resp))
	got, err := DecodeMeetings(body)
	require.NoError(t, err)
	require.Empty(t, got.Skipped)
	require.Equal(t, resp.Header, got.Header)
	require.Len(t, got.Meetings, len(resp.Data.Meetings))
	for i, raw := range resp.Data.Meetings {
		var want Meeting
		require.NoError(t, json.Unmarshal(raw, &want))
		require.Equal(t, want, got.Meetings[i], "meeting %d", i)
	}
}

func TestDecodeEventMatchesNamesExactlyAndKeepsEncodingJSONsLeniency(t *testing.T) {
	t.Parallel()
	// JSON maps cannot hold a repeated name or a lone surrogate, so each
	// case edits the encoded body as text: old, which must occur once, is
	// replaced with new.
	cases := []struct {
		name     string
		old, new string
		check    func(t *testing.T, r Runner)
	}{
		{"a repeated member keeps its last value", `"jockey":"J"`, `"jockey":"first","jockey":"second"`,
			func(t *testing.T, r Runner) { require.Equal(t, "second", r.Jockey) }},
		{"an escaped lone surrogate becomes U+FFFD", `"jockey":"J"`, `"jockey":"x\ud800y"`,
			func(t *testing.T, r Runner) { require.Equal(t, "x\uFFFDy", r.Jockey) }},
		{"a member spelt in another case is not the field", `"jockey":"J"`, `"jockey":"J","Trainer_Name":"shouted"`,
			func(t *testing.T, r Runner) { require.Empty(t, r.TrainerName) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := string(eventBody(t, func(m obj) { runnerOf(m, 0)["jockey"] = "J" }))
			require.Equal(t, 1, strings.Count(body, tc.old), body)
			ev, err := DecodeEvent([]byte(strings.Replace(body, tc.old, tc.new, 1)))
			require.NoError(t, err)
			tc.check(t, ev.Data.Runners[0])
		})
	}
}
