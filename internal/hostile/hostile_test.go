package hostile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/hostile"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// newSim returns a simulator whose clock stands at 13:00 NZ on a racing day,
// when several markets are open.
func newSim(t *testing.T) *nztabsim.Sim {
	t.Helper()
	loc, err := time.LoadLocation("Pacific/Auckland")
	require.NoError(t, err)
	at, err := time.ParseInLocation("2006-01-02 15:04", "2025-07-17 13:00", loc)
	require.NoError(t, err)
	sim, err := nztabsim.New(nztabsim.Config{Seed: 1, Date: "2025-07-17", Clock: nztabsim.NewManualClock(at)})
	require.NoError(t, err)
	return sim
}

// newClient returns a client of the API at baseURL with the corpus's short
// timeouts.
func newClient(t *testing.T, baseURL string) *nztab.Client {
	t.Helper()
	cfg := nztab.ClientConfig{BaseURL: baseURL + "/affiliates/v1", FromEmail: "hostile@example.org",
		PartnerName: "raceflow tests", PartnerID: "hostile"}
	hostile.ShortTimeouts(&cfg)
	c, err := nztab.NewClient(cfg)
	require.NoError(t, err)
	return c
}

// polled is the stage-level outcome of one poll.
type polled struct {
	outcome, stage, kind string
	err                  error
	snap                 transform.RaceSnapshot
	snapJSON             []byte
}

// poll runs one poll of raceID through the flow's fetch and transform
// handlers (client, decoder, transform) and classifies it as the flow does:
// a Skip is "skipped", any other stage error "poisoned", and anything else
// (a context error) would be redelivered, which no hostile case may cause.
func poll(t *testing.T, client *nztab.Client, raceID string, at time.Time) polled {
	t.Helper()
	msg, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: raceID, PollID: "hostile-poll", RequestedAt: at}, false)
	require.NoError(t, err)
	msg.SetContext(t.Context())
	out, err := handlers.Fetch(client, nil)(msg)
	if err != nil {
		return classify(err)
	}
	require.Len(t, out, 1)
	fetched := out[0]
	fetched.SetContext(t.Context())
	// The write handler transforms the stored body as this does.
	snap, err := handlers.SnapshotFromFetched(fetched)
	if err != nil {
		return classify(err)
	}
	snapJSON, err := json.Marshal(snap)
	require.NoError(t, err)
	return polled{outcome: hostile.OutcomeSuccess, snap: snap, snapJSON: snapJSON}
}

func classify(err error) polled {
	var skip *handlers.Skip
	var se *handlers.StageError
	switch {
	case errors.As(err, &skip):
		return polled{outcome: hostile.OutcomeSkipped, stage: skip.Stage, kind: skip.Kind, err: err}
	case errors.As(err, &se):
		return polled{outcome: hostile.OutcomePoisoned, stage: se.Stage, kind: se.Kind, err: err}
	}
	return polled{outcome: "redelivered", err: err}
}

func TestEveryCaseEndsAsItsFileSaysThroughClientDecoderAndTransform(t *testing.T) {
	t.Parallel()
	cases, err := hostile.Cases()
	require.NoError(t, err)
	sim := newSim(t)
	raceID, err := hostile.PickRace(sim)
	require.NoError(t, err)
	at := sim.Clock().Now()

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			h := hostile.NewHandler(sim)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			require.NoError(t, h.Serve(raceID, c))

			got := poll(t, newClient(t, srv.URL), c.RaceID(raceID), at)
			w := c.Want
			require.Equal(t, w.Outcome, got.outcome, "%s\nerror: %v", c.About, got.err)
			require.Equal(t, w.Stage, got.stage, "%v", got.err)
			require.Equal(t, w.Kind, got.kind, "%v", got.err)
			if fe := (*nztab.FetchError)(nil); errors.As(got.err, &fe) {
				require.Less(t, len(fe.Error()), 2000, "the client's error stays loggable")
			}
			if c.PollID != "" {
				require.Zero(t, h.Requests(c.PollID), "a hostile race id reaches no API")
			} else {
				require.Positive(t, h.Requests(raceID), "the case was served")
			}
			if got.outcome != hostile.OutcomeSuccess {
				return
			}

			q := got.snap.Quality
			require.NotContains(t, string(got.snapJSON), `\u0000`, "nothing PostgreSQL refuses reaches the write")
			require.True(t, utf8.Valid(got.snapJSON))
			require.GreaterOrEqual(t, q.ReplacedChars, w.ReplacedChars, "%v", q.Warnings)
			if w.MoneyFlow != nil {
				require.Len(t, got.snap.MoneyFlow, *w.MoneyFlow)
			}
			if w.Valid != nil {
				require.Equal(t, *w.Valid, q.Valid, "%v", q.Warnings)
			}
			if w.Warning != "" {
				require.True(t, containsWarning(q.Warnings, w.Warning), "want a warning with %q, got %q", w.Warning, q.Warnings)
			}
			require.Equal(t, q.MoneyWithheld != "", w.MoneyFlow != nil && *w.MoneyFlow == 0,
				"money is withheld exactly where a case expects no money-flow rows")
		})
	}
}

func containsWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if bytes.Contains([]byte(w), []byte(sub)) {
			return true
		}
	}
	return false
}

func TestTheCorpusCoversEveryItemAndOutcome(t *testing.T) {
	t.Parallel()
	cases, err := hostile.Cases()
	require.NoError(t, err)
	items := map[string]int{}
	outcomes := map[string]int{}
	for _, c := range cases {
		items[c.Item]++
		outcomes[c.Want.Outcome]++
	}
	for _, item := range []string{"1", "3", "4", "5", "7", "8", "existing"} {
		require.Positive(t, items[item], "item %s has a case", item)
	}
	for _, o := range []string{hostile.OutcomeSuccess, hostile.OutcomeSkipped, hostile.OutcomePoisoned} {
		require.Positive(t, outcomes[o], "some case ends %s", o)
	}
}

func TestHandlerServesTheSimulatorForRacesWithoutACase(t *testing.T) {
	t.Parallel()
	sim := newSim(t)
	raceID, err := hostile.PickRace(sim)
	require.NoError(t, err)
	h := hostile.NewHandler(sim)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// No retry: each poll is one request, which the count below checks (a
	// slow answer on a busy machine would otherwise be asked for twice).
	cfg := nztab.ClientConfig{BaseURL: srv.URL + "/affiliates/v1", FromEmail: "hostile@example.org",
		PartnerName: "raceflow tests", PartnerID: "hostile", Timeout: time.Minute, TotalTimeout: time.Minute, MaxRetries: -1}
	client, err := nztab.NewClient(cfg)
	require.NoError(t, err)

	got := poll(t, client, raceID, sim.Clock().Now())
	require.Equal(t, hostile.OutcomeSuccess, got.outcome, "%v", got.err)
	require.True(t, got.snap.Quality.Valid, "%v", got.snap.Quality.Warnings)

	cases, err := hostile.Cases()
	require.NoError(t, err)
	require.NoError(t, h.Serve(raceID, cases[0]))
	require.NotEqual(t, hostile.OutcomeSuccess, poll(t, client, raceID, sim.Clock().Now()).outcome, cases[0].Name)
	h.Stop(raceID)
	require.Equal(t, hostile.OutcomeSuccess, poll(t, client, raceID, sim.Clock().Now()).outcome, "served normally again")
	require.Equal(t, 3, h.Requests(raceID))

	resp, err := http.Get(srv.URL + "/affiliates/v1/racing/meetings?date_from=2025-07-17&date_to=2025-07-17")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "other endpoints reach the simulator")
}

func TestCaseFilesAreCheckedStrictly(t *testing.T) {
	t.Parallel()
	body := []byte(`{"header":{},"data":{"runners":[{"entrant_id":"a","runner_number":1}]}}`)
	_, err := hostile.Mutate(body, []hostile.Op{{Op: "set", Path: "data.nope.x", Value: json.RawMessage(`1`)}})
	require.ErrorContains(t, err, `no key "nope"`)
	_, err = hostile.Mutate(body, []hostile.Op{{Op: "replace", Old: "absent"}})
	require.ErrorContains(t, err, "not in the body")

	got, err := hostile.Mutate(body, []hostile.Op{
		{Op: "set", Path: "data.runners.0.runner_number", Value: json.RawMessage(`1099511627776`)},
		{Op: "grow", Path: "data.runners", Times: 3},
		{Op: "replace", Old: `"header":{}`, New: `"header":{"title":"t"}`},
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"header":{"title":"t"},"data":{"runners":[{"entrant_id":"a","runner_number":1099511627776},
		{"entrant_id":"a-1","runner_number":1099511627776},{"entrant_id":"a-2","runner_number":1099511627776}]}}`, string(got))
}
