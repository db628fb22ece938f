package nztabsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestForcedFaultsHaveTheirEffect(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	srv := serve(t, s)
	id := s.Races()[12].ID

	tests := []struct {
		name       string
		fault      string
		code       int
		validJSON  bool
		retryAfter string
	}{
		{"server error", "500", http.StatusInternalServerError, true, ""},
		{"rate limit", "429", http.StatusTooManyRequests, true, "1"},
		{"not found", "404", http.StatusNotFound, true, ""},
		{"malformed body", "malformed", http.StatusOK, false, ""},
		{"explicitly none", "none", http.StatusOK, true, ""},
		{"unknown fault name", "explode", http.StatusBadRequest, true, ""},
	}
	for _, tt := range tests {
		for _, via := range []string{"header", "query"} {
			var code int
			var hdr http.Header
			var body []byte
			if via == "header" {
				code, hdr, body = get(t, eventURL(srv.URL, id), map[string]string{FaultHeader: tt.fault})
			} else {
				code, hdr, body = get(t, eventURL(srv.URL, id)+"&sim_fault="+tt.fault, nil)
			}
			require.Equal(t, tt.code, code, "%s via %s", tt.name, via)
			require.Equal(t, tt.validJSON, json.Valid(body), "%s via %s: %.200s", tt.name, via, body)
			require.Equal(t, tt.retryAfter, hdr.Get("Retry-After"), "%s via %s", tt.name, via)
		}
	}

	// The malformed body is the real one broken, not an empty one.
	_, _, good := get(t, eventURL(srv.URL, id), nil)
	_, _, bad := get(t, eventURL(srv.URL, id), map[string]string{FaultHeader: "malformed"})
	require.Len(t, bad, len(good))
	require.NotEqual(t, good, bad)
}

func TestTruncateFaultCutsTheBodyShort(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	srv := serve(t, s)
	id := s.Races()[3].ID
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, eventURL(srv.URL, id), nil)
	require.NoError(t, err)
	req.Header.Set(FaultHeader, string(FaultTruncate))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the connection drops before Content-Length bytes")
	require.Less(t, int64(len(body)), resp.ContentLength)
	require.False(t, json.Valid(body))
}

func TestTimeoutFaultHangsUntilTheRequestContextEnds(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	id := s.Races()[0].ID
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/racing/events/"+id, nil)
	req.Header.Set(FaultHeader, string(FaultTimeout))
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		s.ServeHTTP(rec, req)
		close(done)
	}()
	require.Eventually(t, func() bool { return s.RaceRequests(id) == 1 }, time.Minute, time.Millisecond)
	select {
	case <-done:
		t.Fatal("the handler answered a timeout fault")
	default:
	}
	cancel()
	<-done
	require.Zero(t, rec.Body.Len(), "nothing was written")
	require.False(t, rec.Flushed)

	// Over HTTP the client sees its own deadline, never a response.
	srv := serve(t, s)
	cctx, ccancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer ccancel()
	hreq, err := http.NewRequestWithContext(cctx, http.MethodGet, eventURL(srv.URL, id), nil)
	require.NoError(t, err)
	hreq.Header.Set(FaultHeader, string(FaultTimeout))
	resp, err := http.DefaultClient.Do(hreq)
	if resp != nil {
		resp.Body.Close()
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLatencyGivesUpWhenTheClientDoes(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	require.NoError(t, s.SetFaults(Faults{Latency: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/racing/meetings", nil)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		s.ServeHTTP(rec, req)
		close(done)
	}()
	require.Eventually(t, func() bool { return s.Requests() == 1 }, time.Minute, time.Millisecond)
	cancel()
	<-done
	require.Zero(t, rec.Body.Len())
}

func TestRandomFaultsFollowTheirRatesWithoutDisturbingPayloads(t *testing.T) {
	t.Parallel()
	s, clk := newTestSim(t, 1, "12:30")
	ref, _ := newTestSim(t, 1, "12:30")
	srv := serve(t, s)
	require.NoError(t, s.SetFaults(Faults{ErrorRate: 0.3, MalformedRate: 0.2, RateLimitRate: 0.1}))

	counts := map[string]int{}
	for i := range 200 {
		r := s.Races()[i%len(s.Races())]
		code, _, body := get(t, eventURL(srv.URL, r.ID), nil)
		switch {
		case code == http.StatusOK && json.Valid(body):
			counts["ok"]++
			want, err := ref.EventJSON(r.ID, clk.Now())
			require.NoError(t, err)
			require.Equal(t, string(want), string(body), "faults on other requests never change a payload")
		case code == http.StatusOK:
			counts["malformed"]++
		default:
			counts[http.StatusText(code)]++
		}
	}
	for _, k := range []string{"ok", "malformed", "Internal Server Error", "Too Many Requests"} {
		require.Positive(t, counts[k], "%s in %v", k, counts)
	}
	require.Greater(t, counts["ok"], 40, "about 40 %% succeed: %v", counts)

	require.NoError(t, s.SetFaults(Faults{ErrorRate: 1}))
	code, _, _ := get(t, srv.URL+"/racing/meetings", nil)
	require.Equal(t, http.StatusInternalServerError, code)
	code, _, _ = get(t, srv.URL+"/racing/meetings", map[string]string{FaultHeader: "none"})
	require.Equal(t, http.StatusOK, code, "a forced none beats the random faults")

	require.NoError(t, s.SetFaults(Faults{}))
	code, _, _ = get(t, srv.URL+"/racing/meetings", nil)
	require.Equal(t, http.StatusOK, code)
}

func TestRaceFaultPoisonsOneRaceWhileOthersFlow(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	srv := serve(t, s)
	poisoned, healthy := s.Races()[5].ID, s.Races()[6].ID
	require.NoError(t, s.SetRaceFault(poisoned, FaultServerError))

	code, _, _ := get(t, eventURL(srv.URL, poisoned), nil)
	require.Equal(t, http.StatusInternalServerError, code)
	code, _, _ = get(t, eventURL(srv.URL, healthy), nil)
	require.Equal(t, http.StatusOK, code)
	code, _, _ = get(t, eventURL(srv.URL, poisoned), map[string]string{FaultHeader: "none"})
	require.Equal(t, http.StatusOK, code, "a forced fault beats the race's")

	s.ClearRaceFault(poisoned)
	code, _, _ = get(t, eventURL(srv.URL, poisoned), nil)
	require.Equal(t, http.StatusOK, code)

	require.ErrorIs(t, s.SetRaceFault("nope", FaultServerError), ErrUnknownRace)
	require.ErrorIs(t, s.SetRaceFault(poisoned, "boom"), ErrUnknownFault)
}

func TestRequestsAreCounted(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:30")
	srv := serve(t, s)
	a, b := s.Races()[0].ID, s.Races()[1].ID
	get(t, eventURL(srv.URL, a), nil)
	get(t, eventURL(srv.URL, a), map[string]string{FaultHeader: "500"})
	get(t, srv.URL+"/racing/events/"+b, nil)
	get(t, srv.URL+"/racing/meetings", nil)
	get(t, srv.URL+"/racing/events/unknown", nil)
	require.EqualValues(t, 5, s.Requests())
	require.EqualValues(t, 2, s.RaceRequests(a), "faulted requests count too")
	require.EqualValues(t, 1, s.RaceRequests(b))
	require.Zero(t, s.RaceRequests("unknown"))
}

func TestFaultsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Faults
		ok   bool
	}{
		{"none", Faults{}, true},
		{"all kinds summing to one", Faults{ErrorRate: 0.2, TimeoutRate: 0.2, MalformedRate: 0.2, TruncateRate: 0.2, RateLimitRate: 0.2}, true},
		{"negative latency", Faults{Latency: -time.Second}, false},
		{"rate above one", Faults{ErrorRate: 1.5}, false},
		{"negative rate", Faults{TimeoutRate: -0.1}, false},
		{"rates summing above one", Faults{ErrorRate: 0.6, MalformedRate: 0.6}, false},
	}
	s, _ := newTestSim(t, 1, "12:30")
	for _, tt := range tests {
		err := s.SetFaults(tt.f)
		if tt.ok {
			require.NoError(t, err, tt.name)
			require.Equal(t, tt.f, s.Faults(), tt.name)
		} else {
			require.True(t, errors.Is(err, ErrInvalidFaults), "%s: %v", tt.name, err)
		}
	}
}
