package flows_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/write"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// harness is one flow on a fresh database against a simulator.
type harness struct {
	db     *pgtest.DB
	sim    *nztabsim.Sim
	client *nztab.Client
	log    *logrus.Logger
	hook   *test.Hook
	races  []nztabsim.RaceInfo
}

// harnessOption adjusts the API a harness talks to.
type harnessOption func(*harnessSetup)

type harnessSetup struct {
	wrap   func(http.Handler) http.Handler
	client func(*nztab.ClientConfig)
}

// withAPI puts a handler in front of the simulator (hostile responses).
func withAPI(wrap func(http.Handler) http.Handler) harnessOption {
	return func(s *harnessSetup) { s.wrap = wrap }
}

// withClient adjusts the API client's configuration.
func withClient(f func(*nztab.ClientConfig)) harnessOption {
	return func(s *harnessSetup) { s.client = f }
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	setup := harnessSetup{wrap: func(h http.Handler) http.Handler { return h }, client: func(*nztab.ClientConfig) {}}
	for _, o := range opts {
		o(&setup)
	}
	db := pgtest.New(t)
	today := nzday.Of(time.Now())
	// Simulated time runs 60x from 20 minutes before the day's first race,
	// so every race is open with money on it.
	clock := nztabsim.NewSpeedClock(today.Start().Add(12*time.Hour-20*time.Minute), 60, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{Seed: 7, Date: today.String(), Clock: clock})
	require.NoError(t, err)
	srv := httptest.NewServer(setup.wrap(sim))
	t.Cleanup(srv.Close)
	ccfg := nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com", PartnerName: "test", PartnerID: "test",
		Timeout: 5 * time.Second,
	}
	setup.client(&ccfg)
	client, err := nztab.NewClient(ccfg)
	require.NoError(t, err)
	log, hook := test.NewNullLogger()
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	log.SetLevel(logrus.DebugLevel)
	races := sim.Races()
	sort.Slice(races, func(i, j int) bool { return races[i].StartTime.Before(races[j].StartTime) })
	return &harness{db: db, sim: sim, client: client, log: log, hook: hook, races: races}
}

// horseRaces returns n race ids of NZ/AUS thoroughbred or harness meetings.
func (h *harness) horseRaces(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for _, r := range h.races {
		if (r.Country == "NZ" || r.Country == "AUS") && (r.Category == "T" || r.Category == "H") {
			ids = append(ids, r.ID)
		}
		if len(ids) == n {
			return ids
		}
	}
	t.Fatalf("simulator has only %d horse races, want %d", len(ids), n)
	return nil
}

func (h *harness) start(t *testing.T, cfg flows.Config) (*flows.Engine, func()) {
	t.Helper()
	return h.startWith(t, cfg, flows.Deps{})
}

// startWith is start with deps (Pool, Fetcher and Logger default to the
// harness's).
func (h *harness) startWith(t *testing.T, cfg flows.Config, deps flows.Deps) (*flows.Engine, func()) {
	t.Helper()
	deps.Pool, deps.Fetcher, deps.Logger = cmp.Or(deps.Pool, h.db.Pool), cmp.Or[handlers.Fetcher](deps.Fetcher, h.client), cmp.Or[logrus.FieldLogger](deps.Logger, h.log)
	e, err := flows.New(cfg, deps)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Running():
	case err := <-done:
		t.Fatalf("flow stopped before running: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, ignoreCanceled(<-done))
		})
	}
	t.Cleanup(stop)
	return e, stop
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (h *harness) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, h.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// backends are the transports every flow test runs on; durableBackends
// keep order and survive a stop (memory does neither).
var (
	backends        = []string{config.BackendPostgres, config.BackendMemory, config.BackendNATS}
	durableBackends = []string{config.BackendPostgres, config.BackendNATS}
)

// onEach runs test as a parallel subtest per backend.
func onEach(t *testing.T, backends []string, test func(t *testing.T, backend string)) {
	t.Helper()
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			test(t, backend)
		})
	}
}

// cfgFor is the flow configuration of a test on backend; on nats the test
// gets a namespace of its own (streams are server-wide, not per database).
func cfgFor(t *testing.T, backend string) flows.Config {
	t.Helper()
	cfg := flows.DefaultConfig()
	cfg.Backend = backend
	if backend == config.BackendNATS {
		cfg.NATS.URL = natstest.URL(t)
		cfg.Namespace = natstest.Namespace(t, cfg.NATS.URL)
	}
	return cfg
}

// poisonQueue lists the flow's poison queue; ok is false on the memory
// backend, which keeps nothing to inspect.
func poisonQueue(t *testing.T, cfg flows.Config, pool *pgxpool.Pool, f driver.PoisonFilter) (msgs []driver.PoisonMessage, ok bool) {
	t.Helper()
	drv, err := flows.OpenDriver(cfg, pool, logrus.New())
	require.NoError(t, err)
	defer func() { require.NoError(t, drv.Close()) }()
	if !drv.Durable() {
		return nil, false
	}
	msgs, err = drv.Poison().List(context.Background(), f)
	require.NoError(t, err)
	return msgs, true
}

// openDriver opens cfg's driver on pool for the test.
func openDriver(t testing.TB, cfg flows.Config, pool *pgxpool.Pool) driver.Driver {
	t.Helper()
	drv, err := flows.OpenDriver(cfg, pool, logrus.New())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, drv.Close()) })
	return drv
}

// pgPoison is the poison queue of namespace's flow on the postgres backend.
func pgPoison(t *testing.T, pool *pgxpool.Pool, namespace string) driver.PoisonQueue {
	t.Helper()
	cfg := flows.DefaultConfig()
	if namespace != "" {
		cfg.Namespace = namespace
	}
	return openDriver(t, cfg, pool).Poison()
}

// waitPoisoned waits until the poison queue holds n messages f selects: on
// nats a failed poll's result can arrive before its poison message is
// stored (two streams, no shared transaction).
func waitPoisoned(t *testing.T, cfg flows.Config, pool *pgxpool.Pool, f driver.PoisonFilter, n int) (msgs []driver.PoisonMessage, ok bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		msgs, ok = poisonQueue(t, cfg, pool, f)
		return !ok || len(msgs) >= n
	}, 30*time.Second, 20*time.Millisecond, "%d poison messages", n)
	return msgs, ok
}

// oneRace starts a flow on backend and gives a horse race to poll, with a
// minute to do it in.
func oneRace(t *testing.T, backend string) (*harness, *flows.Engine, string, context.Context) {
	t.Helper()
	h := newHarness(t)
	e, _ := h.start(t, cfgFor(t, backend))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return h, e, h.horseRaces(t, 1)[0], ctx
}

func TestProcessRaceWritesEveryTableAndReportsTimings(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			h, e, raceID, ctx := oneRace(t, backend)

			res, err := e.ProcessRace(ctx, raceID)
			require.NoError(t, err)
			require.Equal(t, handlers.StatusSuccess, res.Status)
			require.Equal(t, raceID, res.RaceID)
			require.Positive(t, res.Timings.FetchMS)
			require.Positive(t, res.Timings.TransformMS)
			require.Positive(t, res.Timings.WriteMS)
			require.Positive(t, res.Timings.DetectMS)
			inStages := res.Timings.FetchMS + res.Timings.TransformMS + res.Timings.WriteMS + res.Timings.DetectMS
			require.GreaterOrEqual(t, res.Timings.TotalMS, inStages)
			require.InDelta(t, res.Timings.TotalMS, inStages+res.Timings.QueueMS, 0.01)
			require.Equal(t, 1, res.Rows.Races)
			require.Positive(t, res.Rows.Entrants)
			require.Positive(t, res.Rows.MoneyFlow)
			require.Positive(t, res.Rows.Odds)

			require.Equal(t, 1, h.count(t, `SELECT count(*) FROM races WHERE race_id = $1`, raceID))
			require.Equal(t, 1, h.count(t, `SELECT count(*) FROM meetings m JOIN races r USING (meeting_id) WHERE r.race_id = $1`, raceID))
			require.Equal(t, res.Rows.Entrants, h.count(t, `SELECT count(*) FROM entrants WHERE race_id = $1`, raceID))
			require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_pools WHERE race_id = $1`, raceID))
			require.Equal(t, res.Rows.MoneyFlow, h.count(t, `SELECT count(*) FROM money_flow_history WHERE race_id = $1`, raceID))
			require.Equal(t, res.Rows.Odds, h.count(t, `SELECT count(*) FROM odds_history WHERE race_id = $1`, raceID))
			require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE race_id = $1 AND poll_id = $2`, raceID, res.PollID))

			// The story's log events: start, each stage's completion, end.
			var stages []string
			var ended bool
			for _, entry := range h.hook.AllEntries() {
				if entry.Data["poll_id"] != res.PollID {
					continue
				}
				switch entry.Message {
				case "stage complete":
					stages = append(stages, entry.Data["stage"].(string))
					require.Contains(t, entry.Data, "duration_ms")
					require.Equal(t, raceID, entry.Data["race_id"])
				case "pipeline end":
					ended = true
					require.Equal(t, handlers.StatusSuccess, entry.Data["status"])
				}
			}
			require.Equal(t, []string{handlers.StageFetch, handlers.StageTransform, handlers.StageWrite, handlers.StageDetect}, stages,
				"stages run in sequence")
			require.True(t, ended)
		})
	}
}

func TestARacesLaterPollsTakeTheirSeriesEndsFromMemory(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			h, e, raceID, ctx := oneRace(t, backend)
			stored := func() uint64 { // the race's series: a runner's money, a runner's odds of one type
				return uint64(h.count(t, `SELECT (SELECT count(DISTINCT entrant_id) FROM money_flow_history WHERE race_id = $1)
					+ (SELECT count(*) FROM (SELECT DISTINCT entrant_id, type FROM odds_history WHERE race_id = $1) o)`, raceID))
			}

			first, err := e.ProcessRace(ctx, raceID)
			require.NoError(t, err)
			require.Equal(t, handlers.StatusSuccess, first.Status)
			// A first poll keeps every odds row: each is a series of its own.
			series := uint64(first.Rows.MoneyFlow + first.Rows.Odds)
			require.Equal(t, series, stored())
			require.Equal(t, write.EndsStats{LookedUp: series}, e.SeriesEnds(), "the race's first poll looks its series up")

			second, err := e.ProcessRace(ctx, raceID)
			require.NoError(t, err)
			require.Equal(t, handlers.StatusSuccess, second.Status)
			got := e.SeriesEnds()
			// The second poll may bring a series the first lacked (a price
			// that appears), which it looks up and stores; it finds the rest
			// in memory.
			require.Equal(t, stored(), got.LookedUp, "the second poll looks up only series new to it")
			require.Positive(t, got.Remembered, "the second poll takes the first's series from memory")
			require.LessOrEqual(t, got.Remembered, series)
		})
	}
}

func TestWriteFailureRollsBackThePollAndReportsWriteError(t *testing.T) {
	t.Parallel()
	onEach(t, backends, testWriteFailureRollsBack)
}

func testWriteFailureRollsBack(t *testing.T, backend string) {
	h := newHarness(t)
	cfg := cfgFor(t, backend)
	e, _ := h.start(t, cfg)
	ctx := context.Background()
	// No partition for today: the write of the history rows fails for good.
	today := nzday.Of(time.Now())
	for _, table := range []string{"money_flow_history", "odds_history"} {
		_, err := h.db.Pool.Exec(ctx, fmt.Sprintf(`DROP TABLE %s_p%s`, table, today.Compact()))
		require.NoError(t, err)
	}
	raceID := h.horseRaces(t, 1)[0]
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := e.ProcessRace(wctx, raceID)
	var we *handlers.WriteError
	require.ErrorAs(t, err, &we)
	require.False(t, we.Retryable)
	require.Equal(t, handlers.StatusFailed, res.Status)
	require.Equal(t, handlers.StageWrite, res.Error.Stage)
	require.Equal(t, "partition_missing", res.Error.Kind)

	for _, table := range []string{"races", "entrants", "race_pools", "race_polls"} {
		require.Zero(t, h.count(t, `SELECT count(*) FROM `+table+` WHERE race_id = $1`, raceID), "%s rolled back", table)
	}
	require.Zero(t, h.count(t, `SELECT count(*) FROM meetings`), "meetings rolled back")
	if msgs, ok := waitPoisoned(t, cfg, h.db.Pool, driver.PoisonFilter{RaceID: raceID, Stage: handlers.StageWrite}, 1); ok {
		require.Len(t, msgs, 1, "the poll is in the poison queue")
		require.Equal(t, "partition_missing", msgs[0].Kind)
	}
}

func TestMalformedPayloadIsPoisonedWhileOtherRacesComplete(t *testing.T) {
	t.Parallel()
	onEach(t, backends, testMalformedPayloadIsPoisoned)
}

func testMalformedPayloadIsPoisoned(t *testing.T, backend string) {
	h := newHarness(t)
	cfg := cfgFor(t, backend)
	e, _ := h.start(t, cfg)
	ids := h.horseRaces(t, 6)
	bad := ids[2]
	require.NoError(t, h.sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	results, err := e.ProcessRaces(ctx, ids, 3)
	var fe *handlers.FetchError
	require.ErrorAs(t, err, &fe)
	for i, res := range results {
		if ids[i] == bad {
			require.Equal(t, handlers.StatusFailed, res.Status)
			require.Equal(t, "malformed_json", res.Error.Kind)
			continue
		}
		require.Equal(t, handlers.StatusSuccess, res.Status, "race %s", ids[i])
	}
	if msgs, ok := waitPoisoned(t, cfg, h.db.Pool, driver.PoisonFilter{RaceID: bad}, 1); ok {
		require.Len(t, msgs, 1)
		require.Contains(t, msgs[0].Reason, "malformed")
	}
	require.Zero(t, h.count(t, `SELECT count(*) FROM races WHERE race_id = $1`, bad))
}

func TestUnknownRaceIsSkippedWithoutTouchingTheDatabase(t *testing.T) {
	t.Parallel()
	onEach(t, backends, testUnknownRaceIsSkipped)
}

func testUnknownRaceIsSkipped(t *testing.T, backend string) {
	h := newHarness(t)
	cfg := cfgFor(t, backend)
	e, _ := h.start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.ProcessRace(ctx, "no-such-race")
	var fe *handlers.FetchError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, handlers.StatusSkipped, res.Status)
	require.Equal(t, "not_found", res.Error.Kind)
	require.Zero(t, h.count(t, `SELECT count(*) FROM races`))
	msgs, _ := poisonQueue(t, cfg, h.db.Pool, driver.PoisonFilter{})
	require.Empty(t, msgs, "a 404 is not poison")
}

func TestUnrelatedLongTransactionDoesNotStallTheFlow(t *testing.T) {
	t.Parallel()
	onEach(t, backends, testUnrelatedLongTransaction)
}

func testUnrelatedLongTransaction(t *testing.T, backend string) {
	h := newHarness(t)
	e, _ := h.start(t, cfgFor(t, backend))
	ctx := context.Background()
	// An idle transaction holding an xid: with the log schema this would
	// stop delivery on every topic until it ends (watermill-notes.md §0.6).
	blocker, err := h.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = blocker.Rollback(ctx) }()
	_, err = blocker.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)

	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	results, err := e.ProcessRaces(wctx, h.horseRaces(t, 20), 20)
	require.NoError(t, err)
	require.Len(t, results, 20)
	for _, r := range results {
		require.Equal(t, handlers.StatusSuccess, r.Status)
	}
	// The flow finished while the transaction was still open.
	var one int
	require.NoError(t, blocker.QueryRow(ctx, `SELECT 1`).Scan(&one))
}

func TestStoppingMidFlowLosesNoPollAndDuplicatesNoRow(t *testing.T) {
	t.Parallel()
	// Not memory: it keeps nothing across a stop, by design.
	onEach(t, durableBackends, testStoppingMidFlow)
}

func testStoppingMidFlow(t *testing.T, backend string) {
	h := newHarness(t)
	cfg := cfgFor(t, backend)
	e1, stop1 := h.start(t, cfg)
	seen := make(chan handlers.ProcessResult, 100)
	e1.OnResult(func(r handlers.ProcessResult) { seen <- r })

	ids := h.horseRaces(t, 10)
	ctx := context.Background()
	var polls []string
	for round := 0; round < 4; round++ {
		for _, id := range ids {
			p, err := e1.RequestPoll(ctx, id, "test")
			require.NoError(t, err)
			polls = append(polls, p)
		}
	}
	for i := 0; i < 5; i++ { // some, not all, are done
		<-seen
	}
	stop1()

	e2, _ := h.start(t, cfg)
	_ = e2
	require.Eventually(t, func() bool {
		return h.count(t, `SELECT count(*) FROM race_polls`) >= len(polls)
	}, 2*time.Minute, 50*time.Millisecond)
	require.Equal(t, len(polls), h.count(t, `SELECT count(*) FROM race_polls WHERE poll_id = ANY($1)`, polls), "every poll written once")
	require.Equal(t, len(polls), h.count(t, `SELECT count(DISTINCT poll_id) FROM race_polls`))
	require.Zero(t, h.count(t, `SELECT count(*) FROM (SELECT 1 FROM money_flow_history GROUP BY race_id, entrant_id, polling_timestamp HAVING count(*) > 1) d`))
	msgs, _ := poisonQueue(t, cfg, h.db.Pool, driver.PoisonFilter{})
	require.Empty(t, msgs)
}

func TestShardedPollsKeepEachRacesOrder(t *testing.T) {
	t.Parallel()
	// Not memory: Go channels hand messages over concurrently, unordered.
	onEach(t, durableBackends, testShardedPollsKeepOrder)
}

func testShardedPollsKeepOrder(t *testing.T, backend string) {
	h := newHarness(t)
	cfg := cfgFor(t, backend)
	cfg.Shards = 4
	e, _ := h.start(t, cfg)
	var mu sync.Mutex
	got := map[string][]string{}
	all := make(chan struct{}, 50)
	e.OnResult(func(r handlers.ProcessResult) {
		mu.Lock()
		got[r.RaceID] = append(got[r.RaceID], r.PollID)
		mu.Unlock()
		all <- struct{}{}
	})
	ids := h.horseRaces(t, 10)
	want := map[string][]string{}
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		for _, id := range ids {
			p, err := e.RequestPoll(ctx, id, "test")
			require.NoError(t, err)
			want[id] = append(want[id], p)
		}
	}
	timeout := time.After(2 * time.Minute)
	for i := 0; i < 50; i++ {
		select {
		case <-all:
		case <-timeout:
			t.Fatalf("only %d of 50 results arrived", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, got, "each race's polls complete once each, in the order requested")
	shards := map[int]bool{}
	for _, id := range ids {
		shards[driver.Shard(id, cfg.Shards)] = true
	}
	require.Greater(t, len(shards), 1, "the races spread over several shards")
}

// cutShortFetcher is an API whose every fetch is cut short, as by a
// deadline: the poll is handed out again and again.
type cutShortFetcher struct{}

func (cutShortFetcher) FetchEvent(context.Context, string) (*nztab.Fetched, error) {
	return nil, fmt.Errorf("fetch: %w", context.Canceled)
}

func TestAPollHandedOutTooOftenIsPoisonedWithItsLastError(t *testing.T) {
	t.Parallel()
	onEach(t, backends, func(t *testing.T, backend string) {
		h := newHarness(t)
		cfg := cfgFor(t, backend)
		cfg.MaxDeliveries = 3
		e, err := flows.New(cfg, flows.Deps{Pool: h.db.Pool, Fetcher: cutShortFetcher{}, Logger: h.log})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, ignoreCanceled(<-done))
		})
		<-e.Running()

		wctx, stop := context.WithTimeout(context.Background(), time.Minute)
		defer stop()
		res, err := e.ProcessRace(wctx, "never-fetched")
		var fe *handlers.FetchError
		require.ErrorAs(t, err, &fe, "the poll fails instead of being handed out forever")
		require.Equal(t, handlers.StatusFailed, res.Status)
		require.Equal(t, flows.KindRedelivered, res.Error.Kind)
		require.Contains(t, res.Error.Message, "delivered 3 times")
		msgs, err := e.Driver().Poison().List(wctx, driver.PoisonFilter{RaceID: "never-fetched"})
		if backend == config.BackendNATS {
			// The poison message can follow the result (two streams).
			msgs, _ = waitPoisoned(t, cfg, h.db.Pool, driver.PoisonFilter{RaceID: "never-fetched"}, 1)
		}
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		require.Equal(t, flows.KindRedelivered, msgs[0].Kind)
		if backend != config.BackendNATS { // JetStream keeps no reason with a redelivery
			require.Contains(t, msgs[0].Reason, "context canceled", "the last error travels with it")
		}
	})
}

// TestKilledListenConnectionLosesNothingAndComesBack publishes polls from
// one driver while an engine on another (as another process would) learns
// of them by notification; its LISTEN connection is terminated mid-run.
func TestKilledListenConnectionLosesNothingAndComesBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cfg := cfgFor(t, config.BackendPostgres)
	reg := prometheus.NewRegistry()
	e, _ := h.startWith(t, cfg, flows.Deps{Registry: reg})
	results := map[string]int{}
	var mu sync.Mutex
	got := make(chan string, 1024)
	e.OnResult(func(r handlers.ProcessResult) {
		mu.Lock()
		results[r.PollID]++
		mu.Unlock()
		got <- r.PollID
	})
	for _, c := range e.Driver().Collectors() {
		require.NoError(t, reg.Register(c))
	}
	listening := func() float64 {
		f := gather(t, reg)
		return f.sum("raceflow_notify_listener_up", nil)
	}
	require.Eventually(t, func() bool { return listening() == 1 }, time.Minute, 10*time.Millisecond, "listening")

	other, err := flows.New(cfg, flows.Deps{Pool: h.db.Pool, Fetcher: h.client, Logger: h.log})
	require.NoError(t, err) // never runs: it publishes, as a scheduler in another process
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	races := h.horseRaces(t, 6)
	var polls []string
	request := func(race string) {
		id, err := other.RequestPoll(context.Background(), race, "test")
		require.NoError(t, err)
		polls = append(polls, id)
	}
	wait := func(n int) {
		for range n {
			select {
			case <-got:
			case <-time.After(time.Minute):
				t.Fatalf("a result did not arrive (%d polls requested)", len(polls))
			}
		}
	}
	for _, r := range races[:3] {
		request(r)
	}
	wait(3)

	ctx := context.Background()
	tag, err := h.db.Pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE '%-listen'`)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), "one LISTEN connection")
	// Published while nobody listens: found by the faster poll.
	for _, r := range races[3:] {
		request(r)
	}
	wait(3)
	require.Eventually(t, func() bool { return listening() == 1 }, time.Minute, 10*time.Millisecond, "listening again")
	request(races[0])
	wait(1)

	mu.Lock()
	defer mu.Unlock()
	for _, id := range polls {
		require.Equal(t, 1, results[id], "poll %s: one result", id)
		require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE poll_id = $1`, id), "poll %s written once", id)
	}
}
