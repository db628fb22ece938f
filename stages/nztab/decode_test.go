package nztab

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDecodeEventRealFixtureDecodesAndValidates(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "race-event-full-response.json")

	ev, err := DecodeEvent(body)
	require.NoError(t, err)
	require.Equal(t, testRaceID, ev.Data.Race.RaceID())
	require.Equal(t, testMeetingID, ev.Data.Race.MeetingID)
	require.Equal(t, "Final", ev.Data.Race.Status)
	require.Equal(t, StatusFinal, ev.RaceStatus)
	require.Equal(t, int64(1752713400), ev.Data.Race.AdvertisedStart)
	require.Len(t, ev.Data.Runners, 8)
	require.NotNil(t, ev.Data.MoneyTracker)
	require.Len(t, ev.Data.MoneyTracker.Entrants, 76)
	require.Len(t, ev.Data.TotePools, 6)
	require.Len(t, ev.Data.Results, 8)
	require.Empty(t, ev.Data.Error)
	require.Equal(t, time.Date(2025, 7, 17, 11, 16, 59, 189042980, time.UTC), ev.Header.GeneratedAt())
}

func TestDecodeEventAcceptsVariantsOfAValidPayload(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		mutate     func(obj)
		wantID     string
		wantStatus Status
	}{
		{"as built", nil, testRaceID, StatusOpen},
		{"id used when event_id absent", func(m obj) {
			delete(raceOf(m), "event_id")
			raceOf(m)["id"] = "fallback-id"
		}, "fallback-id", StatusOpen},
		{"status case and space ignored", func(m obj) { raceOf(m)["status"] = " FINALISED " }, testRaceID, StatusFinal},
		{"odds may be null or zero", func(m obj) {
			runnerOf(m, 0)["odds"] = obj{"fixed_win": nil, "pool_win": 0}
		}, testRaceID, StatusOpen},
		{"money tracker may be absent", func(m obj) { delete(dataOf(m), "money_tracker") }, testRaceID, StatusOpen},
		{"money tracker may name non-runners", func(m obj) {
			dataOf(m)["money_tracker"] = obj{"entrants": []any{obj{"entrant_id": "ghost", "hold_percentage": 8, "bet_percentage": 0}}}
		}, testRaceID, StatusOpen},
		{"no runners yet", func(m obj) { dataOf(m)["runners"] = []any{} }, testRaceID, StatusOpen},
		{"bounds are inclusive", func(m obj) {
			runnerOf(m, 0)["odds"] = obj{"fixed_win": 1e6}
			dataOf(m)["money_tracker"] = obj{"entrants": []any{obj{"entrant_id": "e1", "hold_percentage": 100, "bet_percentage": 0}}}
			dataOf(m)["tote_pools"] = []any{obj{"total": 1e10}}
		}, testRaceID, StatusOpen},
		{"error text beside a race is tolerated", func(m obj) { dataOf(m)["error"] = "partial data" }, testRaceID, StatusOpen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := DecodeEvent(eventBody(t, tc.mutate))
			require.NoError(t, err)
			require.Equal(t, tc.wantID, ev.Data.Race.RaceID())
			require.Equal(t, tc.wantStatus, ev.RaceStatus)
			require.NoError(t, ev.Validate())
		})
	}
}

func TestDecodeEventReportsTheBadFieldAsValidationError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		mutate     func(obj)
		wantRace   string
		wantField  string
		wantReason string
	}{
		{"no race id", func(m obj) { raceOf(m)["event_id"] = "" }, "", "data.race.event_id", "must be non-empty (neither event_id nor id is set)"},
		{"no race at all", func(m obj) { delete(dataOf(m), "race") }, "", "data.race.event_id", "must be non-empty (neither event_id nor id is set)"},
		{"API error and no race", func(m obj) {
			delete(dataOf(m), "race")
			dataOf(m)["error"] = "event not found"
		}, "", "data.error", `API reported an error and no race: "event not found"`},
		{"no meeting id", func(m obj) { delete(raceOf(m), "meeting_id") }, testRaceID, "data.race.meeting_id", "must be non-empty"},
		{"advertised start zero", func(m obj) { raceOf(m)["advertised_start"] = 0 }, testRaceID, "data.race.advertised_start", "must be a positive Unix time, got 0"},
		{"advertised start negative", func(m obj) { raceOf(m)["advertised_start"] = -5 }, testRaceID, "data.race.advertised_start", "must be a positive Unix time, got -5"},
		{"runner without entrant id", func(m obj) { runnerOf(m, 1)["entrant_id"] = "" }, testRaceID, "data.runners[1].entrant_id", "must be non-empty"},
		{"duplicate entrant id", func(m obj) { runnerOf(m, 1)["entrant_id"] = "e1" }, testRaceID, "data.runners[1].entrant_id", `duplicates data.runners[0].entrant_id "e1"`},
		{"runner number zero", func(m obj) { runnerOf(m, 1)["runner_number"] = 0 }, testRaceID, "data.runners[1].runner_number", "must be positive, got 0"},
		{"runner number missing", func(m obj) { delete(runnerOf(m, 0), "runner_number") }, testRaceID, "data.runners[0].runner_number", "must be positive, got 0"},
		{"fixed win odds huge", func(m obj) { runnerOf(m, 0)["odds"] = obj{"fixed_win": 2e6} }, testRaceID, "data.runners[0].odds.fixed_win", "must be a finite number in [0, 1e+06], got 2e+06"},
		{"pool place odds negative", func(m obj) { runnerOf(m, 1)["odds"] = obj{"pool_place": -1} }, testRaceID, "data.runners[1].odds.pool_place", "must be a finite number in [0, 1e+06], got -1"},
		{"hold percentage above 100", func(m obj) {
			dataOf(m)["money_tracker"] = obj{"entrants": []any{obj{"entrant_id": "e1", "hold_percentage": 101}}}
		}, testRaceID, "data.money_tracker.entrants[0].hold_percentage", "must be a percentage in [0, 100], got 101"},
		{"bet percentage negative", func(m obj) {
			dataOf(m)["money_tracker"] = obj{"entrants": []any{obj{"entrant_id": "e1"}, obj{"entrant_id": "e2", "bet_percentage": -0.5}}}
		}, testRaceID, "data.money_tracker.entrants[1].bet_percentage", "must be a percentage in [0, 100], got -0.5"},
		{"tote total negative", func(m obj) { dataOf(m)["tote_pools"] = []any{obj{"total": -1}} }, testRaceID, "data.tote_pools[0].total", "must be a finite amount in [0, 1e+10], got -1"},
		{"tote total huge", func(m obj) { dataOf(m)["tote_pools"] = []any{obj{"total": 1}, obj{"total": 1e300}} }, testRaceID, "data.tote_pools[1].total", "must be a finite amount in [0, 1e+10], got 1e+300"},
		{"dividend pool size huge", func(m obj) { dataOf(m)["dividends"] = []any{obj{"pool_size": 2e10}} }, testRaceID, "data.dividends[0].pool_size", "must be a finite amount in [0, 1e+10], got 2e+10"},
		{"dividend negative", func(m obj) { dataOf(m)["dividends"] = []any{obj{"dividend": -6.6}} }, testRaceID, "data.dividends[0].dividend", "must be a finite amount in [0, 1e+10], got -6.6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := DecodeEvent(eventBody(t, tc.mutate))
			require.Nil(t, ev)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "want *ValidationError, got %T: %v", err, err)
			require.Equal(t, tc.wantRace, ve.RaceID)
			require.Equal(t, tc.wantField, ve.Field)
			require.Equal(t, tc.wantReason, ve.Reason)
		})
	}
}

func TestValidationErrorMessageNamesRaceFieldAndReason(t *testing.T) {
	t.Parallel()
	_, err := DecodeEvent(eventBody(t, func(m obj) { runnerOf(m, 1)["runner_number"] = -3 }))
	require.EqualError(t, err, "race "+testRaceID+": field data.runners[1].runner_number: must be positive, got -3")

	_, err = DecodeEvent(eventBody(t, func(m obj) { raceOf(m)["event_id"] = "" }))
	require.EqualError(t, err, "race <unknown>: field data.race.event_id: must be non-empty (neither event_id nor id is set)")
}

func TestDecodeEventUnknownStatusIsValidationErrorWrappingUnknownStatusError(t *testing.T) {
	t.Parallel()
	_, err := DecodeEvent(eventBody(t, func(m obj) { raceOf(m)["status"] = "Postponed" }))
	var ve *ValidationError
	require.True(t, errors.As(err, &ve))
	require.Equal(t, "data.race.status", ve.Field)
	require.Equal(t, testRaceID, ve.RaceID)
	var use *UnknownStatusError
	require.True(t, errors.As(err, &use))
	require.Equal(t, "Postponed", use.Value)
	require.ErrorIs(t, err, ErrUnknownStatus)
	require.EqualError(t, err, "race "+testRaceID+`: field data.race.status: unknown race status "Postponed"`)
}

func TestDecodeEventWrapsJSONErrorsInDecodeError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		body       string
		wantOffset int64
		wantField  string
	}{
		{"empty body", ``, 0, ""},
		{"truncated", `{"data":{"race":`, 16, "data.race"},
		{"trailing garbage", `{} x`, 3, ""},
		{"NaN literal", `{"data":{"tote_pools":[{"total":NaN}]}}`, 32, "data.tote_pools[0].total"},
		{"top level array", `[]`, 0, ""},
		{"string where int", `{"data":{"race":{"advertised_start":"soon"}}}`, 36, "data.race.advertised_start"},
		{"number overflows float64", `{"data":{"tote_pools":[{"total":1e400}]}}`, 32, "data.tote_pools[0].total"},
		{"runner_number overflows int", `{"data":{"runners":[{"runner_number":99999999999999999999}]}}`, 37, "data.runners[0].runner_number"},
		{"wrong type deep in a runner", `{"data":{"runners":[{},{"odds":{"fixed_win":"2.5"}}]}}`, 44, "data.runners[1].odds.fixed_win"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := DecodeEvent([]byte(tc.body))
			require.Nil(t, ev)
			var de *DecodeError
			require.True(t, errors.As(err, &de), "want *DecodeError, got %T: %v", err, err)
			require.Equal(t, "event", de.Payload)
			require.Equal(t, tc.wantOffset, de.Offset)
			require.Equal(t, tc.wantField, de.Field)
			require.Contains(t, err.Error(), "offset")
		})
	}
}

func TestDecodeMeetingsRealFixtureKeepsEveryMeeting(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "meetings-list-response.json")

	list, err := DecodeMeetings(body)
	require.NoError(t, err)
	// All 76 meetings of 2025-07-17 pass: each has non-empty meeting, name,
	// country and category, date 2025-07-17T00:00:00Z, a string
	// track_condition and ids on all 748 races, so none is skipped.
	require.Len(t, list.Meetings, 76)
	require.Empty(t, list.Skipped)
	require.Equal(t, "Race Meetings", list.Header.Title)

	cats := map[string]int{}
	races := 0
	for _, m := range list.Meetings {
		cats[m.Category]++
		races += len(m.Races)
		require.Equal(t, "2025-07-17T00:00:00Z", m.Date)
	}
	require.Equal(t, map[string]int{"T": 35, "G": 30, "H": 11}, cats)
	require.Equal(t, 748, races)
}

func TestDecodeMeetingsRealFixtureSkipsOnlyTheDamagedMeetings(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "meetings-list-response.json")
	var env struct {
		Data struct {
			Meetings []map[string]any `json:"meetings"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &env))
	ms := env.Data.Meetings
	require.Len(t, ms, 76)
	wantID := ms[10]["meeting"].(string)
	nullTrackID := ms[20]["meeting"].(string)
	ms[3] = nil                       // null element
	ms[10]["date"] = "17/07/2025"     // bad date
	ms[20]["track_condition"] = nil   // allowed
	ms[30]["name"] = map[string]any{} // wrong type
	damaged, err := json.Marshal(obj{"header": obj{"title": "Race Meetings"}, "data": obj{"meetings": ms}})
	require.NoError(t, err)

	list, err := DecodeMeetings(damaged)
	require.NoError(t, err)
	require.Len(t, list.Meetings, 73)
	require.Len(t, list.Skipped, 3)
	require.Equal(t, []int{3, 10, 30}, []int{list.Skipped[0].Index, list.Skipped[1].Index, list.Skipped[2].Index})
	require.Equal(t, wantID, list.Skipped[1].MeetingID)
	require.Equal(t, nullTrackID, list.Meetings[18].Meeting)
	require.Nil(t, list.Meetings[18].TrackCondition, "meeting 20 (now at 18, after skips 3 and 10) keeps its null track condition")
}

func TestDecodeMeetingsReportsEachBadMeetingAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	good := func(id string) obj {
		return obj{"meeting": id, "name": "Ellerslie", "date": "2025-07-17T00:00:00Z", "country": "NZ", "category": "T",
			"category_name": "Thoroughbred Horse Racing", "state": "", "track_condition": "Good4",
			"races": []any{obj{"id": id + "-r1", "race_number": 1, "status": "Open"}}}
	}
	with := func(id string, k string, v any) obj { m := good(id); m[k] = v; return m }
	without := func(id string, k string) obj { m := good(id); delete(m, k); return m }
	meetings := []any{
		good("m0"),
		nil,
		with("m2", "name", 5),
		with("m3", "meeting", ""),
		with("m4", "date", "2025-07-17"),
		with("m5", "track_condition", nil),
		without("m6", "country"),
		with("m7", "category", nil),
		with("m8", "races", []any{obj{"id": "ok"}, obj{"race_number": 2}}),
		"not an object",
		with("m10", "races", []any{obj{"id": "x", "distance": "1200m"}}),
	}
	body, err := json.Marshal(obj{"header": obj{"title": "Race Meetings"}, "data": obj{"meetings": meetings}})
	require.NoError(t, err)

	list, err := DecodeMeetings(body)
	require.NoError(t, err)
	ids := []string{}
	for _, m := range list.Meetings {
		ids = append(ids, m.Meeting)
	}
	require.Equal(t, []string{"m0", "m5"}, ids)
	require.Nil(t, list.Meetings[1].TrackCondition)

	type want struct {
		index  int
		id     string
		field  string // FieldError field, or "" for a DecodeError
		decode string // DecodeError field
	}
	wants := []want{
		{1, "", ".", ""},
		{2, "m2", "", "name"},
		{3, "", "meeting", ""},
		{4, "m4", "date", ""},
		{6, "m6", "country", ""},
		{7, "m7", "category", ""},
		{8, "m8", "races[1].id", ""},
		{9, "", "", ""},
		{10, "m10", "", "races[0].distance"},
	}
	require.Len(t, list.Skipped, len(wants))
	for i, w := range wants {
		s := list.Skipped[i]
		require.Equal(t, w.index, s.Index, "skip %d", i)
		require.Equal(t, w.id, s.MeetingID, "skip %d", i)
		require.Contains(t, s.Error(), "data.meetings[", "skip %d", i)
		if w.field != "" {
			var fe *FieldError
			require.True(t, errors.As(s.Err, &fe), "skip %d: want *FieldError, got %T", i, s.Err)
			require.Equal(t, w.field, fe.Field)
			continue
		}
		var de *DecodeError
		require.True(t, errors.As(s.Err, &de), "skip %d: want *DecodeError, got %T", i, s.Err)
		require.Equal(t, "meeting", de.Payload)
		require.Equal(t, w.decode, de.Field)
	}
}

func TestDecodeMeetingsWholeBodyErrorsAreFatal(t *testing.T) {
	t.Parallel()
	for _, body := range []string{``, `not json`, `{"data":{"meetings":"x"}}`, `{"data":[]}`} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeMeetings([]byte(body))
			var de *DecodeError
			require.True(t, errors.As(err, &de), "got %T: %v", err, err)
			require.Equal(t, "meetings", de.Payload)
		})
	}
}

func TestDecodeMeetingsEmptyDayIsNotAnError(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"data":{"meetings":[]}}`, `{"data":{"meetings":null}}`, `{"data":{}}`} {
		list, err := DecodeMeetings([]byte(body))
		require.NoError(t, err, body)
		require.Empty(t, list.Meetings, body)
		require.Empty(t, list.Skipped, body)
	}
}

func TestHeaderGeneratedAtIsZeroWhenAbsentOrUnparsable(t *testing.T) {
	t.Parallel()
	require.True(t, Header{}.GeneratedAt().IsZero())
	require.True(t, Header{GeneratedTime: "yesterday"}.GeneratedAt().IsZero())
	require.Equal(t, time.Date(2025, 7, 17, 10, 48, 11, 805562713, time.UTC),
		Header{GeneratedTime: "2025-07-17T10:48:11.805562713Z"}.GeneratedAt())
}

func BenchmarkDecodeEvent(b *testing.B) {
	body := readFixture(b, "race-event-full-response.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
