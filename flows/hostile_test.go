package flows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nztab"
)

// hostile serves crafted responses for chosen races and the simulator for
// the rest.
type hostile struct {
	mu    sync.Mutex
	sim   *nztabsim.Sim
	races map[string]func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (h *hostile) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		h.mu.Lock()
		serve := h.races[id]
		h.mu.Unlock()
		if serve == nil || !strings.Contains(r.URL.Path, "/racing/events/") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := h.sim.EventJSON(id, h.sim.Clock().Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		serve(w, r, body)
	})
}

// mutate decodes the body, lets f change it, and re-encodes it.
func mutate(f func(data map[string]any)) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, body []byte) {
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f(doc["data"].(map[string]any))
		_ = json.NewEncoder(w).Encode(doc)
	}
}

func raw(f func(body []byte) []byte) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, body []byte) { _, _ = w.Write(f(body)) }
}

func TestHostileAPIInputIsTypedAndContainedWhileOtherRacesFlow(t *testing.T) {
	t.Parallel()
	h := &hostile{races: map[string]func(http.ResponseWriter, *http.Request, []byte){}}
	hs := newHarness(t, withAPI(h.wrap), withClient(func(c *nztab.ClientConfig) {
		c.Timeout = 300 * time.Millisecond // the slow body outlasts it
		c.MaxRetries = 1
		c.BaseBackoff = 10 * time.Millisecond
	}))
	h.sim = hs.sim
	ids := hs.horseRaces(t, 12)

	type want struct {
		status, kind string
		poisoned     bool
	}
	cases := map[string]struct {
		serve func(http.ResponseWriter, *http.Request, []byte)
		want  want
	}{
		"truncated JSON": {raw(func(b []byte) []byte { return b[:len(b)/2] }), want{handlers.StatusFailed, "malformed_json", true}},
		"wrong type": {raw(func(b []byte) []byte {
			// In the runners array: another section may come first and
			// carry runner numbers too (a finished race's results).
			at := bytes.Index(b, []byte(`"runners":`))
			runners := bytes.Replace(b[at:], []byte(`"runner_number":1,`), []byte(`"runner_number":"one",`), 1)
			return append(b[:at:at], runners...)
		}), want{handlers.StatusFailed, "malformed_json", true}},
		"NaN literal": {raw(func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"advertised_start":`), []byte(`"advertised_start":NaN,"x":`), 1)
		}), want{handlers.StatusFailed, "malformed_json", true}},
		"huge odds": {mutate(func(d map[string]any) {
			d["runners"].([]any)[0].(map[string]any)["odds"].(map[string]any)["fixed_win"] = 1e300
		}), want{handlers.StatusFailed, "validation", true}},
		"unknown status": {mutate(func(d map[string]any) {
			d["race"].(map[string]any)["status"] = "Paused"
		}), want{handlers.StatusFailed, "validation", true}},
		"50 MB body": {func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(`{"header":{},"data":{"error":"`)+50<<20+len(`"}}`)))
			_, _ = w.Write([]byte(`{"header":{},"data":{"error":"`))
			chunk := bytes.Repeat([]byte("x"), 1<<20)
			for i := 0; i < 50; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			_, _ = w.Write([]byte(`"}}`))
		}, want{handlers.StatusFailed, "invalid_response", true}},
		"slow body": {func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.Header().Set("Content-Length", "100000")
			for i := 0; i < len(body); i++ {
				if _, err := w.Write(body[i : i+1]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}, want{handlers.StatusSkipped, "unreachable", false}},
	}
	byRace := map[string]string{}
	i := 0
	for name, c := range cases {
		h.races[ids[i]] = c.serve
		byRace[ids[i]] = name
		i++
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, _ := hs.start(t, cfgFor(t, config.BackendPostgres))
	results, _ := e.ProcessRaces(ctx, ids, 6)
	for k, res := range results {
		name, isHostile := byRace[ids[k]]
		if !isHostile {
			require.Equal(t, handlers.StatusSuccess, res.Status, "healthy race %s keeps flowing", ids[k])
			continue
		}
		w := cases[name].want
		require.Equal(t, w.status, res.Status, name)
		require.NotNil(t, res.Error, name)
		require.Equal(t, handlers.StageFetch, res.Error.Stage, name)
		require.Equal(t, w.kind, res.Error.Kind, "%s: %s", name, res.Error.Message)
		var fe *handlers.FetchError
		require.ErrorAs(t, res.Err(), &fe, name)
		n := hs.count(t, `SELECT count(*) FROM "watermill_race.poison" WHERE metadata->>'race_id' = $1`, ids[k])
		if w.poisoned {
			require.Equal(t, 1, n, "%s is poisoned once", name)
		} else {
			require.Zero(t, n, "%s is skipped, not poisoned", name)
		}
		require.Zero(t, hs.count(t, `SELECT count(*) FROM races WHERE race_id = $1`, ids[k]), "%s stored nothing", name)
	}
}

func TestUpstreamFaultsBackOffWithoutHammeringAndPollsResume(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var waits []time.Duration
	hs := newHarness(t, withClient(func(c *nztab.ClientConfig) {
		// Short enough that four timed-out attempts fit the fetch's budget,
		// long enough that a busy machine's answer is not taken for one.
		c.Timeout = time.Second
		// Record each backoff and wait a hundredth of it: the test observes
		// the policy without spending its real time.
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d / 100):
				return nil
			}
		}
	}))
	e, _ := hs.start(t, cfgFor(t, config.BackendPostgres))
	ids := hs.horseRaces(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, tc := range []struct {
		name   string
		faults nztabsim.Faults
		minGap time.Duration
	}{
		{"5xx burst", nztabsim.Faults{ErrorRate: 1}, 80 * time.Millisecond},
		{"timeouts", nztabsim.Faults{TimeoutRate: 1}, 80 * time.Millisecond},
		{"429 with Retry-After", nztabsim.Faults{RateLimitRate: 1}, time.Second},
	} {
		require.NoError(t, hs.sim.SetFaults(tc.faults), tc.name)
		mu.Lock()
		waits = nil
		mu.Unlock()
		before := map[string]int64{}
		for _, id := range ids {
			before[id] = hs.sim.RaceRequests(id)
		}
		results, err := e.ProcessRaces(ctx, ids, len(ids))
		require.Error(t, err, tc.name)
		for k, res := range results {
			require.Equal(t, handlers.StatusSkipped, res.Status, tc.name)
			require.Equal(t, "unreachable", res.Error.Kind, tc.name)
			require.True(t, res.Error.Retryable, tc.name)
			require.Equal(t, int64(4), hs.sim.RaceRequests(ids[k])-before[ids[k]], "%s: one attempt and 3 retries, never more", tc.name)
		}
		mu.Lock()
		require.Len(t, waits, 3*len(ids), tc.name)
		distinct := map[time.Duration]bool{}
		for _, w := range waits {
			require.GreaterOrEqual(t, w, tc.minGap, tc.name)
			distinct[w] = true
		}
		mu.Unlock()
		if tc.minGap < time.Second {
			require.Greater(t, len(distinct), 3, "%s: jitter spreads the races' retries", tc.name)
		}
	}
	require.Zero(t, hs.count(t, `SELECT count(*) FROM "watermill_race.poison"`), "an unreachable API is not poison")

	require.NoError(t, hs.sim.SetFaults(nztabsim.Faults{}))
	results, err := e.ProcessRaces(ctx, ids, len(ids))
	require.NoError(t, err, "polls resume once the API recovers")
	for _, res := range results {
		require.Equal(t, handlers.StatusSuccess, res.Status)
	}
}
