package baseline_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestRowsIsolatesMeetingsAndRacesWithValuesTheDatabaseCannotStore(t *testing.T) {
	t.Parallel()
	huge := 1 << 40
	for _, tc := range []struct {
		name        string
		mutate      func(m *nztab.Meeting)
		meetingLost bool // else only the meeting's second race is lost
	}{
		{"NUL in a meeting name", func(m *nztab.Meeting) { m.Name = "Te\x00Rapa" }, true},
		{"NUL in a meeting id", func(m *nztab.Meeting) { m.Meeting = "m\x00" }, true},
		{"invalid UTF-8 in a meeting's state", func(m *nztab.Meeting) { m.State = "N\xffZ" }, true},
		{"NUL in a track condition", func(m *nztab.Meeting) { v := "Good\x00"; m.TrackCondition = &v }, true},
		{"a name beyond any real one", func(m *nztab.Meeting) { m.Name = strings.Repeat("x", 2000) }, true},
		{"NUL in a race name", func(m *nztab.Meeting) { m.Races[1].Name = "R\x00" }, false},
		{"NUL in a race id", func(m *nztab.Meeting) { m.Races[1].ID = "r\x00" }, false},
		{"NUL in a race's weather", func(m *nztab.Meeting) { m.Races[1].Weather = "\x00" }, false},
		{"race number beyond int4", func(m *nztab.Meeting) { m.Races[1].RaceNumber = huge }, false},
		{"distance beyond int4", func(m *nztab.Meeting) { m.Races[1].Distance = &huge }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := meeting("bad", "NZ", "T", race("b1", "Open"), race("b2", "Open"))
			tc.mutate(&bad)
			list := nztab.MeetingsList{Meetings: []nztab.Meeting{
				meeting("good1", "NZ", "T", race("g1", "Open")), bad, meeting("good2", "AUS", "H", race("g2", "Open")),
			}}
			ms, rs, skipped := baseline.Rows(list, baseline.Filter{})
			require.Len(t, skipped, 1)
			require.ErrorIs(t, skipped[0], baseline.ErrBadValue)
			var meetings, races []string
			for _, m := range ms {
				meetings = append(meetings, m.MeetingID)
			}
			for _, r := range rs {
				races = append(races, r.RaceID)
			}
			if tc.meetingLost {
				require.Empty(t, skipped[0].RaceID, "the whole meeting is skipped")
				require.Equal(t, []string{"good1", "good2"}, meetings)
				require.Equal(t, []string{"g1", "g2"}, races)
				return
			}
			require.NotEmpty(t, skipped[0].RaceID)
			require.Equal(t, []string{"good1", "bad", "good2"}, meetings, "a bad race costs only itself")
			require.Equal(t, []string{"g1", "b1", "g2"}, races)
		})
	}
}

func TestRowsStoresOnlyKnownToteStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want *string
	}{
		{"Open", ptr(baseline.ToteOpen)},
		{" closed ", ptr(baseline.ToteClosed)},
		{"OPEN", ptr(baseline.ToteOpen)},
		{"", nil},
		{"Suspended", nil},
		{"?", nil},
	} {
		m := meeting("m1", "NZ", "T")
		m.ToteStatus = tc.in
		ms, _, skipped := baseline.Rows(nztab.MeetingsList{Meetings: []nztab.Meeting{m}}, baseline.Filter{})
		require.Empty(t, skipped)
		require.Equal(t, tc.want, ms[0].ToteStatus, "%q", tc.in)
	}
}
