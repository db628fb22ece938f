package flows_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/nztab"
)

// alertDate is the simulated day of the alert tests: fixed, so that what
// the rules judge does not change from one day to the next.
const alertDate = "2025-07-17"

// dayFetcher serves a recorded simulated day to the flow: each race's
// fetches in order, one per poll, as the API answered them when the
// scheduler polled on its default cadence.
type dayFetcher struct {
	mu   sync.Mutex
	next map[string][]simday.Fetch
}

func newDayFetcher(day *simday.Day) *dayFetcher {
	f := &dayFetcher{next: map[string][]simday.Fetch{}}
	for _, x := range day.Fetches {
		f.next[x.RaceID] = append(f.next[x.RaceID], x)
	}
	return f
}

func (f *dayFetcher) FetchEvent(_ context.Context, raceID string) (*nztab.Fetched, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := f.next[raceID]
	if len(list) == 0 {
		return nil, nztab.ErrRaceNotFound
	}
	f.next[raceID] = list[1:]
	return &nztab.Fetched{Body: list[0].Body, ObservedAt: list[0].ObservedAt}, nil
}

// gatedReceiver is a webhook that holds every request until opened, then
// answers 200, recording each alert delivered by its idempotency key.
type gatedReceiver struct {
	*httptest.Server
	open    chan struct{}
	mu      sync.Mutex
	got     map[string][]detect.Fired
	changed chan struct{}
}

func newGatedReceiver(t *testing.T) *gatedReceiver {
	r := &gatedReceiver{open: make(chan struct{}), got: map[string][]detect.Fired{}, changed: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-r.open:
		case <-req.Context().Done():
			return
		}
		body, _ := io.ReadAll(req.Body)
		var f detect.Fired
		if err := json.Unmarshal(body, &f); err != nil || f.ID != req.Header.Get("Idempotency-Key") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got[f.ID] = append(r.got[f.ID], f)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// plungedDay records two meetings of the simulated day on the flow's
// cadence, with a plunge 3 minutes before the start of one race.
func plungedDay(t *testing.T) (*simday.Day, nztabsim.PlungeInfo) {
	t.Helper()
	plain, err := nztabsim.New(nztabsim.Config{Seed: 5, Date: alertDate, Meetings: 2})
	require.NoError(t, err)
	var race string
	for _, r := range plain.Races() {
		if race == "" && r.Country == "NZ" && r.Category == "T" && r.RaceNumber == 4 && r.AbandonedAt.IsZero() {
			race = r.ID
		}
	}
	require.NotEmpty(t, race)
	day, err := simday.Build(context.Background(), simday.Config{Seed: 5, Date: alertDate, Meetings: 2,
		Plan: simday.ScheduledTimes, Plunges: []nztabsim.Plunge{{RaceID: race, Before: 3 * time.Minute}}})
	require.NoError(t, err)
	return day, day.Sim.Plunges()[0]
}

// alertDB is a database with the partitions of alertDate's history.
func alertDB(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	db.EnsureDays(t, alertDate)
	return db
}

// alertFlowConfig is a flow on backend delivering alerts to rcv, retrying
// quickly.
func alertFlowConfig(t *testing.T, backend string, rcv *gatedReceiver) flows.Config {
	t.Helper()
	cfg := cfgFor(t, backend)
	cfg.Notify.URL = rcv.URL
	cfg.Notify.Timeout, cfg.Notify.InitialInterval, cfg.Notify.MaxInterval = time.Second, 10*time.Millisecond, 100*time.Millisecond
	return cfg
}

// startDayFlow runs a flow on day's recorded answers until stop or the end
// of the test; the context is the flow's.
func startDayFlow(t *testing.T, cfg flows.Config, db *pgtest.DB, day *simday.Day) (e *flows.Engine, ctx context.Context, stop func()) {
	t.Helper()
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.WarnLevel)
	e, err := flows.New(cfg, flows.Deps{Pool: db.Pool, Fetcher: newDayFetcher(day), Logger: log})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, ignoreCanceled(<-done))
		})
	}
	t.Cleanup(stop)
	<-e.Running()
	return e, ctx, stop
}

// processDay polls every race of day as often as it was recorded, each
// race's polls in order, races in parallel; it returns the polls per race
// and the alerts the results say were stored.
func processDay(t *testing.T, ctx context.Context, e *flows.Engine, day *simday.Day) (map[string]int, int) {
	t.Helper()
	polls := map[string]int{}
	for _, f := range day.Fetches {
		polls[f.RaceID]++
	}
	var mu sync.Mutex
	stored := 0
	var g errgroup.Group
	g.SetLimit(8)
	for race, n := range polls {
		g.Go(func() error {
			for range n {
				res, err := e.ProcessRace(ctx, race)
				if err != nil {
					return err
				}
				mu.Lock()
				stored += res.Rows.Alerts
				mu.Unlock()
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	return polls, stored
}

// waitDelivered waits until rcv has received each of ids n times.
func (r *gatedReceiver) waitDelivered(t *testing.T, ids []string, n int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		r.mu.Lock()
		done, changed := 0, r.changed
		for _, id := range ids {
			if len(r.got[id]) >= n {
				done++
			}
		}
		r.mu.Unlock()
		if done == len(ids) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d of %d alerts delivered %d times", done, len(ids), n)
		}
	}
}

func TestAStagedPlungeIsAlertedByThePollThatFirstSeesItAndNothingElseIs(t *testing.T) {
	t.Parallel()
	day, pl := plungedDay(t)
	onEach(t, []string{config.BackendPostgres, config.BackendMemory}, func(t *testing.T, backend string) {
		db := alertDB(t)
		rcv := newGatedReceiver(t)
		cfg := alertFlowConfig(t, backend, rcv)
		e, ctx, _ := startDayFlow(t, cfg, db, day)

		// Every poll of the day, each race's in order, races in parallel,
		// while the webhook answers nothing: the flow does not wait for it.
		polls, stored := processDay(t, ctx, e, day)

		// The alerts: only on the plunged race, and the plunge's own from
		// the first poll at or after it.
		var first time.Time
		for _, f := range day.Fetches {
			if f.RaceID == pl.RaceID && !f.ObservedAt.Before(pl.At) {
				first = f.ObservedAt.UTC()
				break
			}
		}
		rows, err := db.Pool.Query(context.Background(), `
			SELECT race_id, entrant_id, kind, fired_at, before_cents, after_cents, alert_id::text FROM alerts ORDER BY fired_at`)
		require.NoError(t, err)
		type row struct {
			race, entrant, kind string
			at                  time.Time
			before, after       *int64
			id                  string
		}
		table, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.race, &x.entrant, &x.kind, &x.at, &x.before, &x.after, &x.id)
			return x, err
		})
		require.NoError(t, err)
		require.Equal(t, len(table), stored, "each poll's result counts the alerts it stored")
		kinds := map[string]row{}
		for _, x := range table {
			require.Equal(t, pl.RaceID, x.race, "an alert on a race without a staged move: %+v", x)
			if x.entrant == pl.EntrantID || x.kind == string(alerts.KindPoolSurge) {
				require.True(t, first.Equal(x.at), "%s fired at %s, the first poll after the plunge is %s", x.kind, x.at, first)
				kinds[x.kind] = x
			}
		}
		require.Len(t, kinds, 3, "steamer, late money and pool surge")
		late := kinds[string(alerts.KindLateMoney)]
		var before, after int64
		require.NoError(t, db.Pool.QueryRow(context.Background(), `
			SELECT (SELECT win_pool_amount FROM money_flow_history WHERE race_id = $1 AND entrant_id = $2
			        AND polling_timestamp < $3 AND time_interval <> (SELECT time_interval FROM money_flow_history
			            WHERE race_id = $1 AND entrant_id = $2 AND polling_timestamp = $3)
			        ORDER BY polling_timestamp DESC LIMIT 1),
			       (SELECT win_pool_amount FROM money_flow_history WHERE race_id = $1 AND entrant_id = $2 AND polling_timestamp = $3)`,
			pl.RaceID, pl.EntrantID, first).Scan(&before, &after))
		require.Equal(t, before, *late.before, "the runner's money before the bucket")
		require.Equal(t, after, *late.after, "the runner's money at the poll")
		t.Logf("%d races, %d polls: %d alerts, all on the plunged race", len(polls), len(day.Fetches), len(table))

		// Then the webhook answers, and receives every alert.
		close(rcv.open)
		ids := make([]string, len(table))
		for i, x := range table {
			ids[i] = x.id
		}
		rcv.waitDelivered(t, ids, 1)
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		for _, x := range table {
			got := rcv.got[x.id]
			require.NotEmpty(t, got, "alert %s delivered", x.id)
			require.Equal(t, x.kind, string(got[0].Kind))
			require.True(t, x.at.Equal(got[0].FiredAt))
			require.NotEmpty(t, got[0].Summary)
		}
	})
}
