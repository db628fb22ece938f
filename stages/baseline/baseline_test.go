package baseline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/fixtures"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// readFixture returns a shared fixture or skips the test.
func readFixture(t *testing.T, name string) []byte { t.Helper(); return fixtures.Read(t, name) }

func fixtureMeetings(t *testing.T) nztab.MeetingsList {
	t.Helper()
	list, err := nztab.DecodeMeetings(readFixture(t, "meetings-list-response.json"))
	require.NoError(t, err)
	require.Empty(t, list.Skipped, "every fixture meeting decodes")
	require.Len(t, list.Meetings, 76)
	return list
}

func ptr[T any](v T) *T { return &v }

func meeting(id, country, category string, races ...nztab.MeetingRace) nztab.Meeting {
	return nztab.Meeting{Meeting: id, Name: "M " + id, Date: "2025-07-17T00:00:00Z", Country: country,
		Category: category, State: "NZ", TrackCondition: ptr("Good4"), ToteStatus: "Open", Races: races}
}

func race(id, status string) nztab.MeetingRace {
	return nztab.MeetingRace{ID: id, RaceNumber: 1, Name: "R " + id, StartTime: "2025-07-17T01:00:00Z",
		Status: status, Distance: ptr(1200), TrackCondition: "Good4", Weather: "FINE"}
}

func TestRowsKeepsConfiguredCountriesAndCategories(t *testing.T) {
	t.Parallel()
	list := nztab.MeetingsList{Meetings: []nztab.Meeting{
		meeting("nz-t", "NZ", "T", race("r1", "Open")),
		meeting("aus-h", "aus", "h", race("r2", "Open")),
		meeting("nz-g", "NZ", "G", race("r3", "Open")),
		meeting("usa-t", "USA", "T", race("r4", "Open")),
	}}
	tests := []struct {
		name     string
		filter   baseline.Filter
		meetings []string
		races    []string
	}{
		{"zero filter is NZ/AUS T/H", baseline.Filter{}, []string{"nz-t", "aus-h"}, []string{"r1", "r2"}},
		{"greyhounds when asked", baseline.Filter{Categories: []string{"T", "H", "G"}}, []string{"nz-t", "aus-h", "nz-g"}, []string{"r1", "r2", "r3"}},
		{"countries override", baseline.Filter{Countries: []string{"USA"}}, []string{"usa-t"}, []string{"r4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ms, rs, skipped := baseline.Rows(list, tc.filter)
			require.Empty(t, skipped)
			var gotM, gotR []string
			for _, m := range ms {
				gotM = append(gotM, m.MeetingID)
			}
			for _, r := range rs {
				gotR = append(gotR, r.RaceID)
			}
			require.Equal(t, tc.meetings, gotM)
			require.Equal(t, tc.races, gotR)
		})
	}
}

func TestRowsMapsFieldsAndEmptyStringsToNull(t *testing.T) {
	t.Parallel()
	m := meeting("m1", "NZ", "H", race("r1", " Interim "))
	m.Date = "2025-07-17T00:00:00Z" // the date part is the NZ day, whatever the offset says
	m.TrackCondition = ptr("")
	m.ToteStatus = ""
	m.State = ""
	m.Races[0].Weather = ""
	m.Races[0].TrackCondition = ""
	m.Races[0].Distance = nil
	m.Races[0].StartTime = "2025-07-17T13:05:00+12:00"
	ms, rs, skipped := baseline.Rows(nztab.MeetingsList{Meetings: []nztab.Meeting{m}}, baseline.Filter{})
	require.Empty(t, skipped)
	require.Equal(t, []baseline.MeetingRow{{
		MeetingID: "m1", MeetingName: "M m1", Country: "NZ", RaceType: baseline.RaceTypeHarness, Category: "H",
		Date: nzday.Day{Year: 2025, Month: time.July, Day: 17},
	}}, ms)
	require.Equal(t, []baseline.RaceRow{{
		RaceID: "r1", MeetingID: "m1", Name: "R r1", RaceNumber: 1,
		StartTime: time.Date(2025, 7, 17, 1, 5, 0, 0, time.UTC), Status: nztab.StatusInterim,
	}}, rs)
	require.Equal(t, time.UTC, rs[0].StartTime.Location(), "start time is stored as UTC")
}

func TestRowsSkipsAndReportsUnmappableRaces(t *testing.T) {
	t.Parallel()
	bad := race("r-bad-start", "Open")
	bad.StartTime = "17/07/2025 13:00"
	list := nztab.MeetingsList{Meetings: []nztab.Meeting{
		meeting("m1", "NZ", "T", race("r-ok", "Final"), race("r-unknown", "Photo"), bad),
	}}
	ms, rs, skipped := baseline.Rows(list, baseline.Filter{})
	require.Len(t, ms, 1, "the meeting survives its bad races")
	require.Len(t, rs, 1)
	require.Equal(t, "r-ok", rs[0].RaceID)
	require.Equal(t, nztab.StatusFinal, rs[0].Status)
	require.Len(t, skipped, 2)
	require.Equal(t, "r-unknown", skipped[0].RaceID)
	require.ErrorIs(t, skipped[0], nztab.ErrUnknownStatus)
	require.Equal(t, "r-bad-start", skipped[1].RaceID)
	require.Equal(t, "m1", skipped[1].MeetingID)
}

func TestRowsLastDuplicateWins(t *testing.T) {
	t.Parallel()
	first, second := race("r1", "Open"), race("r1", "Closed")
	list := nztab.MeetingsList{Meetings: []nztab.Meeting{
		meeting("m1", "NZ", "T", first),
		meeting("m1", "NZ", "T", second),
	}}
	ms, rs, _ := baseline.Rows(list, baseline.Filter{})
	require.Len(t, ms, 1)
	require.Len(t, rs, 1)
	require.Equal(t, nztab.StatusClosed, rs[0].Status)
}

func TestFilterValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		filter  baseline.Filter
		wantErr string
	}{
		{"zero value is the default", baseline.Filter{}, ""},
		{"greyhounds allowed", baseline.Filter{Categories: []string{"G"}}, ""},
		{"unknown category", baseline.Filter{Categories: []string{"T", "X"}}, `category "X"`},
		{"explicitly empty countries", baseline.Filter{Countries: []string{}}, "at least one country"},
		{"blank country", baseline.Filter{Countries: []string{" "}}, "country must be non-empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.filter.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestRowsOfRealMeetingsList(t *testing.T) {
	t.Parallel()
	list := fixtureMeetings(t)
	tests := []struct {
		name              string
		filter            baseline.Filter
		meetings, races   int
		byType            map[string]int
		byStatus          map[nztab.Status]int
		greyhoundsPresent bool
	}{
		{
			// NZ H 2, NZ T 1, AUS T 5, AUS H 4; the 16 NZ/AUS greyhound
			// meetings and 48 meetings of other countries are dropped.
			name: "default NZ/AUS T/H", meetings: 12, races: 96,
			byType:   map[string]int{baseline.RaceTypeThoroughbred: 6, baseline.RaceTypeHarness: 6},
			byStatus: map[nztab.Status]int{nztab.StatusFinal: 92, nztab.StatusOpen: 3, nztab.StatusClosed: 1},
		},
		{
			name: "with greyhounds", filter: baseline.Filter{Categories: []string{"T", "H", "G"}}, meetings: 28, races: 286,
			byType: map[string]int{baseline.RaceTypeThoroughbred: 6, baseline.RaceTypeHarness: 6, baseline.RaceTypeGreyhound: 16},
			byStatus: map[nztab.Status]int{nztab.StatusFinal: 229, nztab.StatusOpen: 53, nztab.StatusInterim: 2,
				nztab.StatusAbandoned: 1, nztab.StatusClosed: 1},
		},
		{
			name: "NZ only", filter: baseline.Filter{Countries: []string{"NZ"}}, meetings: 3, races: 24,
			byType:   map[string]int{baseline.RaceTypeThoroughbred: 1, baseline.RaceTypeHarness: 2},
			byStatus: map[nztab.Status]int{nztab.StatusFinal: 24},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ms, rs, skipped := baseline.Rows(list, tc.filter)
			require.Empty(t, skipped)
			require.Len(t, ms, tc.meetings)
			require.Len(t, rs, tc.races)
			byType := map[string]int{}
			for _, m := range ms {
				byType[m.RaceType]++
				require.Equal(t, "2025-07-17", m.Date.String(), m.MeetingID)
			}
			require.Equal(t, tc.byType, byType)
			byStatus := map[nztab.Status]int{}
			for _, r := range rs {
				byStatus[r.Status]++
			}
			require.Equal(t, tc.byStatus, byStatus)
		})
	}
}

func TestUpsertRealMeetingsListThenNothingChanges(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms, rs, _ := baseline.Rows(fixtureMeetings(t), baseline.Filter{})

	c, err := baseline.Upsert(ctx, db.Pool, ms, rs)
	require.NoError(t, err)
	require.Equal(t, baseline.Counts{MeetingsInserted: 12, RacesInserted: 96}, c)

	var meetings, races, greyhounds, nonNZAUS int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE race_type = 'greyhound'), count(*) FILTER (WHERE country NOT IN ('NZ', 'AUS'))
		FROM meetings`).Scan(&meetings, &greyhounds, &nonNZAUS))
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM races`).Scan(&races))
	require.Equal(t, []int{12, 96, 0, 0}, []int{meetings, races, greyhounds, nonNZAUS})

	// Winton (NZ harness) and its first race, as in the fixture.
	var name, raceType, date, cond, tote string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT meeting_name, race_type, date::text, track_condition, tote_status
		FROM meetings WHERE meeting_id = '85fc0c65-6b71-4aaf-a879-51aaefe4b746'`).Scan(&name, &raceType, &date, &cond, &tote))
	require.Equal(t, []string{"Winton", "harness", "2025-07-17", "Easy", "Closed"}, []string{name, raceType, date, cond, tote})
	var start time.Time
	var status, weather string
	var distance int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT start_time, status, distance, weather
		FROM races WHERE race_id = '3a89a853-30e8-42a3-8400-437846b0f79e'`).Scan(&start, &status, &distance, &weather))
	require.True(t, start.Equal(time.Date(2025, 7, 16, 23, 45, 0, 0, time.UTC)), start)
	require.Equal(t, []any{"final", 2400, "FINE"}, []any{status, distance, weather})

	var touched time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT max(updated_at) FROM races`).Scan(&touched))
	c, err = baseline.Upsert(ctx, db.Pool, ms, rs)
	require.NoError(t, err)
	require.Equal(t, baseline.Counts{}, c, "a second identical upsert changes no row")
	var touchedAgain time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT max(updated_at) FROM races`).Scan(&touchedAgain))
	require.True(t, touched.Equal(touchedAgain), "no row was updated (the trigger did not fire)")
}

func TestUpsertChangeRules(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	rows := func(m nztab.Meeting) ([]baseline.MeetingRow, []baseline.RaceRow) {
		ms, rs, skipped := baseline.Rows(nztab.MeetingsList{Meetings: []nztab.Meeting{m}}, baseline.Filter{})
		require.Empty(t, skipped)
		return ms, rs
	}
	upsert := func(m nztab.Meeting) baseline.Counts {
		ms, rs := rows(m)
		c, err := baseline.Upsert(ctx, db.Pool, ms, rs)
		require.NoError(t, err)
		return c
	}
	base := meeting("m1", "NZ", "T", race("r-open", "Open"), race("r-final", "Open"), race("r-ab", "Open"))
	require.Equal(t, baseline.Counts{MeetingsInserted: 1, RacesInserted: 3}, upsert(base))

	// The polls moved two races to terminal states; a stale summary must not undo that.
	_, err := db.Pool.Exec(ctx, `UPDATE races SET status = CASE race_id WHEN 'r-final' THEN 'final' ELSE 'abandoned' END
		WHERE race_id IN ('r-final', 'r-ab')`)
	require.NoError(t, err)

	changed := meeting("m1", "NZ", "T", race("r-open", "Closed"), race("r-final", "Open"), race("r-ab", "Open"))
	changed.TrackCondition = ptr("") // missing now: keep "Good4"
	changed.ToteStatus = "Closed"
	changed.Races[2].Weather = "" // missing now: keep "FINE"
	require.Equal(t, baseline.Counts{MeetingsUpdated: 1, RacesUpdated: 1}, upsert(changed),
		"only the tote status and r-open's status changed")

	got := map[string]string{}
	rowsQ, err := db.Pool.Query(ctx, `SELECT race_id, status || '/' || weather FROM races`)
	require.NoError(t, err)
	for rowsQ.Next() {
		var id, v string
		require.NoError(t, rowsQ.Scan(&id, &v))
		got[id] = v
	}
	require.NoError(t, rowsQ.Err())
	require.Equal(t, map[string]string{"r-open": "closed/FINE", "r-final": "final/FINE", "r-ab": "abandoned/FINE"}, got)
	var cond, tote string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT track_condition, tote_status FROM meetings`).Scan(&cond, &tote))
	require.Equal(t, []string{"Good4", "Closed"}, []string{cond, tote})
}

func TestUpsertLeavesOutOnlyTheMeetingsTheDatabaseRefuses(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms, rs, _ := baseline.Rows(nztab.MeetingsList{Meetings: []nztab.Meeting{
		meeting("m1", "NZ", "T", race("r1", "Open"), race("r2", "Open")),
		meeting("m2", "NZ", "T", race("r3", "Open")),
		meeting("m3", "NZ", "T", race("r4", "Open")),
	}}, baseline.Filter{})
	// Rows would have caught these; Upsert must not depend on it.
	ms[1].MeetingName = "Bad\x00Name"
	orphan := rs[0]
	orphan.RaceID, orphan.MeetingID = "r-orphan", "no-such-meeting"
	rs = append(rs, orphan)

	c, err := baseline.Upsert(ctx, db.Pool, ms, rs)
	require.NoError(t, err, "refused rows are reported, not an error")
	require.Equal(t, 2, c.MeetingsInserted)
	require.Equal(t, 3, c.RacesInserted, "m1's two races and m3's")
	require.Equal(t, 1, c.MeetingsRejected)
	require.Equal(t, 2, c.RacesRejected, "m2's race and the orphan")
	require.Len(t, c.Rejected, 2)
	require.Equal(t, "m2", c.Rejected[0].MeetingID)
	var pg *pgconn.PgError
	require.ErrorAs(t, c.Rejected[0], &pg)
	require.Equal(t, "22021", pg.Code, "PostgreSQL text refuses NUL")
	require.Equal(t, "no-such-meeting", c.Rejected[1].MeetingID)

	var ids []string
	rows, err := db.Pool.Query(ctx, `SELECT race_id FROM races ORDER BY race_id`)
	require.NoError(t, err)
	ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"r1", "r2", "r4"}, ids)
}

func TestUpsertBeyondTheBindParameterLimit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// 9 columns × 8,000 races = 72,000 values: one VALUES list with a
	// parameter per value would exceed PostgreSQL's 65,535.
	const n = 8000
	races := make([]nztab.MeetingRace, n)
	for i := range races {
		races[i] = race(fmt.Sprintf("r%05d", i), "Open")
	}
	ms, rs, _ := baseline.Rows(nztab.MeetingsList{Meetings: []nztab.Meeting{meeting("m1", "AUS", "H", races...)}}, baseline.Filter{})
	c, err := baseline.Upsert(ctx, db.Pool, ms, rs)
	require.NoError(t, err)
	require.Equal(t, baseline.Counts{MeetingsInserted: 1, RacesInserted: n}, c)
}
