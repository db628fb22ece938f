package flows_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgembed"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// TestRunServiceOverASimulatedHour runs the continuous service (baseline,
// leader, scheduler, flow) against the simulator for a simulated hour at
// high speed, on a private PostgreSQL that the test can stop.
func TestRunServiceOverASimulatedHour(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated hour of racing; run without -short")
	}
	ctx := context.Background()
	srv, err := pgembed.Start(ctx, pgembed.Config{})
	if errors.Is(err, pgembed.ErrNoBinaries) {
		t.Skipf("needs PostgreSQL server binaries to stop and start a private server: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	pool, err := pgxpool.New(ctx, srv.URL())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, migrations.Up(ctx, pool))

	// Simulated time from 11:50 NZ, stepped by the flow's progress: races
	// of two meetings start at 12:00 and go final minutes later.
	today := nzday.Of(time.Now())
	clock := schedule.NewFakeClock(today.Start().Add(11*time.Hour + 50*time.Minute))
	sim, err := nztabsim.New(nztabsim.Config{Seed: 11, Date: today.String(), Meetings: 2, RacesPerMeeting: 3, Clock: clock})
	require.NoError(t, err)
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: api.URL + "/affiliates/v1", FromEmail: "t@example.com",
		PartnerName: "t", PartnerID: "t", Now: clock.Now})
	require.NoError(t, err)

	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	cfg := flows.DefaultServiceConfig()
	cfg.Schedule.MaxInFlight = 10
	cfg.Schedule.Tick = simStep
	svc, err := flows.NewService(cfg, flows.ServiceDeps{Pool: pool, API: client, Logger: log, Clock: clock})
	require.NoError(t, err)
	day := newLockstep(clock, 2, svc)
	health := httptest.NewServer(svc.Handler())
	t.Cleanup(health.Close)
	status := func(path string) int {
		resp, err := http.Get(health.URL + path)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(cancel)

	require.Eventually(t, func() bool { return status("/readyz") == http.StatusOK }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusOK, status("/healthz"))

	day.runUntil(t, today.Start().Add(12*time.Hour+50*time.Minute), simStep)

	// Races that went final have money flow across several buckets and results.
	rows, err := pool.Query(ctx, `
		SELECT r.race_id,
		       (SELECT count(DISTINCT time_interval) FROM money_flow_history m WHERE m.race_id = r.race_id),
		       EXISTS (SELECT 1 FROM race_results rr WHERE rr.race_id = r.race_id AND rr.results_available AND rr.result_status = 'final')
		FROM races r WHERE r.status = 'final'`)
	require.NoError(t, err)
	type raceRow struct {
		id      string
		buckets int
		results bool
	}
	finals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (raceRow, error) {
		var x raceRow
		return x, r.Scan(&x.id, &x.buckets, &x.results)
	})
	require.NoError(t, err)
	require.NotEmpty(t, finals, "some races reached final within the simulated hour")
	for _, f := range finals {
		require.GreaterOrEqual(t, f.buckets, 3, "race %s has money flow across several buckets", f.id)
		require.True(t, f.results, "race %s has its final results written", f.id)
	}
	require.Positive(t, svc.Scheduler().Stats().Finished)

	// The database goes away and comes back: readiness follows it.
	require.NoError(t, srv.Halt(ctx))
	require.Eventually(t, func() bool { return status("/readyz") == http.StatusServiceUnavailable }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusOK, status("/healthz"), "the process itself is still up")
	if resp, err := http.Get(health.URL + "/readyz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, "not ready: database\n", string(body), "the part, not the internals (hosts, ports, driver errors)")
	}
	require.NoError(t, srv.Resume(ctx))
	require.Eventually(t, func() bool { return status("/readyz") == http.StatusOK }, 30*time.Second, 50*time.Millisecond)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("service did not stop")
	}
}

// TestTwoServicesOnNATSShareTheWorkUnderOneLeader runs two `raceflow run`
// services in one process on one database and one NATS namespace for half a
// simulated hour: one of them leads and schedules, both work polls, the
// leader sees the result of every poll it requested (its scheduler loses
// none), and the services' metrics, summed, count each written poll once.
func TestTwoServicesOnNATSShareTheWorkUnderOneLeader(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	url := natstest.URL(t)
	ns := natstest.Namespace(t, url)
	today := nzday.Of(time.Now())
	clock := schedule.NewFakeClock(today.Start().Add(11*time.Hour + 50*time.Minute))
	sim, err := nztabsim.New(nztabsim.Config{Seed: 11, Date: today.String(), Meetings: 2, RacesPerMeeting: 3, Clock: clock})
	require.NoError(t, err)
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)

	type instance struct {
		svc    *flows.Service
		cancel context.CancelFunc
		done   chan error
	}
	var insts []*instance
	var svcs []*flows.Service
	for range 2 {
		client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: api.URL + "/affiliates/v1", FromEmail: "t@example.com",
			PartnerName: "t", PartnerID: "t", Now: clock.Now})
		require.NoError(t, err)
		log, _ := test.NewNullLogger()
		cfg := flows.DefaultServiceConfig()
		cfg.Flow.Backend, cfg.Flow.NATS.URL, cfg.Flow.Namespace = config.BackendNATS, url, ns
		cfg.Schedule.MaxInFlight = 10
		cfg.Schedule.Tick = simStep
		// The follower never takes over: once the leader stops, a new
		// leader would poll every race again at the same simulated instant,
		// under the same poll ids, and the ledger would rightly keep one row
		// for two counted polls. (Failover has tests of its own.)
		cfg.Leader.RetryInterval = time.Hour
		svc, err := flows.NewService(cfg, flows.ServiceDeps{Pool: db.Pool, API: client, Logger: log, Clock: clock})
		require.NoError(t, err)
		svcs = append(svcs, svc)
	}
	// Only the leader's loops wait on the clock.
	day := newLockstep(clock, 2, svcs...)
	for _, svc := range svcs {
		ctx, cancel := context.WithCancel(context.Background())
		inst := &instance{svc: svc, cancel: cancel, done: make(chan error, 1)}
		go func() { inst.done <- svc.Run(ctx) }()
		t.Cleanup(cancel)
		insts = append(insts, inst)
	}
	for _, inst := range insts {
		require.Eventually(t, func() bool { return inst.svc.Ready(context.Background()) == nil }, 30*time.Second, 20*time.Millisecond)
	}
	stop := func(inst *instance) {
		inst.cancel()
		select {
		case err := <-inst.done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatal("service did not stop")
		}
	}
	polled := func(inst *instance) int {
		n := 0
		for _, c := range inst.svc.Metrics().Counts() {
			n += c
		}
		return n
	}

	day.runUntil(t, today.Start().Add(12*time.Hour+20*time.Minute), simStep)
	var leader, follower *instance
	for _, inst := range insts {
		if inst.svc.Scheduler().Stats().Polled > 0 {
			require.Nil(t, leader, "two instances scheduled")
			leader = inst
		} else {
			follower = inst
		}
	}
	require.NotNil(t, leader, "one instance scheduled")
	// The leader stops first: it stops scheduling and waits for the results
	// of its polls, which the follower may be working on.
	stop(leader)
	st := leader.svc.Scheduler().Stats()
	require.Zero(t, st.Lost, "the leader saw the result of every poll it requested, whoever worked it")
	require.Zero(t, st.InFlight)
	require.Positive(t, st.Finished, "races went final")
	var written int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM race_polls`).Scan(&written))
	// The follower may still be counting its last results.
	assert.Eventually(t, func() bool { return polled(leader)+polled(follower) == written }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, written, polled(leader)+polled(follower),
		"summed over instances, metrics count each written poll once (leader %d, follower %d)", polled(leader), polled(follower))
	stop(follower)
	require.Positive(t, polled(leader), "the leader worked polls")
	require.Positive(t, polled(follower), "the follower worked polls")

	// The instances wrote polls of the same races in turn, each remembering
	// where the series it appended to ended: every stored increment is
	// still the change since the runner's previous poll.
	var wrong, checked int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE incremental_win_amount <> win_pool_amount - prev_win
		                           OR incremental_place_amount <> place_pool_amount - prev_place), count(*)
		FROM (SELECT incremental_win_amount, incremental_place_amount, win_pool_amount, place_pool_amount,
		             coalesce(lag(win_pool_amount) OVER w, 0) AS prev_win, coalesce(lag(place_pool_amount) OVER w, 0) AS prev_place
		      FROM money_flow_history
		      WINDOW w AS (PARTITION BY race_id, entrant_id ORDER BY polling_timestamp, event_timestamp)) h`).Scan(&wrong, &checked))
	require.Positive(t, checked)
	require.Zero(t, wrong, "money-flow increments that are not the change since the previous poll, of %d", checked)
}
