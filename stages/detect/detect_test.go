package detect_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// date is the simulated day: fixed, so that what is judged does not change
// from one day to the next.
const date = "2025-07-17"

// plungedDay is one meeting of the simulated day on the flow's cadence, with
// a plunge 3 minutes before the start of its third race.
type plungedDay struct {
	snaps   []transform.RaceSnapshot
	plunge  nztabsim.PlungeInfo
	memory  map[string]alerts.History // the day as the rules see it, in memory
	raceIDs []string
}

var dayOnce = sync.OnceValues(func() (plungedDay, error) {
	ctx := context.Background()
	cfg := simday.Config{Seed: 5, Date: date, Meetings: 1, Plan: simday.ScheduledTimes}
	plain, err := nztabsim.New(nztabsim.Config{Seed: cfg.Seed, Date: date, Meetings: 1})
	if err != nil {
		return plungedDay{}, err
	}
	var race string
	for _, r := range plain.Races() {
		if r.Category != "G" && (r.Country == "NZ" || r.Country == "AUS") && r.RaceNumber == 3 {
			race = r.ID
		}
	}
	cfg.Plunges = []nztabsim.Plunge{{RaceID: race, Before: 3 * time.Minute}}
	day, err := simday.Build(ctx, cfg)
	if err != nil {
		return plungedDay{}, err
	}
	d := plungedDay{plunge: day.Sim.Plunges()[0]}
	if d.snaps, err = day.Snapshots(); err != nil {
		return plungedDay{}, err
	}
	if d.memory, err = day.Histories(); err != nil {
		return plungedDay{}, err
	}
	for _, r := range day.Races {
		d.raceIDs = append(d.raceIDs, r.ID)
	}
	return d, nil
})

// newDB is a migrated database with the day's history partitions.
func newDB(t testing.TB) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	db.EnsureDays(t, date)
	return db
}

// judge runs detect.Poll in a transaction of its own and commits it.
func judge(t *testing.T, db *pgtest.DB, raceID string, at time.Time) detect.Result {
	t.Helper()
	var res detect.Result
	err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		var err error
		res, err = detect.Poll(context.Background(), tx, alerts.DefaultConfig(), raceID, at)
		return err
	})
	require.NoError(t, err, "judge %s at %s", raceID, at)
	return res
}

// live writes the day poll by poll, judging each as the flow does, and
// returns what each poll fired.
func live(t *testing.T, db *pgtest.DB, d plungedDay) []detect.Fired {
	t.Helper()
	var fired []detect.Fired
	for _, s := range d.snaps {
		_, err := write.WriteTx(context.Background(), db.Pool, write.Poll{Snapshot: s})
		require.NoError(t, err)
		res := judge(t, db, s.RaceID, s.ObservedAt)
		require.Equal(t, len(res.Fired), res.Inserted, "a poll judged once stores what it fires")
		fired = append(fired, res.Fired...)
	}
	return fired
}

func utc(as []alerts.Alert) []alerts.Alert {
	out := slices.Clone(as)
	for i := range out {
		out[i].FiredAt, out[i].ReferenceAt = out[i].FiredAt.UTC(), out[i].ReferenceAt.UTC()
	}
	return out
}

func TestPollsJudgedFromTheDatabaseFireWhatTheRulesFireInMemory(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := newDB(t)
	fired := live(t, db, d)

	// The database gives the rules the history the day has in memory: the
	// same alerts, in the order of the polls, for every race.
	byRace := map[string][]alerts.Alert{}
	for _, f := range fired {
		byRace[f.RaceID] = append(byRace[f.RaceID], f.Alert)
	}
	for _, id := range d.raceIDs {
		require.Equal(t, utc(alerts.Scan(alerts.DefaultConfig(), d.memory[id])), utc(byRace[id]), "race %s", id)
	}

	// Only the plunged race fires, at the first poll that sees the plunge,
	// on the plunged runner (and the pool).
	pl := d.plunge
	require.NotEmpty(t, fired)
	kinds := map[alerts.Kind]detect.Fired{}
	first := time.Time{}
	for _, f := range fired {
		require.Equal(t, pl.RaceID, f.RaceID, "an alert on a race without a staged move: %s", f.Summary)
		if first.IsZero() {
			first = f.FiredAt
		}
		if f.EntrantID == pl.EntrantID || f.Kind == alerts.KindPoolSurge {
			require.Equal(t, first, f.FiredAt, "the plunge's alerts come from one poll")
			kinds[f.Kind] = f
		}
	}
	require.False(t, first.Before(pl.At), "fired at %s, before the plunge at %s", first, pl.At)
	require.Less(t, first.Sub(pl.At), 15*time.Second, "the first poll after the plunge at %s fired at %s", pl.At, first)
	require.Len(t, kinds, 3, "steamer, late money and pool surge")
	steamer := kinds[alerts.KindSteamer]
	require.Equal(t, pl.Runner, steamer.RunnerNumber)
	require.NotEmpty(t, steamer.RunnerName)
	require.Contains(t, steamer.Summary, "#"+strconv.Itoa(pl.Runner)+" "+steamer.RunnerName+" steamer:")
	require.Equal(t, steamer.Alert.ID(), steamer.ID)

	// The table holds exactly what was fired, field for field.
	require.Equal(t, fired, readTable(t, db, fired))
}

func TestARedeliveredPollFiresTheSameAlertsAndStoresNothing(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := newDB(t)
	fired := live(t, db, d)
	require.NotEmpty(t, fired)
	before := pgtest.Checksum(t, db.Pool, "alerts")
	at := fired[0].FiredAt
	again := judge(t, db, fired[0].RaceID, at)
	require.Zero(t, again.Inserted)
	var want []detect.Fired
	for _, f := range fired {
		if f.FiredAt.Equal(at) {
			want = append(want, f)
		}
	}
	require.Equal(t, want, again.Fired, "published again, so at least once")
	require.Equal(t, before, pgtest.Checksum(t, db.Pool, "alerts"))
}

func TestJudgingTheStoredPollsAgainRebuildsTheAlertsTable(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := newDB(t)
	live(t, db, d)
	want := pgtest.Checksum(t, db.Pool, "alerts")

	// As replay does: the whole day is stored (later polls included), the
	// table emptied, every poll judged again in order.
	_, err = db.Pool.Exec(context.Background(), `DELETE FROM alerts`)
	require.NoError(t, err)
	for _, s := range d.snaps {
		judge(t, db, s.RaceID, s.ObservedAt)
	}
	require.Equal(t, want, pgtest.Checksum(t, db.Pool, "alerts"), "the same alerts, field for field")
}

func TestAPollObservedToTheNanosecondIsJudged(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := newDB(t)
	// The plunged race's polls, each observed 789 ns after a millisecond,
	// as a real clock observes them (the database keeps microseconds).
	var fired []detect.Fired
	for _, s := range d.snaps {
		if s.RaceID != d.plunge.RaceID {
			continue
		}
		s.MoneyFlow, s.Odds = slices.Clone(s.MoneyFlow), slices.Clone(s.Odds) // the day is shared
		for i := range s.MoneyFlow {
			s.MoneyFlow[i].PollingTimestamp = s.MoneyFlow[i].PollingTimestamp.Add(789)
			s.MoneyFlow[i].EventTimestamp = s.MoneyFlow[i].EventTimestamp.Add(789)
		}
		for i := range s.Odds {
			s.Odds[i].EventTimestamp = s.Odds[i].EventTimestamp.Add(789)
		}
		s.ObservedAt = s.ObservedAt.Add(789)
		_, err := write.WriteTx(context.Background(), db.Pool, write.Poll{Snapshot: s})
		require.NoError(t, err)
		fired = append(fired, judge(t, db, s.RaceID, s.ObservedAt).Fired...)
	}
	kinds := map[alerts.Kind]bool{}
	for _, f := range fired {
		if f.EntrantID == d.plunge.EntrantID || f.Kind == alerts.KindPoolSurge {
			kinds[f.Kind] = true
		}
	}
	require.Len(t, kinds, 3, "steamer, late money and pool surge")
}

func TestAPollWithoutMoneyIsNotJudged(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	d, err := nzday.Parse(date)
	require.NoError(t, err)
	res := judge(t, db, "no-such-race", d.Start().Add(12*time.Hour))
	require.Empty(t, res.Fired)
}

// readTable reads the stored alerts back in the order of fired, as Fired
// values with the names of fired (the table holds no names).
func readTable(t *testing.T, db *pgtest.DB, fired []detect.Fired) []detect.Fired {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT race_id, entrant_id, kind, time_interval, alert_id::text, fired_at, time_to_start, reference_at,
		       coalesce(source, ''), before_odds::float8, after_odds::float8, before_cents, after_cents, window_cents,
		       before_pct::float8, after_pct::float8, change_pct::float8, ratio::float8
		FROM alerts`)
	require.NoError(t, err)
	stored := map[string]detect.Fired{}
	var f detect.Fired
	_, err = pgx.ForEachRow(rows, []any{&f.RaceID, &f.EntrantID, &f.Kind, &f.Bucket, &f.ID, &f.FiredAt, &f.MinutesToStart,
		&f.ReferenceAt, &f.Source, &f.BeforeOdds, &f.AfterOdds, &f.BeforeCents, &f.AfterCents, &f.WindowCents,
		&f.BeforePct, &f.AfterPct, &f.ChangePct, &f.Ratio}, func() error {
		f.FiredAt, f.ReferenceAt = f.FiredAt.UTC(), f.ReferenceAt.UTC()
		stored[f.ID] = f
		f = detect.Fired{}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, stored, len(fired))
	out := make([]detect.Fired, len(fired))
	for i, want := range fired {
		got, ok := stored[want.ID]
		require.True(t, ok, "alert %s stored", want.Summary)
		got.Meeting, got.RaceNumber, got.RaceName = want.Meeting, want.RaceNumber, want.RaceName
		got.RunnerNumber, got.RunnerName, got.Summary = want.RunnerNumber, want.RunnerName, want.Summary
		out[i] = got
	}
	return out
}

func TestJudgedFromTheSnapshotAgreesWithTheDatabase(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := newDB(t)
	live(t, db, d)
	cfg := alerts.DefaultConfig()
	window := max(cfg.PriceMinutes, cfg.LateMinutes, cfg.SurgeMinutes)
	counts := map[bool]int{}
	for _, s := range d.snaps {
		at := s.ObservedAt.UTC().Truncate(time.Microsecond)
		var judged bool
		var start *time.Time
		require.NoError(t, db.Pool.QueryRow(context.Background(), detect.Reads()["plan"],
			s.RaceID, at, window, at.Add(-alerts.Span(cfg))).Scan(&judged, &start))
		require.Equal(t, judged, detect.Judged(cfg, s), "race %s poll at %s (status %s)", s.RaceID, at, s.Race.Status)
		counts[judged]++
	}
	require.NotZero(t, counts[true], "some polls of the day are judged")
	require.NotZero(t, counts[false], "some are not")
}
