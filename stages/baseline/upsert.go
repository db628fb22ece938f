package baseline

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// DB is what the package needs of a database; *pgxpool.Pool satisfies it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Counts are the rows an Upsert inserted or actually changed; a row whose
// values were all equal to the stored ones is in neither. Rejected rows are
// those the database refused, each reported in Rejected.
type Counts struct {
	MeetingsInserted int
	MeetingsUpdated  int
	RacesInserted    int
	RacesUpdated     int
	// MeetingsRejected and RacesRejected count rows left out because the
	// database refused their meeting (the meeting and all its races go
	// together).
	MeetingsRejected int
	RacesRejected    int
	// Rejected says, per meeting refused, why.
	Rejected []Skip
}

// Meetings is the number of meeting rows written (inserted + changed).
func (c Counts) Meetings() int { return c.MeetingsInserted + c.MeetingsUpdated }

// Races is the number of race rows written (inserted + changed).
func (c Counts) Races() int { return c.RacesInserted + c.RacesUpdated }

// upsertRacesSQL takes one array per column and unnests it, so a day of any
// size is one statement with a fixed number of parameters (no 65,535
// bind-parameter limit, no chunking). Nullable columns keep the stored value
// when the new one is NULL; the WHERE compares the stored row with the row
// the SET would produce, so an unchanged row is not touched (no trigger, no
// dead tuple, not counted), and leaves alone a row written from a later
// observation than the list's (a poll after the fetch), as every state-row
// upsert does (stages/write). RETURNING xmax = 0 tells an insert from an
// update. A race whose stored status is terminal keeps it: the meetings
// list is cached upstream and can lag behind the polls, and a final race
// must never be polled again because a stale summary said "open".
const upsertRacesSQL = `
INSERT INTO races AS t (race_id, meeting_id, name, race_number, start_time, status, distance, track_condition,
	weather, observed_at)
SELECT v.race_id, v.meeting_id, v.name, v.race_number, v.start_time, v.status, v.distance, v.track_condition,
	v.weather, v.observed_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::int[], $8::text[],
	$9::text[], $10::timestamptz[])
	AS v(race_id, meeting_id, name, race_number, start_time, status, distance, track_condition, weather, observed_at)
ON CONFLICT (race_id) DO UPDATE SET
	meeting_id      = EXCLUDED.meeting_id,
	name            = EXCLUDED.name,
	race_number     = EXCLUDED.race_number,
	start_time      = EXCLUDED.start_time,
	status          = CASE WHEN t.status IN ('final', 'abandoned') THEN t.status ELSE EXCLUDED.status END,
	distance        = COALESCE(EXCLUDED.distance, t.distance),
	track_condition = COALESCE(EXCLUDED.track_condition, t.track_condition),
	weather         = COALESCE(EXCLUDED.weather, t.weather),
	observed_at     = EXCLUDED.observed_at
WHERE (t.meeting_id, t.name, t.race_number, t.start_time, t.status, t.distance, t.track_condition, t.weather)
	IS DISTINCT FROM
	(EXCLUDED.meeting_id, EXCLUDED.name, EXCLUDED.race_number, EXCLUDED.start_time,
	 CASE WHEN t.status IN ('final', 'abandoned') THEN t.status ELSE EXCLUDED.status END,
	 COALESCE(EXCLUDED.distance, t.distance), COALESCE(EXCLUDED.track_condition, t.track_condition),
	 COALESCE(EXCLUDED.weather, t.weather))
  AND (t.observed_at IS NULL OR t.observed_at <= EXCLUDED.observed_at)
RETURNING (xmax = 0) AS inserted`

// Upsert writes meetings, then races, in one transaction. Every race's
// meeting must be among meetings or already stored (races.meeting_id is a
// foreign key). Rows carry the instant of their observation (ObservedAt),
// which decides, row by row, whether they may overwrite what a poll wrote.
//
// When the database refuses a row (a value it cannot store, a race of an
// unknown meeting), the whole write is done again meeting by meeting, each
// in a savepoint: the refused meetings are left out with all their races,
// reported in Counts.Rejected, and the rest is written. Only a failure that
// no row caused (a lost connection, a timeout) is returned as an error.
func Upsert(ctx context.Context, db DB, meetings []MeetingRow, races []RaceRow) (Counts, error) {
	var c Counts
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		c, err = upsert(ctx, tx, meetings, races)
		return err
	})
	if err == nil {
		return c, nil
	}
	if write.IsRetryable(err) || ctx.Err() != nil {
		return Counts{}, fmt.Errorf("baseline: upsert %d meetings, %d races: %w", len(meetings), len(races), err)
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		c, err = upsertEach(ctx, tx, meetings, races)
		return err
	})
	if err != nil {
		return Counts{}, fmt.Errorf("baseline: upsert %d meetings, %d races one by one: %w", len(meetings), len(races), err)
	}
	return c, nil
}

// upsertEach writes each meeting with its races in a savepoint of its own.
// Races of a meeting not in meetings (already stored) form a group of their
// own.
func upsertEach(ctx context.Context, tx pgx.Tx, meetings []MeetingRow, races []RaceRow) (Counts, error) {
	byMeeting := make(map[string][]RaceRow)
	for _, r := range races {
		byMeeting[r.MeetingID] = append(byMeeting[r.MeetingID], r)
	}
	type group struct {
		id       string
		meetings []MeetingRow
		races    []RaceRow
	}
	groups := make([]group, 0, len(meetings)+1)
	listed := make(map[string]bool, len(meetings))
	for _, m := range meetings {
		listed[m.MeetingID] = true
		groups = append(groups, group{m.MeetingID, []MeetingRow{m}, byMeeting[m.MeetingID]})
	}
	for _, r := range races {
		if !listed[r.MeetingID] {
			listed[r.MeetingID] = true
			groups = append(groups, group{r.MeetingID, nil, byMeeting[r.MeetingID]})
		}
	}
	var total Counts
	for _, g := range groups {
		var c Counts
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			var err error
			c, err = upsert(ctx, sp, g.meetings, g.races)
			return err
		})
		switch {
		case err == nil:
			total.MeetingsInserted += c.MeetingsInserted
			total.MeetingsUpdated += c.MeetingsUpdated
			total.RacesInserted += c.RacesInserted
			total.RacesUpdated += c.RacesUpdated
		case write.IsRetryable(err) || ctx.Err() != nil:
			return Counts{}, err
		default:
			total.MeetingsRejected += len(g.meetings)
			total.RacesRejected += len(g.races)
			total.Rejected = append(total.Rejected, Skip{MeetingID: g.id, Err: fmt.Errorf("database refused it: %w", err)})
		}
	}
	return total, nil
}

// upsert writes meetings, then races, in tx.
func upsert(ctx context.Context, tx pgx.Tx, meetings []MeetingRow, races []RaceRow) (Counts, error) {
	var c Counts
	var err error
	if c.MeetingsInserted, c.MeetingsUpdated, err = write.UpsertMeetings(ctx, tx, listed(meetings)); err != nil {
		return Counts{}, fmt.Errorf("meetings: %w", err)
	}
	if c.RacesInserted, c.RacesUpdated, err = upsertRaces(ctx, tx, races); err != nil {
		return Counts{}, err
	}
	return c, nil
}

// listed turns meeting rows into the write stage's meetings rows.
func listed(rows []MeetingRow) []write.ListedMeeting {
	out := make([]write.ListedMeeting, len(rows))
	for i, r := range rows {
		out[i] = write.ListedMeeting{
			Meeting: transform.Meeting{
				MeetingID: r.MeetingID, MeetingName: r.MeetingName, Country: r.Country, State: r.State,
				RaceType: r.RaceType, Category: r.Category, Date: r.Date.String(),
				TrackCondition: r.TrackCondition, ToteStatus: r.ToteStatus,
			},
			ObservedAt: r.ObservedAt,
		}
	}
	return out
}

func upsertRaces(ctx context.Context, tx pgx.Tx, rows []RaceRow) (inserted, updated int, err error) {
	if len(rows) == 0 {
		return 0, 0, nil
	}
	n := len(rows)
	ids, meetings, names, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	numbers, starts, distances := make([]int32, n), make([]time.Time, n), make([]*int32, n)
	conds, weathers, observed := make([]*string, n), make([]*string, n), make([]*time.Time, n)
	for i, r := range rows {
		if r.RaceNumber < 0 || r.RaceNumber > math.MaxInt32 || (r.Distance != nil && (*r.Distance < 0 || *r.Distance > math.MaxInt32)) {
			return 0, 0, fmt.Errorf("races: %w: race %s: race_number or distance out of range", ErrBadValue, r.RaceID)
		}
		ids[i], meetings[i], names[i], statuses[i] = r.RaceID, r.MeetingID, r.Name, r.Status.String()
		numbers[i], starts[i] = int32(r.RaceNumber), r.StartTime.UTC()
		if r.Distance != nil {
			d := int32(*r.Distance)
			distances[i] = &d
		}
		conds[i], weathers[i] = r.TrackCondition, r.Weather
		if !r.ObservedAt.IsZero() {
			observed[i] = &rows[i].ObservedAt
		}
	}
	res, err := tx.Query(ctx, upsertRacesSQL, ids, meetings, names, numbers, starts, statuses, distances, conds,
		weathers, observed)
	if err != nil {
		return 0, 0, fmt.Errorf("races: %w", err)
	}
	flags, err := pgx.CollectRows(res, pgx.RowTo[bool])
	if err != nil {
		return 0, 0, fmt.Errorf("races: %w", err)
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
