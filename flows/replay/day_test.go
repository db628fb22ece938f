package replay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// dayClock is the recorded day's clock: the API, the client's observation
// instants, the flow's poll ids and the baseline all read it, and the test
// steps it through the recorded instants.
type dayClock struct{ *nztabsim.ManualClock }

// After is never waited on: the test runs each baseline itself (RunOnce).
func (dayClock) After(time.Duration) <-chan time.Time { return nil }

// quietLogger discards everything below warnings.
func quietLogger() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.WarnLevel)
	return log
}

var (
	daysMu sync.Mutex
	days   = map[string]*simday.Day{} // by fmt of the simday.Config (which holds a func and a slice)
)

// recordedDay is the default simulated day (32 races, ~1,095 polls, 20
// meetings lists), recorded once per test binary.
func recordedDay(tb testing.TB) *simday.Day {
	tb.Helper()
	return dayOf(tb, simday.Config{})
}

// smallDay is a simulated day of 2 meetings of 3 races (~200 polls).
func smallDay(tb testing.TB) *simday.Day {
	tb.Helper()
	return dayOf(tb, simday.Config{Meetings: 2, RacesPerMeeting: 3})
}

func dayOf(tb testing.TB, cfg simday.Config) *simday.Day {
	tb.Helper()
	daysMu.Lock()
	defer daysMu.Unlock()
	key := fmt.Sprintf("%+v", cfg)
	if d, ok := days[key]; ok {
		return d
	}
	d, err := simday.Build(context.Background(), cfg)
	require.NoError(tb, err)
	days[key] = d
	return d
}

// processDay runs the recorded day through the real flow on PostgreSQL, as
// `raceflow run` would have: an API serving the recorded bodies, the engine
// polling each race at its recorded instants (one poll at a time, in
// observation order), and the baseline runner fetching, storing and
// applying each meetings list at its instant.
func processDay(tb testing.TB, pool *pgxpool.Pool, cfg flows.Config, day *simday.Day) {
	tb.Helper()
	ctx := context.Background()
	steps := day.Steps()
	clock := dayClock{nztabsim.NewManualClock(steps[0].At)}
	srv := httptest.NewServer(day.API(clock.Now))
	defer srv.Close()
	// Observation instants carry nanoseconds beyond what PostgreSQL keeps,
	// as the wall clock's do.
	observed := func() time.Time { return clock.Now().Add(789 * time.Nanosecond) }
	client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com",
		PartnerName: "test", PartnerID: "test", Now: observed, MaxRetries: -1})
	require.NoError(tb, err)
	log := quietLogger()
	e, err := flows.New(cfg, flows.Deps{Pool: pool, Fetcher: client, Logger: log, Now: clock.Now})
	require.NoError(tb, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("flow stopped: %v", err)
		}
	}()
	select {
	case <-e.Running():
	case err := <-done:
		tb.Fatalf("flow stopped before running: %v", err)
	}
	runner := &schedule.BaselineRunner{
		Fetch: client.FetchMeetings,
		Upsert: func(ctx context.Context, m []baseline.MeetingRow, r []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Upsert(ctx, pool, m, r)
		},
		Store:  func(ctx context.Context, resp baseline.Response) error { return baseline.Store(ctx, pool, resp) },
		Clock:  clock,
		Filter: baseline.DefaultFilter(),
		Log:    log,
	}
	for _, s := range steps {
		clock.Set(s.At)
		if s.Baseline != nil {
			run, err := runner.RunOnce(ctx)
			require.NoError(tb, err)
			require.NoError(tb, run.Err, "baseline at %s", s.At)
			require.NoError(tb, run.StoreErr, "baseline at %s", s.At)
			continue
		}
		res, err := e.ProcessRace(ctx, s.Fetch.RaceID)
		require.NoError(tb, err, "poll of %s at %s", s.Fetch.RaceID, s.At)
		require.Equal(tb, handlers.StatusSuccess, res.Status, "poll of %s at %s: %+v", s.Fetch.RaceID, s.At, res.Error)
	}
}

// dataTables are the tables the flow derives from the stored fetches and
// meetings lists, the ledger (race_polls) aside.
const dataTables = `meetings, races, entrants, race_pools, race_results, money_flow_history, odds_history`

// bookkeeping are the columns that say when a row was written, not what it
// holds.
var bookkeeping = pgtest.Bookkeeping()

func domainRows(tb testing.TB, pool *pgxpool.Pool) map[string][]string {
	tb.Helper()
	out := map[string][]string{}
	for _, table := range pgtest.DomainTables() {
		out[table] = pgtest.Rows(tb, pool, table, bookkeeping...)
	}
	return out
}

func count(tb testing.TB, pool *pgxpool.Pool, query string, args ...any) int {
	tb.Helper()
	var n int
	require.NoError(tb, pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// TestReplayRebuildsAProcessedDayExactlyWhateverWasEmptied processes a
// simulated day through the real flow, then replays it from what the flow
// stored, after emptying the data tables, after emptying everything, after
// emptying nothing, and as a rebuild of half the races after damaging
// them: every table must come back as the live flow left it, field for
// field (bookkeeping timestamps aside).
func TestReplayRebuildsAProcessedDayExactlyWhateverWasEmptied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	day := recordedDay(t)
	db := pgtest.New(t)
	cfg := flows.DefaultConfig()
	processDay(t, db.Pool, cfg, day)

	polls, lists := len(day.Fetches), len(day.Baselines)
	require.GreaterOrEqual(t, len(day.Races), 30)
	require.GreaterOrEqual(t, polls, 1000)
	require.Equal(t, polls, count(t, db.Pool, `SELECT count(*) FROM race_polls`), "every poll was written")
	for what, query := range map[string]string{
		"scratchings":                               `SELECT count(*) FROM entrants WHERE is_scratched AND NOT is_late_scratched`,
		"late scratchings":                          `SELECT count(*) FROM entrants WHERE is_late_scratched`,
		"results and dividends":                     `SELECT count(*) FROM race_results WHERE results_data IS NOT NULL AND dividends_data IS NOT NULL`,
		"tote statuses (only the lists carry them)": `SELECT count(*) FROM meetings WHERE tote_status IS NOT NULL`,
	} {
		require.Positive(t, count(t, db.Pool, query), "the day has %s", what)
	}
	live := domainRows(t, db.Pool)

	var half []string
	halfPolls := 0
	for i, r := range day.Races {
		if i%2 == 0 {
			half = append(half, r.ID)
		}
	}
	for _, f := range day.Fetches {
		for _, id := range half {
			if f.RaceID == id {
				halfPolls++
			}
		}
	}
	exec := func(t *testing.T, sql string, args ...any) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	cases := []struct {
		name    string
		prepare func(t *testing.T)
		config  func(c *replay.Config)
		check   func(t *testing.T, sum replay.Summary)
	}{
		{
			name:    "data tables emptied, ledger kept",
			prepare: func(t *testing.T) { exec(t, `TRUNCATE `+dataTables+` CASCADE`) },
			check: func(t *testing.T, sum replay.Summary) {
				require.Equal(t, polls, sum.Polls)
				require.Zero(t, sum.Rows.Polls, "the ledger was kept")
				require.Equal(t, lists, sum.Lists.Applied)
			},
		},
		{
			name:    "everything emptied",
			prepare: func(t *testing.T) { exec(t, `TRUNCATE `+dataTables+`, race_polls CASCADE`) },
			check: func(t *testing.T, sum replay.Summary) {
				require.Equal(t, polls, sum.Polls)
				require.Equal(t, polls, sum.Rows.Polls)
				require.Equal(t, lists, sum.Lists.Applied)
			},
		},
		{
			name:    "nothing emptied",
			prepare: func(*testing.T) {},
			check: func(t *testing.T, sum replay.Summary) {
				require.Equal(t, polls, sum.Polls)
				require.Equal(t, replay.Lists{Stored: lists, Applied: lists}, sum.Lists, "no list changes a row")
				sum.Rows.Durations = nil
				require.Zero(t, sum.Rows, "no poll changes a row")
			},
		},
		{
			// Damage a normal replay cannot repair (rows that look newer
			// than any poll, history and ledger rows gone or altered); the
			// rebuild of those races must, and leave the others alone.
			name: "rebuild of half the races",
			prepare: func(t *testing.T) {
				exec(t, `UPDATE races SET name = 'stale', observed_at = observed_at + interval '1 day' WHERE race_id = ANY($1)`, half)
				exec(t, `UPDATE entrants SET fixed_win_odds = 999, observed_at = observed_at + interval '1 day' WHERE race_id = ANY($1)`, half)
				exec(t, `DELETE FROM money_flow_history WHERE race_id = ANY($1) AND incremental_win_amount > 0`, half)
				exec(t, `DELETE FROM odds_history WHERE race_id = ANY($1) AND type = 'fixed_win'`, half)
				exec(t, `UPDATE race_polls SET quality_score = -1 WHERE race_id = ANY($1)`, half)
			},
			config: func(c *replay.Config) { c.Rebuild, c.Filter.RaceIDs = true, half },
			check: func(t *testing.T, sum replay.Summary) {
				require.True(t, sum.Rebuild)
				require.Equal(t, len(half), sum.Races)
				require.Equal(t, halfPolls, sum.Polls)
				require.Equal(t, halfPolls, sum.Rows.Polls, "the races' ledger rows were re-derived")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare(t)
			rc := replay.DefaultConfig()
			if tc.config != nil {
				tc.config(&rc)
			}
			r, err := replay.New(rc, replay.Deps{Pool: db.Pool, Driver: openDriver(t, cfg, db.Pool), Logger: quietLogger()})
			require.NoError(t, err)
			sum, err := r.Run(ctx)
			require.NoError(t, err)
			require.Empty(t, sum.Failures)
			require.True(t, sum.Complete)
			tc.check(t, sum)
			got := domainRows(t, db.Pool)
			for _, table := range pgtest.DomainTables() {
				if d := pgtest.DiffRows(live[table], got[table], 3); d != "" {
					t.Errorf("%s: %s", table, d)
				}
			}
		})
	}
}

func openDriver(tb testing.TB, cfg flows.Config, pool *pgxpool.Pool) driver.Driver {
	tb.Helper()
	drv, err := flows.OpenDriver(cfg, pool, quietLogger())
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, drv.Close()) })
	return drv
}
