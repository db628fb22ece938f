// Package statustest runs a continuous flow (baseline, scheduler, stages) on
// the NZ TAB simulator for the status page's tests: the service with the
// read model and page it serves, as `raceflow run` does.
package statustest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/status"
)

// Flow is a running service on the simulator and its read model.
type Flow struct {
	DB      *pgtest.DB
	Sim     *nztabsim.Sim
	Clock   *nztabsim.SpeedClock
	Service *flows.Service
	Model   *status.Model
	// Plunge is the late plunge staged on the day's second horse race (the
	// browser test breaks the first), 3 minutes before its start, on the
	// runner with the least chance: its alerts are the day's first.
	Plunge nztabsim.PlungeInfo

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every result
}

// Speed is the simulated seconds per real second of a test flow.
const Speed = 60

// Start runs the service on backend (postgres or memory) against the
// simulator from 20 simulated minutes before the day's first race, and
// stops it when the test ends.
func Start(t testing.TB, backend string) *Flow {
	t.Helper()
	db := pgtest.New(t)
	today := nzday.Of(time.Now())
	clock := nztabsim.NewSpeedClock(today.Start().Add(12*time.Hour-20*time.Minute), Speed, time.Now)
	simCfg := nztabsim.Config{Seed: 3, Date: today.String(), Meetings: 3, RacesPerMeeting: 4, Clock: clock}
	plain, err := nztabsim.New(simCfg)
	require.NoError(t, err)
	// The day is today's, so the race is the first from the second on that
	// shows a plunge cleanly and the simulator can stage one on.
	var sim *nztabsim.Sim
	horses := 0
	for _, r := range plain.Races() {
		if (r.Country == "NZ" || r.Country == "AUS") && (r.Category == "T" || r.Category == "H") {
			if horses++; horses < 2 || !nztabsim.Clean(r, 3*time.Minute) {
				continue
			}
			simCfg.Plunges = []nztabsim.Plunge{{RaceID: r.ID, Before: 3 * time.Minute}}
			if sim, err = nztabsim.New(simCfg); err == nil {
				break
			}
		}
	}
	require.NoError(t, err)
	require.NotNil(t, sim)
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)

	reg := prometheus.NewRegistry()
	metrics, err := flows.NewMetrics(reg)
	require.NoError(t, err)
	client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: api.URL + "/affiliates/v1", FromEmail: "t@example.com",
		PartnerName: "t", PartnerID: "t", Now: clock.Now,
		HTTPClient: &http.Client{Transport: flows.InstrumentTransport(nil, metrics)}})
	require.NoError(t, err)
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)

	cfg := flows.DefaultServiceConfig()
	cfg.Flow.Backend = backend
	cfg.Schedule.MaxInFlight = 12
	cfg.DrainTimeout = 5 * time.Second
	svc, err := flows.NewService(cfg, flows.ServiceDeps{Pool: db.Pool, API: client, Logger: log, Clock: clock,
		Registry: reg, Metrics: metrics})
	require.NoError(t, err)

	f := &Flow{DB: db, Sim: sim, Clock: clock, Service: svc, Model: svc.Status(), Plunge: sim.Plunges()[0],
		changed: make(chan struct{})}
	svc.Engine().OnResult(f.notify)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("service: %v", err)
		}
	})
	return f
}

func (f *Flow) notify(handlers.ProcessResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.changed)
	f.changed = make(chan struct{})
}

// WaitFor re-checks cond after every poll result until it holds. It fails
// the test after two minutes without, a bound far beyond any healthy run.
func (f *Flow) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("statustest: gave up waiting for %s", what)
		}
	}
}

// RaceWithPolls waits until some race has at least n stored polls with
// money flow and returns its id.
func (f *Flow) RaceWithPolls(t testing.TB, n int) string {
	t.Helper()
	var id string
	f.WaitFor(t, strconv.Itoa(n)+" stored polls of one race", func() bool {
		err := f.DB.Pool.QueryRow(context.Background(), `
			SELECT race_id FROM money_flow_history GROUP BY race_id
			HAVING count(DISTINCT polling_timestamp) >= $1 ORDER BY race_id LIMIT 1`, n).Scan(&id)
		return err == nil
	})
	return id
}

// HorseRaces returns the first n races by start of the meetings the
// baseline keeps (NZ and AUS thoroughbred and harness).
func (f *Flow) HorseRaces(t testing.TB, n int) []string {
	t.Helper()
	var ids []string
	for _, r := range f.Sim.Races() {
		if (r.Country == "NZ" || r.Country == "AUS") && (r.Category == "T" || r.Category == "H") && len(ids) < n {
			ids = append(ids, r.ID)
		}
	}
	require.Len(t, ids, n, "simulated horse races")
	return ids
}
