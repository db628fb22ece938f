package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

func nz(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, nzday.Location())
	require.NoError(t, err)
	return v
}

func oneMeeting(day string) nztab.MeetingsList {
	return nztab.MeetingsList{Meetings: []nztab.Meeting{{
		Meeting: "m-" + day, Name: "Riccarton", Date: day + "T00:00:00Z", Country: "NZ", Category: "T",
		Races: []nztab.MeetingRace{{ID: "r-" + day, RaceNumber: 1, Name: "R1", StartTime: day + "T02:00:00Z", Status: "Open"}},
	}}}
}

// baselineHarness runs a BaselineRunner on a fake clock and reports each run.
type baselineHarness struct {
	clk  *schedule.FakeClock
	runs chan schedule.BaselineRun
	r    *schedule.BaselineRunner
	ctx  context.Context
	done chan error
}

func startBaseline(t *testing.T, at time.Time, r *schedule.BaselineRunner) *baselineHarness {
	t.Helper()
	h := &baselineHarness{clk: schedule.NewFakeClock(at), runs: make(chan schedule.BaselineRun, 16), r: r, done: make(chan error, 1)}
	r.Clock = h.clk
	r.OnRun = func(run schedule.BaselineRun) { h.runs <- run }
	if r.Fetch == nil {
		r.Fetch = func(_ context.Context, day string) (nztab.MeetingsList, error) { return oneMeeting(day), nil }
	}
	if r.Upsert == nil {
		r.Upsert = func(context.Context, []baseline.MeetingRow, []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Counts{}, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, recv(t, h.done))
	})
	return h
}

// advanceTo waits until the runner has armed its timer, then moves the
// clock to at.
func (h *baselineHarness) advanceTo(t *testing.T, at time.Time) {
	t.Helper()
	require.NoError(t, h.clk.WaitForWaiters(h.ctx, 1))
	require.Empty(t, h.runs, "no run before its slot")
	h.clk.Set(at)
}

func TestBaselineRunsAtStartEveryRefreshAndAtSixNZ(t *testing.T) {
	t.Parallel()
	h := startBaseline(t, nz(t, "2025-07-17 04:45"), &schedule.BaselineRunner{})

	run := recv(t, h.runs)
	require.Equal(t, []any{schedule.BaselineStartup, nz(t, "2025-07-17 04:45"), "2025-07-17", 1, 1},
		[]any{run.Kind, run.At, run.Day, run.Meetings, run.Races})
	<-h.r.FirstRun() // closed by now

	for _, want := range []struct {
		at   string
		kind string
	}{
		{"2025-07-17 05:15", schedule.BaselineRefresh},
		{"2025-07-17 05:45", schedule.BaselineRefresh},
		{"2025-07-17 06:00", schedule.BaselineDaily}, // before the 06:15 refresh
		{"2025-07-17 06:30", schedule.BaselineRefresh},
	} {
		h.advanceTo(t, nz(t, want.at).Add(-time.Second))
		h.advanceTo(t, nz(t, want.at))
		run := recv(t, h.runs)
		require.Equal(t, []any{want.kind, nz(t, want.at)}, []any{run.Kind, run.At}, want.at)
	}
}

func TestBaselineDailySlotIsNZWallClockAcrossDST(t *testing.T) {
	t.Parallel()
	// NZ daylight saving ends at 03:00 on 2026-04-05, a 25-hour day: 06:00
	// that day is 18:00 UTC, 25 hours after the previous day's 06:00 NZDT.
	// Midnight + 6 h would be 05:00 NZST.
	h := startBaseline(t, nz(t, "2026-04-04 07:00"), &schedule.BaselineRunner{Refresh: 72 * time.Hour})
	require.Equal(t, schedule.BaselineStartup, recv(t, h.runs).Kind)

	want := time.Date(2026, 4, 4, 18, 0, 0, 0, time.UTC)
	h.advanceTo(t, want.Add(-time.Minute))
	h.advanceTo(t, want)
	run := recv(t, h.runs)
	require.Equal(t, schedule.BaselineDaily, run.Kind)
	require.True(t, run.At.Equal(want), run.At)
	require.Equal(t, "2026-04-05", run.Day)
	require.Equal(t, "06:00 NZST", run.At.In(nzday.Location()).Format("15:04 MST"))
}

func TestBaselineFailuresAreLoggedAndRetriedAtTheNextSlot(t *testing.T) {
	t.Parallel()
	fetchErr := errors.New("api down")
	upsertErr := errors.New("db down")
	calls := 0
	r := &schedule.BaselineRunner{
		Fetch: func(_ context.Context, day string) (nztab.MeetingsList, error) {
			calls++
			if calls == 1 {
				return nztab.MeetingsList{}, fetchErr
			}
			return oneMeeting(day), nil
		},
		Upsert: func(context.Context, []baseline.MeetingRow, []baseline.RaceRow) (baseline.Counts, error) {
			if calls == 2 {
				return baseline.Counts{}, upsertErr
			}
			return baseline.Counts{MeetingsInserted: 1, RacesInserted: 1}, nil
		},
	}
	start := nz(t, "2025-07-17 10:00")
	h := startBaseline(t, start, r)

	run := recv(t, h.runs)
	require.ErrorIs(t, run.Err, fetchErr)
	h.advanceTo(t, start.Add(30*time.Minute))
	run = recv(t, h.runs)
	require.ErrorIs(t, run.Err, upsertErr)
	h.advanceTo(t, start.Add(time.Hour))
	run = recv(t, h.runs)
	require.NoError(t, run.Err)
	require.Equal(t, baseline.Counts{MeetingsInserted: 1, RacesInserted: 1}, run.Counts)
}

func TestBaselineCutShortByShutdownIsNoFailure(t *testing.T) {
	t.Parallel()
	log, hook := test.NewNullLogger()
	upserting := make(chan struct{})
	r := &schedule.BaselineRunner{
		Log:   log,
		Fetch: func(_ context.Context, day string) (nztab.MeetingsList, error) { return oneMeeting(day), nil },
		Upsert: func(ctx context.Context, _ []baseline.MeetingRow, _ []baseline.RaceRow) (baseline.Counts, error) {
			close(upserting)
			<-ctx.Done()
			return baseline.Counts{}, fmt.Errorf("baseline: upsert: %w", ctx.Err())
		},
	}
	r.Clock = schedule.NewFakeClock(nz(t, "2025-07-17 10:00"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-upserting:
	case err := <-done:
		t.Fatalf("the runner stopped before its startup run: %v", err)
	}
	cancel() // shutdown while the startup run writes
	require.NoError(t, recv(t, done))
	for _, e := range hook.AllEntries() {
		require.Greater(t, e.Level, logrus.ErrorLevel, "shutdown is no failure, yet logged: %s %v", e.Message, e.Data)
	}
	require.Equal(t, "baseline interrupted by shutdown", hook.LastEntry().Message)
}

func TestBaselineFetchesTheNewNZDayAfterMidnight(t *testing.T) {
	t.Parallel()
	start := nz(t, "2025-07-17 23:50")
	h := startBaseline(t, start, &schedule.BaselineRunner{})
	require.Equal(t, "2025-07-17", recv(t, h.runs).Day)
	h.advanceTo(t, start.Add(30*time.Minute))
	require.Equal(t, "2025-07-18", recv(t, h.runs).Day)
}

func TestBaselineRunsAreSingleFlight(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	r := &schedule.BaselineRunner{
		Clock: schedule.NewFakeClock(nz(t, "2025-07-17 10:00")),
		Fetch: func(_ context.Context, day string) (nztab.MeetingsList, error) {
			entered <- struct{}{}
			<-release
			return oneMeeting(day), nil
		},
		Upsert: func(context.Context, []baseline.MeetingRow, []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Counts{}, nil
		},
	}
	first := make(chan error, 1)
	go func() {
		_, err := r.RunOnce(context.Background())
		first <- err
	}()
	recv(t, entered)
	_, err := r.RunOnce(context.Background())
	require.ErrorIs(t, err, schedule.ErrBaselineBusy)
	close(release)
	require.NoError(t, recv(t, first))
}

func TestBaselineRunnerValidate(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, string) (nztab.MeetingsList, error) { return nztab.MeetingsList{}, nil }
	up := func(context.Context, []baseline.MeetingRow, []baseline.RaceRow) (baseline.Counts, error) {
		return baseline.Counts{}, nil
	}
	tests := []struct {
		name    string
		r       *schedule.BaselineRunner
		wantErr string
	}{
		{"defaults", &schedule.BaselineRunner{Fetch: ok, Upsert: up}, ""},
		{"no fetch", &schedule.BaselineRunner{Upsert: up}, "Fetch"},
		{"daily slot past midnight", &schedule.BaselineRunner{Fetch: ok, Upsert: up, DailyAt: 25 * time.Hour}, "DailyAt"},
		{"bad filter", &schedule.BaselineRunner{Fetch: ok, Upsert: up, Filter: baseline.Filter{Categories: []string{"Q"}}}, "category"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.r.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			require.ErrorContains(t, tc.r.Run(context.Background()), tc.wantErr, "Run refuses to start")
		})
	}
}

func TestBaselineRunnerWritesTheRealDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	r := &schedule.BaselineRunner{
		Clock: schedule.NewFakeClock(nz(t, "2025-07-17 06:00")),
		Fetch: func(_ context.Context, day string) (nztab.MeetingsList, error) { return oneMeeting(day), nil },
		Upsert: func(ctx context.Context, ms []baseline.MeetingRow, rs []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Upsert(ctx, db.Pool, ms, rs)
		},
	}
	run, err := r.RunOnce(context.Background())
	require.NoError(t, err)
	require.NoError(t, run.Err)
	require.Equal(t, baseline.Counts{MeetingsInserted: 1, RacesInserted: 1}, run.Counts)
	run, err = r.RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, baseline.Counts{}, run.Counts, "a refresh of an unchanged day writes nothing")
}

func TestBaselineRunnerStoresEachListAndABadMeetingCostsOnlyItself(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	at := nz(t, "2025-07-17 06:00")
	// The raw page as the API sent it: a NUL in one meeting's name (repaired
	// by the decoder: the meeting is written), a race number no database
	// column holds in another (that meeting is refused on its own).
	page := []byte(`{"header":{"title":"Race Meetings"},"data":{"meetings":[
		{"meeting":"good","name":"Riccarton","date":"2025-07-17T00:00:00Z","country":"NZ","category":"T","tote_status":"Open",
		 "races":[{"id":"r-good","race_number":1,"name":"R1","start_time":"2025-07-17T02:00:00Z","status":"Open"}]},
		{"meeting":"nul","name":"Te\u0000Rapa","date":"2025-07-17T00:00:00Z","country":"NZ","category":"T",
		 "races":[{"id":"r-nul","race_number":1,"name":"R1","start_time":"2025-07-17T02:30:00Z","status":"Open"}]},
		{"meeting":"bad","name":"Hastings","date":"2025-07-17T00:00:00Z","country":"NZ","category":"T",
		 "races":[{"id":"r-bad","race_number":1099511627776,"name":"R1","start_time":"2025-07-17T03:00:00Z","status":"Open"}]}]}}`)
	r := &schedule.BaselineRunner{
		Clock: schedule.NewFakeClock(at),
		Fetch: func(context.Context, string) (nztab.MeetingsList, error) { return nztab.DecodeMeetings(page) },
		Upsert: func(ctx context.Context, ms []baseline.MeetingRow, rs []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Upsert(ctx, db.Pool, ms, rs)
		},
		Store: func(ctx context.Context, resp baseline.Response) error { return baseline.Store(ctx, db.Pool, resp) },
	}
	run, err := r.RunOnce(ctx)
	require.NoError(t, err)
	require.NoError(t, run.Err)
	require.NoError(t, run.StoreErr)
	require.True(t, run.ObservedAt.Equal(at))
	require.Len(t, run.Invalid, 1, "the meeting with an impossible race is refused")
	require.Empty(t, run.Skipped)
	require.Equal(t, baseline.Counts{MeetingsInserted: 2, RacesInserted: 2}, run.Counts, "the others are written")
	var name string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT meeting_name FROM meetings WHERE meeting_id = 'nul'`).Scan(&name))
	require.Equal(t, "Te\uFFFDRapa", name, "the NUL replaced")
	candidates, err := schedule.NewPGRaces(db.Pool, schedule.DefaultConfig()).Candidates(ctx, at)
	require.NoError(t, err)
	require.Len(t, candidates, 2)
	require.Equal(t, "r-good", candidates[0].ID, "and their races are scheduled")
	require.Equal(t, "r-nul", candidates[1].ID)

	stored, err := baseline.Load(ctx, db.Pool, at)
	require.NoError(t, err, "the list is stored as fetched")
	require.Equal(t, [][]byte{page}, stored.Pages)

	// Applying the stored list to an emptied database writes what the run did.
	live := pgtest.Checksums(t, db.Pool, "created_at", "updated_at")
	_, err = db.Pool.Exec(ctx, `TRUNCATE meetings CASCADE`)
	require.NoError(t, err)
	applied, err := baseline.Apply(ctx, db.Pool, stored, baseline.Filter{})
	require.NoError(t, err)
	require.Equal(t, run.Counts, applied.Counts)
	require.Equal(t, live, pgtest.Checksums(t, db.Pool, "created_at", "updated_at"))
}
