package baseline

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Counts are the rows an Upsert inserted or actually changed; a row whose
// values were all equal to the stored ones is in neither.
type Counts struct {
	MeetingsInserted int
	MeetingsUpdated  int
	RacesInserted    int
	RacesUpdated     int
}

// Meetings is the number of meeting rows written (inserted + changed).
func (c Counts) Meetings() int { return c.MeetingsInserted + c.MeetingsUpdated }

// Races is the number of race rows written (inserted + changed).
func (c Counts) Races() int { return c.RacesInserted + c.RacesUpdated }

// The statements take one array per column and unnest them, so a day of any
// size is one statement with a fixed number of parameters (no 65,535
// bind-parameter limit, no chunking). Nullable columns keep the stored value
// when the new one is NULL; the WHERE compares the stored row with the row
// the SET would produce, so an unchanged row is not touched (no trigger, no
// dead tuple, not counted). RETURNING xmax = 0 tells an insert from an update.
const upsertMeetingsSQL = `
INSERT INTO meetings AS t (meeting_id, meeting_name, country, state, race_type, category, date, track_condition, tote_status)
SELECT v.meeting_id, v.meeting_name, v.country, v.state, v.race_type, v.category, v.date::date, v.track_condition, v.tote_status
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
	AS v(meeting_id, meeting_name, country, state, race_type, category, date, track_condition, tote_status)
ON CONFLICT (meeting_id) DO UPDATE SET
	meeting_name    = EXCLUDED.meeting_name,
	country         = EXCLUDED.country,
	state           = COALESCE(EXCLUDED.state, t.state),
	race_type       = EXCLUDED.race_type,
	category        = EXCLUDED.category,
	date            = EXCLUDED.date,
	track_condition = COALESCE(EXCLUDED.track_condition, t.track_condition),
	tote_status     = COALESCE(EXCLUDED.tote_status, t.tote_status)
WHERE (t.meeting_name, t.country, t.state, t.race_type, t.category, t.date, t.track_condition, t.tote_status)
	IS DISTINCT FROM
	(EXCLUDED.meeting_name, EXCLUDED.country, COALESCE(EXCLUDED.state, t.state), EXCLUDED.race_type,
	 EXCLUDED.category, EXCLUDED.date, COALESCE(EXCLUDED.track_condition, t.track_condition),
	 COALESCE(EXCLUDED.tote_status, t.tote_status))
RETURNING (xmax = 0) AS inserted`

// A race whose stored status is terminal keeps it: the meetings list is
// cached upstream and can lag behind the polls, and a final race must never
// be polled again because a stale summary said "open".
const upsertRacesSQL = `
INSERT INTO races AS t (race_id, meeting_id, name, race_number, start_time, status, distance, track_condition, weather)
SELECT v.race_id, v.meeting_id, v.name, v.race_number, v.start_time, v.status, v.distance, v.track_condition, v.weather
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::int[], $8::text[], $9::text[])
	AS v(race_id, meeting_id, name, race_number, start_time, status, distance, track_condition, weather)
ON CONFLICT (race_id) DO UPDATE SET
	meeting_id      = EXCLUDED.meeting_id,
	name            = EXCLUDED.name,
	race_number     = EXCLUDED.race_number,
	start_time      = EXCLUDED.start_time,
	status          = CASE WHEN t.status IN ('final', 'abandoned') THEN t.status ELSE EXCLUDED.status END,
	distance        = COALESCE(EXCLUDED.distance, t.distance),
	track_condition = COALESCE(EXCLUDED.track_condition, t.track_condition),
	weather         = COALESCE(EXCLUDED.weather, t.weather)
WHERE (t.meeting_id, t.name, t.race_number, t.start_time, t.status, t.distance, t.track_condition, t.weather)
	IS DISTINCT FROM
	(EXCLUDED.meeting_id, EXCLUDED.name, EXCLUDED.race_number, EXCLUDED.start_time,
	 CASE WHEN t.status IN ('final', 'abandoned') THEN t.status ELSE EXCLUDED.status END,
	 COALESCE(EXCLUDED.distance, t.distance), COALESCE(EXCLUDED.track_condition, t.track_condition),
	 COALESCE(EXCLUDED.weather, t.weather))
RETURNING (xmax = 0) AS inserted`

// Upsert writes meetings, then races, in one transaction: either the whole
// baseline lands or none of it. Every race's meeting must be among meetings
// or already stored (races.meeting_id is a foreign key).
func Upsert(ctx context.Context, pool *pgxpool.Pool, meetings []MeetingRow, races []RaceRow) (Counts, error) {
	var c Counts
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if c.MeetingsInserted, c.MeetingsUpdated, err = upsertMeetings(ctx, tx, meetings); err != nil {
			return err
		}
		c.RacesInserted, c.RacesUpdated, err = upsertRaces(ctx, tx, races)
		return err
	})
	if err != nil {
		return Counts{}, fmt.Errorf("baseline: upsert %d meetings, %d races: %w", len(meetings), len(races), err)
	}
	return c, nil
}

func upsertMeetings(ctx context.Context, tx pgx.Tx, rows []MeetingRow) (inserted, updated int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	n := len(rows)
	ids, names, countries, races, cats, dates := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n)
	states, conds, totes := make([]*string, n), make([]*string, n), make([]*string, n)
	for i, r := range rows {
		ids[i], names[i], countries[i], states[i] = r.MeetingID, r.MeetingName, r.Country, r.State
		races[i], cats[i], dates[i] = r.RaceType, r.Category, r.Date.String()
		conds[i], totes[i] = r.TrackCondition, r.ToteStatus
	}
	inserted, updated, err = countReturning(ctx, tx, upsertMeetingsSQL,
		ids, names, countries, states, races, cats, dates, conds, totes)
	if err != nil {
		return 0, 0, fmt.Errorf("meetings: %w", err)
	}
	return inserted, updated, nil
}

func upsertRaces(ctx context.Context, tx pgx.Tx, rows []RaceRow) (inserted, updated int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	n := len(rows)
	ids, meetings, names, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	numbers, starts, distances := make([]int32, n), make([]time.Time, n), make([]*int32, n)
	conds, weathers := make([]*string, n), make([]*string, n)
	for i, r := range rows {
		ids[i], meetings[i], names[i], statuses[i] = r.RaceID, r.MeetingID, r.Name, r.Status.String()
		numbers[i], starts[i] = int32(r.RaceNumber), r.StartTime.UTC()
		if r.Distance != nil {
			d := int32(*r.Distance)
			distances[i] = &d
		}
		conds[i], weathers[i] = r.TrackCondition, r.Weather
	}
	inserted, updated, err = countReturning(ctx, tx, upsertRacesSQL,
		ids, meetings, names, numbers, starts, statuses, distances, conds, weathers)
	if err != nil {
		return 0, 0, fmt.Errorf("races: %w", err)
	}
	return inserted, updated, nil
}

func countReturning(ctx context.Context, tx pgx.Tx, sql string, args ...any) (inserted, updated int, err error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return 0, 0, err
	}
	flags, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		return 0, 0, err
	}
	for _, ins := range flags {
		if ins {
			inserted++
		} else {
			updated++
		}
	}
	return inserted, updated, nil
}
