package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/status"
	"github.com/raceflow/raceflow/web"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pages answers from fixed data or fails with err, to drive every response
// the handler can give; the read model itself is tested against PostgreSQL
// in package status and end to end in the browser test.
type pages struct{ err error }

const knownRace = "0f57e087-1a2b-4c3d-8e9f-0a1b2c3d4e5f"

func (p pages) Races(context.Context) (status.RacesPage, error) {
	return status.RacesPage{Day: "2025-07-17", Meetings: []status.MeetingGroup{}, Warnings: []string{}}, p.err
}

func (p pages) Race(_ context.Context, id string) (status.RacePage, error) {
	if !status.ValidRaceID(id) {
		return status.RacePage{}, fmt.Errorf("%w: %q", status.ErrMalformedID, id)
	}
	if p.err != nil {
		return status.RacePage{}, p.err
	}
	if id != knownRace {
		return status.RacePage{}, fmt.Errorf("%w: %s", status.ErrRaceNotFound, id)
	}
	return status.RacePage{Race: status.RaceInfo{ID: id, Name: "Pryda Handicap </script><b>", MeetingName: "Awapuni"}}, nil
}

func (p pages) Pipeline(context.Context) (status.PipelinePage, error) {
	return status.PipelinePage{}, p.err
}

func (p pages) PoisonMessage(_ context.Context, id int64) (status.PoisonEntry, error) {
	if p.err != nil {
		return status.PoisonEntry{}, p.err
	}
	if id != 7 {
		return status.PoisonEntry{}, fmt.Errorf("%w: %d", status.ErrPoisonNotFound, id)
	}
	return status.PoisonEntry{ID: 7, RaceID: knownRace, Stage: "fetch", Kind: "decode", Reason: "<img src=x>",
		Metadata: map[string]string{"race_id": knownRace}, Payload: "{\"not\": \"json\""}, nil
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

func TestResponses(t *testing.T) {
	t.Parallel()
	ok, err := web.New(pages{}, web.DefaultConfig())
	require.NoError(t, err)
	down, err := web.New(pages{err: fmt.Errorf("%w: races: no answer in time", status.ErrUnavailable)}, web.DefaultConfig())
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		h        http.Handler
		method   string
		path     string
		code     int
		ctype    string
		contains string
	}{
		{"races page", ok, "GET", "/", 200, "text/html", `data-api="/api/races"`},
		{"race page", ok, "GET", "/races/" + knownRace, 200, "text/html", `id="initial"`},
		{"race page, unknown id", ok, "GET", "/races/" + strings.Replace(knownRace, "0f", "1f", 1), 404, "text/html", "race not found"},
		{"race page, malformed id", ok, "GET", "/races/1%27%20OR%201=1", 400, "text/html", "malformed id"},
		{"pipeline page", ok, "GET", "/pipeline", 200, "text/html", `data-api="/api/pipeline"`},
		{"poison page", ok, "GET", "/poison/7", 200, "text/html", "raceflow poison requeue 7"},
		{"poison page, unknown", ok, "GET", "/poison/8", 404, "text/html", "not found"},
		{"poison page, malformed", ok, "GET", "/poison/x", 400, "text/html", "malformed"},
		{"races data", ok, "GET", "/api/races", 200, "application/json", `"day":"2025-07-17"`},
		{"race data, unknown", ok, "GET", "/api/races/" + strings.Replace(knownRace, "0f", "1f", 1), 404, "application/json", `"error"`},
		{"race data, malformed", ok, "GET", "/api/races/nope", 400, "application/json", "malformed id"},
		{"poison data", ok, "GET", "/api/poison/7", 200, "application/json", `"kind":"decode"`},
		{"script", ok, "GET", "/static/app.js", 200, "text/javascript", "status:rendered"},
		{"charts", ok, "GET", "/static/charts.js", 200, "text/javascript", "window.Charts"},
		{"styles", ok, "GET", "/static/app.css", 200, "text/css", "@media"},
		{"unknown path", ok, "GET", "/nothing/here", 404, "text/html", "no page at /nothing/here"},
		{"no state changes", ok, "POST", "/api/races", 405, "", ""},
		{"no deletes", ok, "DELETE", "/poison/7", 405, "", ""},
		{"database down: page with banner", down, "GET", "/", 503, "text/html", "no answer in time"},
		{"database down: data", down, "GET", "/api/pipeline", 503, "application/json", "no answer in time"},
		{"database down: race page retries", down, "GET", "/races/" + knownRace, 503, "text/html", `data-api="/api/races/` + knownRace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := get(t, tc.h, tc.method, tc.path)
			require.Equal(t, tc.code, res.StatusCode, body)
			require.Contains(t, res.Header.Get("Content-Type"), tc.ctype)
			require.Contains(t, body, tc.contains)
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'self'")
		})
	}
}

func TestPageDataCannotBreakOutOfThePage(t *testing.T) {
	t.Parallel()
	h, err := web.New(pages{}, web.DefaultConfig())
	require.NoError(t, err)
	_, body := get(t, h, "GET", "/races/"+knownRace)
	require.NotContains(t, body, "</script><b>", "a name that closes the script is escaped")
	_, body = get(t, h, "GET", "/poison/7")
	require.NotContains(t, body, "<img src=x>")
	require.Contains(t, body, "&lt;img src=x&gt;")

	_, body = get(t, h, "GET", "/api/races/"+knownRace)
	var page status.RacePage
	require.NoError(t, json.Unmarshal([]byte(body), &page))
	require.Equal(t, "Pryda Handicap </script><b>", page.Race.Name, "the data itself is intact")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 50 * time.Millisecond, 3 * time.Second} {
		_, err := web.New(pages{}, web.Config{Refresh: d})
		require.Error(t, err, "refresh %s", d)
	}
	_, err := web.New(nil, web.DefaultConfig())
	require.Error(t, err)
	require.NoError(t, web.DefaultConfig().Validate())
}
