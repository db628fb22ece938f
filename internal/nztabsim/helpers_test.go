package nztabsim

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/raceflow/raceflow/internal/fixtures"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testDate is a winter (NZST) racing day, the day of the real fixtures.
const testDate = "2025-07-17"

// newTestSim builds a simulator for testDate whose clock stands at the
// given NZ wall time ("HH:MM").
func newTestSim(t *testing.T, seed int64, nzClock string) (*Sim, *ManualClock) {
	t.Helper()
	clk := NewManualClock(nzTime(t, testDate, nzClock))
	s, err := New(Config{Seed: seed, Date: testDate, Clock: clk})
	require.NoError(t, err)
	return s, clk
}

// nzTime parses an NZ local date and "HH:MM" clock time.
func nzTime(t *testing.T, date, clock string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Pacific/Auckland")
	require.NoError(t, err)
	at, err := time.ParseInLocation("2006-01-02 15:04", date+" "+clock, loc)
	require.NoError(t, err)
	return at
}

// serve starts an HTTP server for s and closes it with the test.
func serve(t *testing.T, s *Sim) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

// get fetches url with optional headers and returns the status, the headers
// and the body.
func get(t *testing.T, url string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, body
}

// eventURL is the pipeline's event request for race id.
func eventURL(base, id string) string {
	return base + "/affiliates/v1/racing/events/" + id + "?with_money_tracker=true&with_tote_trends_data=true&with_will_pays=true"
}

// event is the part of an event body the tests inspect, decoded with the
// simulator's own wire types.
type event struct {
	Header header    `json:"header"`
	Data   eventData `json:"data"`
}

// decodeEvent decodes an event body, failing the test on invalid JSON.
func decodeEvent(t *testing.T, body []byte) event {
	t.Helper()
	var ev event
	require.NoError(t, json.Unmarshal(body, &ev), "body: %.300s", body)
	return ev
}

// eventAt renders race id at instant at without HTTP.
func eventAt(t *testing.T, s *Sim, id string, at time.Time) event {
	t.Helper()
	body, err := s.EventJSON(id, at)
	require.NoError(t, err)
	return decodeEvent(t, body)
}

// decodeAny decodes JSON into generic values, keeping numbers as json.Number
// so integers and decimals can be told apart.
func decodeAny(t *testing.T, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	require.NoError(t, dec.Decode(&v))
	return v
}

// fixture reads a real API response or skips the test.
func fixture(t *testing.T, name string) []byte { t.Helper(); return fixtures.Read(t, name) }

// openRace returns a horse race of the test day that is never abandoned and
// whose start is after the given NZ clock time.
func openRace(t *testing.T, s *Sim, after string) RaceInfo {
	t.Helper()
	from := nzTime(t, testDate, after)
	for _, r := range s.Races() {
		if r.AbandonedAt.IsZero() && r.StartTime.After(from) && (r.Category == "T" || r.Category == "H") {
			return r
		}
	}
	t.Fatalf("no open horse race after %s", after)
	return RaceInfo{}
}
