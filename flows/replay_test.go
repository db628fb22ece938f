package flows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/write"
)

// replayHarness is a flow on a fresh database against a simulator whose
// clock moves only when told, so consecutive polls see the market move.
type replayHarness struct {
	db     *pgtest.DB
	sim    *nztabsim.Sim
	clock  *nztabsim.ManualClock
	client *nztab.Client
	log    *logrus.Logger
	hook   *test.Hook
	races  []nztabsim.RaceInfo
	cfg    flows.Config // the live flow's
	tb     testing.TB
}

func newReplayHarness(tb testing.TB) *replayHarness {
	tb.Helper()
	return newReplayHarnessOn(tb, config.BackendPostgres)
}

// newReplayHarnessOn is a replay harness whose live flow runs on backend.
func newReplayHarnessOn(tb testing.TB, backend string) *replayHarness {
	tb.Helper()
	cfg := flows.DefaultConfig()
	cfg.Backend = backend
	if backend == config.BackendNATS {
		cfg.NATS.URL = natstest.URL(tb)
		cfg.Namespace = natstest.Namespace(tb, cfg.NATS.URL)
	}
	db := pgtest.New(tb)
	today := nzday.Of(time.Now())
	clock := nztabsim.NewManualClock(today.Start().Add(11 * time.Hour))
	sim, err := nztabsim.New(nztabsim.Config{Seed: 11, Date: today.String(), Clock: clock})
	require.NoError(tb, err)
	srv := httptest.NewServer(sim)
	tb.Cleanup(srv.Close)
	client, err := nztab.NewClient(nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com", PartnerName: "test", PartnerID: "test",
		Timeout: 5 * time.Second,
		// Observation instants in simulated time: each poll of a race is a
		// distinct instant, set by the test. The nanoseconds are beyond what
		// PostgreSQL stores, as the wall clock's are.
		Now: func() time.Time { return clock.Now().Add(789 * time.Nanosecond) },
	})
	require.NoError(tb, err)
	log, hook := test.NewNullLogger()
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	log.SetLevel(logrus.DebugLevel)
	races := sim.Races()
	sort.Slice(races, func(i, j int) bool { return races[i].StartTime.Before(races[j].StartTime) })
	return &replayHarness{db: db, sim: sim, clock: clock, client: client, log: log, hook: hook, races: races, cfg: cfg, tb: tb}
}

// pick returns the first perMeeting races of the first meetings NZ/AUS
// horse meetings, so several races share a meeting.
func (h *replayHarness) pick(tb testing.TB, meetings, perMeeting int) []nztabsim.RaceInfo {
	tb.Helper()
	byMeeting := map[string][]nztabsim.RaceInfo{}
	var order []string
	for _, r := range h.races {
		if (r.Country != "NZ" && r.Country != "AUS") || (r.Category != "T" && r.Category != "H") {
			continue
		}
		if _, ok := byMeeting[r.MeetingID]; !ok {
			order = append(order, r.MeetingID)
		}
		byMeeting[r.MeetingID] = append(byMeeting[r.MeetingID], r)
	}
	require.GreaterOrEqual(tb, len(order), meetings)
	var out []nztabsim.RaceInfo
	for _, m := range order[:meetings] {
		require.GreaterOrEqual(tb, len(byMeeting[m]), perMeeting)
		out = append(out, byMeeting[m][:perMeeting]...)
	}
	return out
}

func raceIDsOf(races []nztabsim.RaceInfo) []string {
	out := make([]string, len(races))
	for i, r := range races {
		out[i] = r.ID
	}
	return out
}

func (h *replayHarness) start(tb testing.TB) (*flows.Engine, func()) {
	tb.Helper()
	e, err := flows.New(h.cfg, flows.Deps{Pool: h.db.Pool, Fetcher: h.client, Logger: h.log})
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Running():
	case err := <-done:
		tb.Fatalf("flow stopped before running: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("flow stopped: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return e, stop
}

// poll runs rounds of live polls of ids, step of simulated time apart,
// starting at from; every poll must succeed.
func (h *replayHarness) poll(t *testing.T, e *flows.Engine, ids []string, from time.Time, rounds int, step time.Duration) {
	t.Helper()
	require.NoError(t, h.pollErr(e, ids, from, rounds, step))
}

// pollErr is poll for goroutines other than the test's.
func (h *replayHarness) pollErr(e *flows.Engine, ids []string, from time.Time, rounds int, step time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h.clock.Set(from)
	for round := 0; round < rounds; round++ {
		results, err := e.ProcessRaces(ctx, ids, len(ids))
		if err != nil {
			return err
		}
		for _, r := range results {
			if r.Status != handlers.StatusSuccess {
				return fmt.Errorf("race %s: %s", r.RaceID, r.Status)
			}
		}
		h.clock.Advance(step)
	}
	return nil
}

func (h *replayHarness) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, h.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (h *replayHarness) truncate(t *testing.T) {
	t.Helper()
	_, err := h.db.Pool.Exec(context.Background(), `TRUNCATE meetings, races, entrants, race_pools, race_results,
		race_polls, money_flow_history, odds_history CASCADE`)
	require.NoError(t, err)
	for _, table := range pgtest.DomainTables() {
		require.Zero(t, h.count(t, `SELECT count(*) FROM `+table), table)
	}
}

// replayConfig replays the live flow's stored topic.
func (h *replayHarness) replayConfig() replay.Config {
	return replay.DefaultConfig()
}

func (h *replayHarness) replay(ctx context.Context, cfg replay.Config, progress func(replay.Progress)) (replay.Summary, error) {
	drv := openDriver(h.tb, h.cfg, h.db.Pool)
	r, err := replay.New(cfg, replay.Deps{Pool: h.db.Pool, Driver: drv, Logger: h.log, Progress: progress})
	if err != nil {
		return replay.Summary{}, err
	}
	return r.Run(ctx)
}

// liveDay polls 2 meetings × 3 races 5 times, 5 simulated minutes apart,
// from 10 minutes before the first start: the first races close, jump and
// get results while the others trade.
func (h *replayHarness) liveDay(t *testing.T) (*flows.Engine, func(), []nztabsim.RaceInfo) {
	t.Helper()
	races := h.pick(t, 2, 3)
	e, stop := h.start(t)
	h.poll(t, e, raceIDsOf(races), races[0].StartTime.Add(-10*time.Minute), 5, 5*time.Minute)
	require.Equal(t, 30, h.count(t, `SELECT count(*) FROM race_polls`))
	return e, stop, races
}

func storedPolls(t *testing.T, h *replayHarness) int {
	t.Helper()
	if h.cfg.Backend == config.BackendNATS {
		return natstest.StreamMsgs(t, h.cfg.NATS.URL, "raceflow_"+h.cfg.Namespace+"_fetched_")
	}
	n := 0
	for s := 0; s < flows.DefaultConfig().Shards; s++ {
		n += h.count(t, fmt.Sprintf(`SELECT count(*) FROM "watermill_race.fetched.%d"`, s))
	}
	return n
}

func TestReplayIntoTheSameDatabaseChangesNoRow(t *testing.T) {
	t.Parallel()
	onEach(t, durableBackends, testReplayIntoTheSameDatabase)
}

func testReplayIntoTheSameDatabase(t *testing.T, backend string) {
	h := newReplayHarnessOn(t, backend)
	_, stop, _ := h.liveDay(t)
	stop()
	require.Positive(t, h.count(t, `SELECT count(*) FROM race_results`), "the day includes results")
	require.Positive(t, h.count(t, `SELECT count(DISTINCT status) FROM race_polls`)-1, "the day includes status changes")
	before := pgtest.Checksums(t, h.db.Pool)

	require.Equal(t, 30, storedPolls(t, h), "every poll is stored")
	sum, err := h.replay(context.Background(), h.replayConfig(), nil)
	require.NoError(t, err)
	require.Equal(t, 30, sum.Stored)
	require.Equal(t, 30, sum.Polls)
	require.Empty(t, sum.Failures)
	require.True(t, sum.Complete)
	require.Zero(t, sum.Rows.Meetings+sum.Rows.Races+sum.Rows.Entrants+sum.Rows.RacePools+sum.Rows.MoneyFlow+
		sum.Rows.MoneyFlowCorrected+sum.Rows.Odds+sum.Rows.OddsDeleted+sum.Rows.Results+sum.Rows.Polls,
		"nothing to change: %+v", sum.Rows)
	require.Equal(t, before, pgtest.Checksums(t, h.db.Pool), "every row of every domain table is unchanged")
}

func TestReplayAfterTruncateReproducesTheLiveStateIncrementsIncluded(t *testing.T) {
	t.Parallel()
	onEach(t, durableBackends, testReplayAfterTruncate)
}

func testReplayAfterTruncate(t *testing.T, backend string) {
	h := newReplayHarnessOn(t, backend)
	_, stop, _ := h.liveDay(t)
	stop()
	require.Positive(t, h.count(t, `SELECT count(*) FROM money_flow_history WHERE incremental_win_amount <> 0`),
		"the day has increments to reproduce")
	exclude := pgtest.Bookkeeping()
	live := pgtest.Checksums(t, h.db.Pool, exclude...)
	h.truncate(t)

	sum, err := h.replay(context.Background(), h.replayConfig(), nil)
	require.NoError(t, err)
	require.Equal(t, 30, sum.Polls)
	require.Equal(t, 30, sum.Rows.Polls)
	require.Positive(t, sum.Rows.MoneyFlow)
	require.Empty(t, sum.Failures)
	require.Equal(t, live, pgtest.Checksums(t, h.db.Pool, exclude...))

	// Replayed polls are marked in the logs.
	var marked int
	for _, entry := range h.hook.AllEntries() {
		if entry.Message == "replay poll" {
			require.Equal(t, true, entry.Data["replay"])
			marked++
		}
	}
	require.Equal(t, 30, marked)
}

func TestReplayFilterSelectsPollsByTimeRaceAndMeeting(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop, races := h.liveDay(t)
	stop()
	type poll struct {
		race string
		at   time.Time
	}
	list := func() []poll {
		rows, err := h.db.Pool.Query(context.Background(), `SELECT race_id, observed_at FROM race_polls ORDER BY 1, 2`)
		require.NoError(t, err)
		var out []poll
		for rows.Next() {
			var p poll
			require.NoError(t, rows.Scan(&p.race, &p.at))
			out = append(out, p)
		}
		require.NoError(t, rows.Err())
		return out
	}
	all := list()
	meetingOf := map[string]string{}
	for _, r := range races {
		meetingOf[r.ID] = r.MeetingID
	}
	first := races[0].StartTime.Add(-10 * time.Minute)
	cases := []struct {
		name   string
		filter replay.Filter
		want   func(p poll) bool
		// keepRaces leaves the state tables, so the races table says which
		// meeting a race belongs to; otherwise its stored polls say.
		keepRaces bool
	}{
		{"everything", replay.Filter{}, func(poll) bool { return true }, false},
		// Runs after "everything", so the races table knows every race.
		{"meeting known to the database", replay.Filter{MeetingID: races[3].MeetingID},
			func(p poll) bool { return meetingOf[p.race] == races[3].MeetingID }, true},
		{"time window", replay.Filter{From: first.Add(5 * time.Minute), To: first.Add(15*time.Minute + time.Second)},
			func(p poll) bool {
				return !p.at.Before(first.Add(5*time.Minute)) && !p.at.After(first.Add(15*time.Minute))
			}, false},
		{"races", replay.Filter{RaceIDs: []string{races[1].ID, races[4].ID}},
			func(p poll) bool { return p.race == races[1].ID || p.race == races[4].ID }, false},
		{"meeting of a database that lost its races", replay.Filter{MeetingID: races[3].MeetingID},
			func(p poll) bool { return meetingOf[p.race] == races[3].MeetingID }, false},
		{"meeting and until", replay.Filter{MeetingID: races[0].MeetingID, To: first.Add(time.Second)},
			func(p poll) bool { return meetingOf[p.race] == races[0].MeetingID && !p.at.After(first) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.keepRaces {
				_, err := h.db.Pool.Exec(context.Background(), `DELETE FROM race_polls`)
				require.NoError(t, err)
			} else {
				h.truncate(t)
			}
			var want []poll
			for _, p := range all {
				if tc.want(p) {
					want = append(want, p)
				}
			}
			require.NotEmpty(t, want)
			cfg := replay.DefaultConfig()
			cfg.Filter = tc.filter
			sum, err := h.replay(context.Background(), cfg, nil)
			require.NoError(t, err)
			require.Equal(t, len(want), sum.Polls)
			require.Equal(t, want, list())
		})
	}
}

func TestReplayOfOneRaceAlongsideTheLiveFlowDisturbsNeither(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	races := h.pick(t, 2, 3)
	e, stop := h.start(t)
	var mu sync.Mutex
	var seen []handlers.ProcessResult
	e.OnResult(func(r handlers.ProcessResult) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
	})
	replayed, others := races[0].ID, raceIDsOf(races[1:])
	t0 := races[0].StartTime.Add(-10 * time.Minute)
	h.poll(t, e, raceIDsOf(races), t0, 3, 5*time.Minute)
	// The replayed race loses its rows; the replay must bring them back
	// while the live flow writes the other races (and their shared meeting).
	want := map[string]int{}
	for _, table := range []string{"entrants", "race_pools", "race_polls", "money_flow_history", "odds_history"} {
		want[table] = h.count(t, `SELECT count(*) FROM `+table+` WHERE race_id = $1`, replayed)
		require.Positive(t, want[table], table)
	}
	ctx := context.Background()
	for _, q := range []string{`DELETE FROM races WHERE race_id = $1`, `DELETE FROM race_polls WHERE race_id = $1`,
		`DELETE FROM money_flow_history WHERE race_id = $1`, `DELETE FROM odds_history WHERE race_id = $1`} {
		_, err := h.db.Pool.Exec(ctx, q, replayed)
		require.NoError(t, err)
	}

	// The replay writes its first poll, then waits for a live round to
	// complete, so the two certainly run at the same time.
	started, liveRound := make(chan struct{}), make(chan struct{})
	liveDone := make(chan error, 1)
	go func() {
		<-started
		err := h.pollErr(e, others, t0.Add(15*time.Minute), 1, 5*time.Minute)
		close(liveRound)
		if err == nil {
			err = h.pollErr(e, others, t0.Add(20*time.Minute), 2, 5*time.Minute)
		}
		liveDone <- err
	}()
	var once sync.Once
	unmarked := 0
	cfg := replay.DefaultConfig()
	cfg.Filter.RaceIDs = []string{replayed}
	sum, err := e.Replay(ctx, cfg, func(p replay.Progress) {
		if !p.Last.Replay {
			unmarked++
		}
		once.Do(func() {
			close(started)
			<-liveRound
		})
	})
	require.NoError(t, err)
	require.NoError(t, <-liveDone)
	stop()
	require.Zero(t, unmarked, "replayed results are marked")

	require.Equal(t, 3, sum.Polls)
	require.Equal(t, 1, sum.Races)
	require.Empty(t, sum.Failures)
	for table, n := range want {
		require.Equal(t, n, h.count(t, `SELECT count(*) FROM `+table+` WHERE race_id = $1`, replayed), table)
	}
	mu.Lock()
	require.Len(t, seen, 6*3+5*3, "the live flow saw its own polls only: a replayed poll publishes no result")
	for _, r := range seen {
		require.False(t, r.Replay)
		require.Equal(t, handlers.StatusSuccess, r.Status)
	}
	mu.Unlock()
	require.Equal(t, 6*3+5*3, h.count(t, `SELECT count(*) FROM race_polls`))

	// Consistent: the state is exactly what the stored polls make of an
	// empty database.
	exclude := pgtest.Bookkeeping()
	final := pgtest.Checksums(t, h.db.Pool, exclude...)
	h.truncate(t)
	_, err = h.replay(ctx, replay.DefaultConfig(), nil)
	require.NoError(t, err)
	require.Equal(t, final, pgtest.Checksums(t, h.db.Pool, exclude...))
}

func TestInterruptedReplayResumesWithoutDoubleWork(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop, _ := h.liveDay(t)
	stop()
	exclude := pgtest.Bookkeeping()
	live := pgtest.Checksums(t, h.db.Pool, exclude...)
	h.truncate(t)

	cfg := replay.DefaultConfig()
	cfg.RunID = "resume-test"
	cfg.Concurrency = 2
	cfg.BatchSize = 4 // several transactions, so the run stops midway
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := h.replay(ctx, cfg, func(p replay.Progress) {
		if p.Done == 10 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, first.Complete)
	require.GreaterOrEqual(t, first.Polls, 10)
	require.Less(t, first.Polls, 30)
	require.Equal(t, first.Polls, h.count(t, `SELECT count(*) FROM race_polls`), "every counted poll was written")

	cfg.Resume = true
	second, err := h.replay(context.Background(), cfg, nil)
	require.NoError(t, err)
	require.True(t, second.Resumed)
	require.True(t, second.Complete)
	require.Equal(t, first.Polls, second.AlreadyDone)
	require.Equal(t, 30, first.Polls+second.Polls, "no poll replayed twice, none left out")
	require.Equal(t, 30, second.Rows.Polls+first.Rows.Polls)
	require.Equal(t, 30, h.count(t, `SELECT sum(polls) FROM replay_progress WHERE run_id = $1`, cfg.RunID))
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM replay_runs WHERE run_id = $1 AND finished_at IS NOT NULL`, cfg.RunID))
	require.Equal(t, live, pgtest.Checksums(t, h.db.Pool, exclude...))

	third, err := h.replay(context.Background(), cfg, nil)
	require.NoError(t, err)
	require.Zero(t, third.Polls)
	require.Equal(t, 30, third.AlreadyDone)
}

func TestReplayRunIdentity(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop := h.start(t) // creates the stored topic tables
	stop()
	ctx := context.Background()
	cfg := replay.DefaultConfig()
	cfg.RunID = "ident"
	cfg.Filter.RaceIDs = []string{"a", "b"}
	_, err := h.replay(ctx, cfg, nil)
	require.NoError(t, err)

	cases := []struct {
		name    string
		mutate  func(c *replay.Config)
		wantErr error
	}{
		{"same filter in another order continues", func(c *replay.Config) { c.Filter.RaceIDs = []string{"b", "a", "a"} }, nil},
		{"resume takes the stored filter", func(c *replay.Config) { c.Filter = replay.Filter{}; c.Resume = true }, nil},
		{"another filter is refused", func(c *replay.Config) { c.Filter.RaceIDs = []string{"c"} }, replay.ErrRunMismatch},
		{"resume with another filter is refused", func(c *replay.Config) { c.Filter.MeetingID = "m"; c.Resume = true }, replay.ErrRunMismatch},
		{"resume of an unknown run is refused", func(c *replay.Config) { c.RunID = "nope"; c.Resume = true }, replay.ErrRunNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			tc.mutate(&c)
			sum, err := h.replay(ctx, c, nil)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.True(t, sum.Resumed)
		})
	}
}

func TestBadStoredPollIsReportedAndSkippedOnce(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop, races := h.liveDay(t)
	stop()
	ctx := context.Background()
	race := races[2].ID
	topic := fmt.Sprintf(`"watermill_race.fetched.%d"`, driver.Shard(race, flows.DefaultConfig().Shards))
	// A corrupt body and an unreadable observation instant, stored as acked
	// rows among the race's good ones.
	md := func(observed string) string {
		b, err := json.Marshal(map[string]string{handlers.KeyRaceID: race, handlers.KeyPollID: race + "@bad" + observed,
			handlers.KeyObservedAt: observed, handlers.KeyEncoding: "gzip"})
		require.NoError(t, err)
		return string(b)
	}
	mid := races[2].StartTime.Add(-2 * time.Minute).UTC().Format(time.RFC3339Nano)
	for i, m := range []string{md(mid), md("yesterday")} {
		_, err := h.db.Pool.Exec(ctx, `INSERT INTO `+topic+` (uuid, payload, metadata, acked) VALUES ($1, $2, $3, true)`,
			fmt.Sprintf("00000000-0000-0000-0000-%012d", i), []byte("not gzip"), m)
		require.NoError(t, err)
	}
	h.truncate(t)

	cfg := replay.DefaultConfig()
	cfg.RunID = "bad"
	cfg.Filter.RaceIDs = []string{race}
	sum, err := h.replay(ctx, cfg, nil)
	require.NoError(t, err, "a bad stored poll is not fatal")
	require.True(t, sum.Complete)
	require.Equal(t, 5, sum.Polls)
	require.Len(t, sum.Failures, 2)
	kinds := map[string]bool{}
	for _, f := range sum.Failures {
		require.Equal(t, race, f.RaceID)
		require.Equal(t, handlers.StageTransform, f.Stage)
		require.False(t, f.Stopped)
		kinds[f.Kind] = true
	}
	require.Equal(t, map[string]bool{"decompress": true, "metadata": true}, kinds)
	require.Equal(t, 5, h.count(t, `SELECT count(*) FROM race_polls WHERE race_id = $1`, race))

	again, err := h.replay(ctx, cfg, nil)
	require.NoError(t, err)
	require.Zero(t, again.Polls)
	require.Empty(t, again.Failures, "a resumed run does not report what it skipped before")
	require.Equal(t, 7, again.AlreadyDone)
}

func TestDryRunTransformsEverythingAndWritesNothing(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, stop, _ := h.liveDay(t)
	stop()
	h.truncate(t)
	cfg := replay.DefaultConfig()
	cfg.DryRun = true
	var last replay.Progress
	sum, err := h.replay(context.Background(), cfg, func(p replay.Progress) { last = p })
	require.NoError(t, err)
	require.Equal(t, 30, sum.Polls)
	require.Equal(t, 30, sum.Rows.Polls)
	require.Equal(t, 30, sum.Rows.Races)
	require.Positive(t, sum.Rows.Entrants)
	require.Positive(t, sum.Rows.MoneyFlow)
	require.Positive(t, sum.Rows.Odds)
	require.Equal(t, sum.RunID, last.RunID)
	require.Equal(t, 30, last.Total)
	require.Equal(t, 30, last.Done)
	require.Zero(t, last.Failed)
	for _, table := range pgtest.DomainTables() {
		require.Zero(t, h.count(t, `SELECT count(*) FROM `+table), table)
	}
	require.Zero(t, h.count(t, `SELECT count(*) FROM replay_runs`))
	require.Zero(t, h.count(t, `SELECT count(*) FROM replay_progress`))
}

func TestReplayWithoutStoredTopicSaysSo(t *testing.T) {
	t.Parallel()
	h := newReplayHarness(t)
	_, err := h.replay(context.Background(), replay.DefaultConfig(), nil)
	require.ErrorIs(t, err, replay.ErrNoStoredTopic)
}

// replayFetchFunc adapts a function to handlers.Fetcher.
type replayFetchFunc func(ctx context.Context, raceID string) (*nztab.Fetched, error)

func (f replayFetchFunc) FetchEvent(ctx context.Context, raceID string) (*nztab.Fetched, error) {
	return f(ctx, raceID)
}

// storeReplayDay writes races × polls stored fetches straight into the stored
// topic, encoded by the fetch handler itself, polls one minute apart.
func storeReplayDay(b *testing.B, h *replayHarness, races []nztabsim.RaceInfo, polls int) {
	b.Helper()
	ctx := context.Background()
	shards := flows.DefaultConfig().Shards
	for _, r := range races {
		for k := 0; k < polls; k++ {
			at := r.StartTime.Add(time.Duration(k-polls+2) * time.Minute)
			body, err := h.sim.EventJSON(r.ID, at)
			require.NoError(b, err)
			fetch := handlers.Fetch(replayFetchFunc(func(context.Context, string) (*nztab.Fetched, error) {
				return &nztab.Fetched{Body: body, ObservedAt: at}, nil
			}), nil)
			in, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: r.ID, PollID: write.PollID(r.ID, at), RequestedAt: at}, false)
			require.NoError(b, err)
			out, err := fetch(in)
			require.NoError(b, err)
			md, err := json.Marshal(out[0].Metadata)
			require.NoError(b, err)
			_, err = h.db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO "watermill_race.fetched.%d" (uuid, payload, metadata, acked)
				VALUES ($1, $2, $3, true)`, driver.Shard(r.ID, shards)), out[0].UUID, []byte(out[0].Payload), string(md))
			require.NoError(b, err)
		}
	}
}

// BenchmarkReplay replays a stored day of 20 races × 10 polls into an
// empty database and reports polls/s.
func BenchmarkReplay(b *testing.B) {
	h := newReplayHarness(b)
	h.log.SetLevel(logrus.InfoLevel)
	h.log.SetOutput(io.Discard)
	_, stop := h.start(b) // creates the stored topic tables
	stop()
	races := h.pick(b, 5, 4)
	const polls = 10
	storeReplayDay(b, h, races, polls)
	for _, conc := range []int{1, 4} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			ctx := context.Background()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_, err := h.db.Pool.Exec(ctx, `TRUNCATE meetings, races, entrants, race_pools, race_results,
					race_polls, money_flow_history, odds_history CASCADE`)
				require.NoError(b, err)
				cfg := replay.DefaultConfig()
				cfg.Concurrency = conc
				b.StartTimer()
				sum, err := h.replay(ctx, cfg, nil)
				require.NoError(b, err)
				require.Equal(b, len(races)*polls, sum.Polls)
				total += sum.Duration
			}
			b.ReportMetric(float64(b.N*len(races)*polls)/total.Seconds(), "polls/s")
		})
	}
}
