package nztab

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
)

// The API's bodies are read with encoding/json/v2 for speed. Stored bodies
// were decoded with encoding/json before, and replay decodes them again, so
// a body must mean the same to both: these compare DecodeEvent with
// encoding/json followed by Validate on the real API's responses and on the
// simulator's races through a whole day, and DecodeMeetings with
// encoding/json on the real meetings list, field by field.

// decodeEventV1 is what DecodeEvent did with encoding/json.
func decodeEventV1(body []byte) (*EventResponse, error) {
	var ev EventResponse
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, &DecodeError{Payload: "event", Offset: -1, Err: err}
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
	want, wantErr := decodeEventV1(body)
	got, err := DecodeEvent(body)
	if wantErr != nil {
		require.Error(t, err, "%s: encoding/json failed (%v), DecodeEvent did not", name, wantErr)
		var wantDE, gotDE *DecodeError
		require.Equal(t, errors.As(wantErr, &wantDE), errors.As(err, &gotDE), "%s: %v against %v", name, err, wantErr)
		if wantDE == nil {
			require.EqualError(t, err, wantErr.Error(), name)
		}
		return
	}
	require.NoError(t, err, name)
	require.Zero(t, got.ReplacedChars, "%s: this comparison takes bodies with nothing to replace", name)
	require.Equal(t, want, got, name)
}

func TestDecodeEventReadsTheRealAPIsBodiesAsEncodingJSONDid(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"race-event-full-response.json", "race-with-money-tracker.json"} {
		requireDecodesAsEncodingJSONDid(t, name, readFixture(t, name))
	}
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
	cases := []struct {
		name   string
		mutate func(obj)
		check  func(t *testing.T, ev *EventResponse)
	}{
		{
			name: "a repeated member keeps its last value",
			mutate: func(m obj) {
				runnerOf(m, 0)["jockey"] = "first"
			},
			check: func(t *testing.T, ev *EventResponse) {
				require.Equal(t, "second", ev.Data.Runners[0].Jockey)
			},
		},
		{
			name:   "an escaped lone surrogate becomes U+FFFD",
			mutate: func(m obj) { runnerOf(m, 0)["jockey"] = "lone" },
			check: func(t *testing.T, ev *EventResponse) {
				require.Equal(t, "x\uFFFDy", ev.Data.Runners[0].Jockey)
			},
		},
		{
			name:   "a member spelt in another case is not the field",
			mutate: func(m obj) { runnerOf(m, 0)["Trainer_Name"] = "shouted" },
			check: func(t *testing.T, ev *EventResponse) {
				require.NotEqual(t, "shouted", ev.Data.Runners[0].TrainerName)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := string(eventBody(t, tc.mutate))
			// JSON maps cannot hold a repeated name or a lone surrogate, so
			// the body is edited as text.
			body = replaceOnce(t, body, `"jockey":"first"`, `"jockey":"first","jockey":"second"`)
			body = replaceOnce(t, body, `"jockey":"lone"`, `"jockey":"x\ud800y"`)
			ev, err := DecodeEvent([]byte(body))
			require.NoError(t, err)
			tc.check(t, ev)
		})
	}
}

// replaceOnce replaces old in s when s holds it once; with none it returns s.
func replaceOnce(t *testing.T, s, old, repl string) string {
	t.Helper()
	switch n := strings.Count(s, old); n {
	case 0:
		return s
	case 1:
		return strings.Replace(s, old, repl, 1)
	default:
		t.Fatalf("%q occurs %d times", old, n)
		return ""
	}
}
