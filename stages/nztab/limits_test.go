package nztab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeEventRejectsValuesBeyondTheLimitsNamingTheField(t *testing.T) {
	t.Parallel()
	const big = 1 << 40
	runners := func(n int) func(obj) {
		return func(m obj) {
			rs := make([]any, n)
			for i := range rs {
				rs[i] = obj{"entrant_id": fmt.Sprintf("e%d", i), "name": "R", "runner_number": i%MaxRunnerNumber + 1}
			}
			dataOf(m)["runners"] = rs
		}
	}
	cases := []struct {
		name   string
		mutate func(obj)
		field  string
		want   error
	}{
		{"runner_number 2^40", func(m obj) { runnerOf(m, 0)["runner_number"] = big }, "data.runners[0].runner_number", ErrTooLarge},
		{"runner_number 100", func(m obj) { runnerOf(m, 1)["runner_number"] = 100 }, "data.runners[1].runner_number", ErrTooLarge},
		{"distance 2^40", func(m obj) { raceOf(m)["distance"] = big }, "data.race.distance", ErrTooLarge},
		{"negative distance", func(m obj) { raceOf(m)["distance"] = -1 }, "data.race.distance", ErrTooLarge},
		{"race_number 2^31", func(m obj) { raceOf(m)["race_number"] = 1 << 31 }, "data.race.race_number", ErrTooLarge},
		{"barrier 2^40", func(m obj) { runnerOf(m, 0)["barrier"] = big }, "data.runners[0].barrier", ErrTooLarge},
		{"entrant_count", func(m obj) { raceOf(m)["entrant_count"] = big }, "data.race.entrant_count", ErrTooLarge},
		{"field_size", func(m obj) { raceOf(m)["field_size"] = 65 }, "data.race.field_size", ErrTooLarge},
		{"positions_paid", func(m obj) { raceOf(m)["positions_paid"] = -2 }, "data.race.positions_paid", ErrTooLarge},
		{"result position", func(m obj) {
			dataOf(m)["results"] = []any{obj{"position": big, "runner_number": 1, "entrant_id": "e1"}}
		}, "data.results[0].position", ErrTooLarge},
		{"dividend position", func(m obj) {
			dataOf(m)["dividends"] = []any{obj{"id": "d", "positions": []any{obj{"runner_number": big, "position": 1}}}}
		}, "data.dividends[0].positions[].runner_number", ErrTooLarge},
		{"65 runners", runners(65), "data.runners", ErrTooLarge},
		{"money tracker rows", func(m obj) {
			rows := make([]any, MaxMoneyTrackerRows+1)
			for i := range rows {
				rows[i] = obj{"entrant_id": "e1", "hold_percentage": 0, "bet_percentage": 0}
			}
			dataOf(m)["money_tracker"] = obj{"entrants": rows}
		}, "data.money_tracker.entrants", ErrTooLarge},
		{"runner name of 1 KB + 1", func(m obj) { runnerOf(m, 1)["name"] = strings.Repeat("x", MaxStringBytes+1) }, "data.runners[1].name", ErrTooLarge},
		{"race description", func(m obj) { raceOf(m)["description"] = strings.Repeat("x", 2000) }, "data.race.description", ErrTooLarge},
		{"API error text", func(m obj) { dataOf(m)["error"] = strings.Repeat("x", 2000) }, "data.error", ErrTooLarge},
		{"runner_change", func(m obj) {
			runnerOf(m, 0)["runner_change"] = obj{"x": strings.Repeat("y", MaxRawJSONBytes)}
		}, "data.runners[0].runner_change", ErrTooLarge},
		{"entrant id with a slash", func(m obj) { runnerOf(m, 0)["entrant_id"] = "a/b" }, "data.runners[0].entrant_id", ErrInvalidID},
		{"meeting id of 10 kB", func(m obj) { raceOf(m)["meeting_id"] = strings.Repeat("m", 10<<10) }, "data.race.meeting_id", ErrInvalidID},
		{"race id with a newline", func(m obj) { raceOf(m)["event_id"] = "abc\ndef" }, "data.race.event_id", ErrInvalidID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeEvent(eventBody(t, tc.mutate))
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tc.field, ve.Field)
			require.ErrorIs(t, err, tc.want)
			require.Less(t, len(err.Error()), 600, "the message stays bounded")
		})
	}
}

func TestDecodeEventAcceptsValuesAtTheLimits(t *testing.T) {
	t.Parallel()
	body := eventBody(t, func(m obj) {
		rs := make([]any, MaxRunners)
		for i := range rs {
			rs[i] = obj{"entrant_id": fmt.Sprintf("e%d", i), "runner_number": i%MaxRunnerNumber + 1,
				"name": strings.Repeat("n", MaxStringBytes), "barrier": MaxRunnerNumber}
		}
		dataOf(m)["runners"] = rs
		raceOf(m)["distance"] = MaxDistance
		raceOf(m)["entrant_count"] = MaxRunners
		raceOf(m)["race_number"] = MaxRunnerNumber
	})
	ev, err := DecodeEvent(body)
	require.NoError(t, err)
	require.Len(t, ev.Data.Runners, MaxRunners)
}

func TestDecodeEventReplacesWhatPostgreSQLCannotStoreAndCountsIt(t *testing.T) {
	t.Parallel()
	body := eventBody(t, func(m obj) {
		runnerOf(m, 0)["name"] = "One\x00Two"   // json.Marshal writes \u0000
		runnerOf(m, 1)["jockey"] = `back\u0000` // a literal backslash: not a NUL
		runnerOf(m, 0)["runner_change"] = obj{"note": "x\x00y"}
		raceOf(m)["weather"] = "\x00"
	})
	// Invalid UTF-8 inside a string, which json.Marshal would have fixed.
	body = bytes.Replace(body, []byte(`"PRYDA`), []byte("\"\xffPRYDA"), 1)
	ev, err := DecodeEvent(body)
	require.NoError(t, err)
	require.Equal(t, 4, ev.ReplacedChars, "three NULs and one invalid byte")
	require.Equal(t, "One\uFFFDTwo", ev.Data.Runners[0].Name)
	require.Equal(t, `back\u0000`, ev.Data.Runners[1].Jockey)
	require.Equal(t, "\uFFFD", ev.Data.Race.Weather)
	require.Equal(t, "\uFFFDPRYDA HANDICAP 1700", ev.Data.Race.Description)
	require.NotContains(t, string(ev.Data.Runners[0].RunnerChange), `\u0000`, "raw JSON kept for jsonb is cleaned too")
	var rc map[string]string
	require.NoError(t, json.Unmarshal(ev.Data.Runners[0].RunnerChange, &rc))
	require.Equal(t, "x\uFFFDy", rc["note"])

	clean, err := DecodeEvent(eventBody(t, nil))
	require.NoError(t, err)
	require.Zero(t, clean.ReplacedChars)
}

func TestSanitizeJSONLeavesCleanBodiesUncopied(t *testing.T) {
	t.Parallel()
	body := eventBody(t, nil)
	got, n := sanitizeJSON(body)
	require.Zero(t, n)
	require.Same(t, &body[0], &got[0])
}

func TestDecodeMeetingsSkipsMeetingsBeyondTheLimitsAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	meeting := func(id string, mutate func(obj)) obj {
		m := obj{"meeting": id, "name": "M", "date": "2025-07-17T00:00:00Z", "country": "NZ", "category": "T",
			"races": []any{obj{"id": "r-" + id, "race_number": 1, "distance": 1200}}}
		if mutate != nil {
			mutate(m)
		}
		return m
	}
	race0 := func(m obj) obj { return m["races"].([]any)[0].(obj) }
	body, err := json.Marshal(obj{"data": obj{"meetings": []any{
		meeting("good", nil),
		meeting("../x", nil),
		meeting("longname", func(m obj) { m["name"] = strings.Repeat("n", 2000) }),
		meeting("badrace", func(m obj) { race0(m)["id"] = "a\nb" }),
		meeting("farrace", func(m obj) { race0(m)["distance"] = 1 << 40 }),
		meeting("nul", func(m obj) { m["name"] = "Te\x00Rapa" }),
	}}})
	require.NoError(t, err)
	list, err := DecodeMeetings(body)
	require.NoError(t, err)
	require.Len(t, list.Meetings, 2)
	require.Equal(t, "good", list.Meetings[0].Meeting)
	require.Equal(t, "Te\uFFFDRapa", list.Meetings[1].Name)
	require.Equal(t, 1, list.ReplacedChars)
	fields := map[string]string{}
	for _, s := range list.Skipped {
		var fe *FieldError
		require.True(t, errors.As(s.Err, &fe), "%v", s.Err)
		fields[s.MeetingID] = fe.Field
	}
	require.Equal(t, map[string]string{"../x": "meeting", "longname": "name", "badrace": "races[0].id", "farrace": "races[0].distance"}, fields)
}

// BenchmarkDecodeEventReplacingNUL is BenchmarkDecodeEvent with one NUL in a
// runner name: the cost of the copy sanitizeJSON then makes.
func BenchmarkDecodeEventReplacingNUL(b *testing.B) {
	body := readFixture(b, "race-event-full-response.json")
	body = bytes.Replace(body, []byte(`"name": "Tickford"`), []byte(`"name": "Tick\u0000ford"`), 1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := DecodeEvent(body)
		if err != nil || ev.ReplacedChars != 1 {
			b.Fatal(err, ev.ReplacedChars)
		}
	}
}
