// Package statustest runs a continuous flow (baseline, scheduler, stages) on
// the NZ TAB simulator for the status page's tests, and wires the read model
// to it. The adapters here map the flow's own types to the read model's
// interfaces, as the service's wiring does.
package statustest

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/status"
)

// Flow is a running service on the simulator and a read model of it.
type Flow struct {
	DB       *pgtest.DB
	Sim      *nztabsim.Sim
	Clock    *nztabsim.SpeedClock
	Service  *flows.Service
	Recorder *status.Recorder
	Deps     status.Deps
	Model    *status.Model

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
	sim, err := nztabsim.New(nztabsim.Config{Seed: 3, Date: today.String(), Meetings: 3, RacesPerMeeting: 4, Clock: clock})
	require.NoError(t, err)
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

	rcfg := status.DefaultRecorderConfig()
	rcfg.Now = clock.Now
	rec, err := status.NewRecorder(rcfg)
	require.NoError(t, err)
	f := &Flow{DB: db, Sim: sim, Clock: clock, Service: svc, Recorder: rec, changed: make(chan struct{})}
	svc.Engine().OnResult(rec.Observe)
	svc.Engine().OnResult(f.notify)

	f.Deps = status.Deps{DB: db.Pool, Recorder: rec, Schedule: Schedule{svc.Scheduler()}, API: APIFromRegistry{reg},
		Pool: db.Pool}
	if backend == flows.BackendPostgres {
		queues := prometheus.NewRegistry()
		queues.MustRegister(flows.NewQueueCollector(db.Pool, svc.Engine().Topics()))
		f.Deps.Queues = QueuesFromCollector{queues}
		q, closeQueue, err := flows.OpenPoisonQueue(cfg.Flow, db.Pool)
		require.NoError(t, err)
		t.Cleanup(closeQueue)
		f.Deps.Poison = Poison{q}
	}
	mcfg := status.DefaultConfig()
	mcfg.Now = clock.Now
	f.Model, err = status.New(mcfg, f.Deps)
	require.NoError(t, err)

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

// Schedule adapts the scheduler to status.Schedule.
type Schedule struct{ S *schedule.Scheduler }

// Tracked maps the scheduler's view.
func (s Schedule) Tracked(ctx context.Context) ([]status.TrackedRace, error) {
	list, err := s.S.Tracked(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]status.TrackedRace, len(list))
	for i, tr := range list {
		out[i] = status.TrackedRace{RaceID: tr.ID, Status: tr.Status, Start: tr.Start, Cadence: tr.Cadence,
			Polls: tr.Polls, LastRequest: tr.LastRequest, NextPoll: tr.NextPoll, InFlight: tr.InFlight, Lost: tr.Lost}
	}
	return out, nil
}

// Poison adapts a flow's poison queue to status.Poison.
type Poison struct{ Q flows.PoisonQueue }

// PoisonStats lists the whole queue (fine for a test's few messages).
func (p Poison) PoisonStats(ctx context.Context) (status.PoisonStats, error) {
	msgs, err := p.Q.List(ctx, flows.PoisonFilter{})
	if err != nil {
		return status.PoisonStats{}, err
	}
	st := status.PoisonStats{Count: int64(len(msgs)), ByRace: map[string]int{}}
	for _, m := range msgs {
		if st.Oldest.IsZero() || m.CreatedAt.Before(st.Oldest) {
			st.Oldest = m.CreatedAt
		}
		st.ByRace[m.RaceID]++
	}
	return st, nil
}

// RecentPoison lists the newest n.
func (p Poison) RecentPoison(ctx context.Context, n int) ([]status.PoisonEntry, error) {
	msgs, err := p.Q.List(ctx, flows.PoisonFilter{Limit: n})
	if err != nil {
		return nil, err
	}
	out := make([]status.PoisonEntry, len(msgs))
	for i, m := range msgs {
		out[i] = entry(m)
	}
	return out, nil
}

// PoisonMessage reads one with its decoded payload. The postgres queue's
// ids are int4 offsets: a larger id names no message.
func (p Poison) PoisonMessage(ctx context.Context, id int64) (status.PoisonEntry, error) {
	if id > math.MaxInt32 {
		return status.PoisonEntry{}, fmt.Errorf("%w: %d", status.ErrPoisonNotFound, id)
	}
	m, err := p.Q.Get(ctx, id)
	if errors.Is(err, flows.ErrPoisonNotFound) {
		return status.PoisonEntry{}, errors.Join(status.ErrPoisonNotFound, err)
	}
	if err != nil {
		return status.PoisonEntry{}, err
	}
	e := entry(m)
	body, err := m.DecodedPayload()
	if err != nil {
		body = []byte("(payload could not be decoded: " + err.Error() + ")")
	}
	e.Payload = string(body)
	return e, nil
}

func entry(m flows.PoisonMessage) status.PoisonEntry {
	return status.PoisonEntry{ID: m.ID, PoisonedAt: m.CreatedAt, RaceID: m.RaceID, PollID: m.PollID, Stage: m.Stage,
		Kind: m.Kind, Reason: m.Reason, Topic: m.Topic, Requeued: m.Requeued, Metadata: m.Metadata}
}

// QueuesFromCollector reads flows.QueueCollector's figures in process.
type QueuesFromCollector struct{ Reg *prometheus.Registry }

// QueueStats gathers the backlog and oldest age by kind and shard.
func (q QueuesFromCollector) QueueStats(context.Context) ([]status.QueueStat, error) {
	families, err := q.Reg.Gather()
	if err != nil {
		return nil, err
	}
	byKey := map[[2]string]*status.QueueStat{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if fam.GetName() == "raceflow_queue_stats_up" && m.GetGauge().GetValue() == 0 {
				return nil, errors.New("queue tables could not be read")
			}
			key := [2]string{labels["kind"], labels["shard"]}
			if key[0] == "" {
				continue
			}
			st := byKey[key]
			if st == nil {
				shard, _ := strconv.Atoi(key[1])
				st = &status.QueueStat{Kind: key[0], Shard: shard}
				byKey[key] = st
			}
			switch fam.GetName() {
			case "raceflow_queue_backlog_messages":
				st.Backlog = int64(m.GetGauge().GetValue())
			case "raceflow_queue_oldest_message_age_seconds":
				st.OldestAge = time.Duration(m.GetGauge().GetValue() * float64(time.Second))
			}
		}
	}
	out := make([]status.QueueStat, 0, len(byKey))
	for _, st := range byKey {
		out = append(out, *st)
	}
	return out, nil
}

// APIFromRegistry reads raceflow_api_responses_total from the registry.
type APIFromRegistry struct{ Reg prometheus.Gatherer }

// APIResponses sums the counter by class.
func (a APIFromRegistry) APIResponses() map[string]int64 {
	out := map[string]int64{}
	families, err := a.Reg.Gather()
	if err != nil {
		return out
	}
	for _, fam := range families {
		if fam.GetName() != "raceflow_api_responses_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "class" {
					out[l.GetValue()] += int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}
