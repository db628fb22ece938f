package nztab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sleepRecorder stands in for ClientConfig.Sleep: it records each backoff and
// returns at once, so tests observe the policy without waiting it out.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

var testNow = time.Date(2025, 7, 17, 0, 40, 0, 0, time.UTC)

// newTestClient returns a client for baseURL with deterministic jitter
// (Rand 0.5 = no spread), a recording Sleep and a fixed clock.
func newTestClient(t *testing.T, baseURL string, mutate func(*ClientConfig)) (*Client, *sleepRecorder) {
	t.Helper()
	rec := &sleepRecorder{}
	cfg := ClientConfig{
		BaseURL:     baseURL,
		FromEmail:   testFrom,
		PartnerName: "Raceflow Tests",
		PartnerID:   "Private-Developer",
		Rand:        func() float64 { return 0.5 },
		Sleep:       rec.sleep,
		Now:         func() time.Time { return testNow },
	}
	// A transport of its own: no pooled connection of another test's
	// client, to a server that once had this port, is ever reused.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: tokenTransport{token: serverToken(baseURL), next: tr}}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewClient(cfg)
	require.NoError(t, err)
	return c, rec
}

// Every test server has a token that the clients made for it send in
// testServerHeader, and counts only requests carrying it: loopback ports
// are reused at once, so a request another test's client makes to a server
// it once had at this port can reach this test's server, with the same From.
const testServerHeader = "X-Raceflow-Test-Server"

var (
	serverTokens sync.Map // host:port → token of the server listening there now
	lastToken    atomic.Int64
)

// registerServer gives the server at srvURL a new token.
func registerServer(srvURL string) string {
	token := strconv.FormatInt(lastToken.Add(1), 10)
	serverTokens.Store(strings.TrimPrefix(srvURL, "http://"), token)
	return token
}

// serverToken is the token of the server at baseURL's host, if it has one.
func serverToken(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	token, _ := serverTokens.Load(u.Host)
	s, _ := token.(string)
	return s
}

// tokenTransport adds a server's token to every request.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(testServerHeader, t.token)
	return t.next.RoundTrip(r)
}

// testFrom is the From header of every test client. Test servers count only
// requests that carry it: a loopback port freed by one test is soon reused,
// and a process of another package's test that still polls the server it had
// there (a simulated API shut down before its client) must not be counted as
// an attempt of this client.
const testFrom = "ops@example.org"

// fromTestClient answers a stray request 421 Misdirected Request and reports
// whether r came from a test client.
func fromTestClient(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("From") == testFrom {
		return true
	}
	http.Error(w, "not a request of this test", http.StatusMisdirectedRequest)
	return false
}

// scripted serves the i-th request (1-based) of the test client with
// steps[i-1], repeating the last step, and counts them.
type scripted struct {
	calls atomic.Int32
	steps []http.HandlerFunc
	token string // registerServer
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !fromTestClient(w, r) {
		return
	}
	if r.Header.Get(testServerHeader) != s.token {
		http.Error(w, "a request of another test's client", http.StatusMisdirectedRequest)
		return
	}
	n := int(s.calls.Add(1))
	if n > len(s.steps) {
		n = len(s.steps)
	}
	s.steps[n-1](w, r)
}

func serve(t *testing.T, steps ...http.HandlerFunc) (*httptest.Server, *scripted) {
	t.Helper()
	h := &scripted{steps: steps}
	srv := httptest.NewUnstartedServer(h)
	h.token = registerServer("http://" + srv.Listener.Addr().String())
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, h
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func okBody(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}
}

func TestNewClientValidatesConfigNamingTheBadField(t *testing.T) {
	t.Parallel()
	base := func() ClientConfig {
		return ClientConfig{FromEmail: "ops@example.org", PartnerName: "p", PartnerID: "id"}
	}
	cases := []struct {
		name   string
		mutate func(*ClientConfig)
		field  string
	}{
		{"relative base URL", func(c *ClientConfig) { c.BaseURL = "api.tab.co.nz/affiliates/v1" }, "BaseURL"},
		{"ftp base URL", func(c *ClientConfig) { c.BaseURL = "ftp://api.tab.co.nz" }, "BaseURL"},
		{"base URL with query", func(c *ClientConfig) { c.BaseURL = "https://h/v1?x=1" }, "BaseURL"},
		{"missing From", func(c *ClientConfig) { c.FromEmail = "" }, "FromEmail"},
		{"From not an address", func(c *ClientConfig) { c.FromEmail = "ops" }, "FromEmail"},
		{"missing partner name", func(c *ClientConfig) { c.PartnerName = " " }, "PartnerName"},
		{"missing partner id", func(c *ClientConfig) { c.PartnerID = "" }, "PartnerID"},
		{"header injection", func(c *ClientConfig) { c.UserAgent = "x\r\nEvil: 1" }, "UserAgent"},
		{"negative timeout", func(c *ClientConfig) { c.Timeout = -time.Second }, "Timeout"},
		{"negative total timeout", func(c *ClientConfig) { c.TotalTimeout = -time.Second }, "TotalTimeout"},
		{"negative body limit", func(c *ClientConfig) { c.MaxBodyBytes = -1 }, "MaxBodyBytes"},
		{"negative backoff", func(c *ClientConfig) { c.BaseBackoff = -time.Millisecond }, "BaseBackoff"},
		{"max backoff below base", func(c *ClientConfig) { c.BaseBackoff = time.Second; c.MaxBackoff = time.Millisecond }, "MaxBackoff"},
		{"negative retry-after cap", func(c *ClientConfig) { c.MaxRetryAfter = -1 }, "MaxRetryAfter"},
		{"jitter of 100%", func(c *ClientConfig) { c.Jitter = 1 }, "Jitter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := base()
			tc.mutate(&cfg)
			_, err := NewClient(cfg)
			require.ErrorContains(t, err, "ClientConfig."+tc.field+":")
		})
	}
	require.NoError(t, base().Validate(), "identity alone is a complete config")
}

func TestClientConfigDefaults(t *testing.T) {
	t.Parallel()
	c := ClientConfig{}.withDefaults()
	require.Equal(t, "https://api.tab.co.nz/affiliates/v1", c.BaseURL)
	require.Equal(t, "raceflow/1.0", c.UserAgent)
	require.Equal(t, 5*time.Second, c.Timeout)
	require.Equal(t, int64(4<<20), c.MaxBodyBytes)
	require.Equal(t, 20*time.Second, c.TotalTimeout)
	require.Equal(t, 3, c.MaxRetries)
	require.Equal(t, 100*time.Millisecond, c.BaseBackoff)
	require.Equal(t, 5*time.Second, c.MaxBackoff)
	require.Equal(t, 10*time.Second, c.MaxRetryAfter)
	require.InDelta(t, 0.2, c.Jitter, 0)
	require.NotNil(t, c.HTTPClient)

	off := ClientConfig{MaxRetries: -1, Jitter: -1}.withDefaults()
	require.Equal(t, 0, off.MaxRetries, "negative MaxRetries disables retrying")
	require.InDelta(t, 0, off.Jitter, 0, "negative Jitter disables jitter")
}

func TestFetchEventSendsIdentityHeadersAndQuery(t *testing.T) {
	t.Parallel()
	reqs := make(chan *http.Request, 1)
	ok := okBody(eventBody(t, nil))
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		reqs <- r.Clone(context.Background())
		ok(w, r)
	})
	c, _ := newTestClient(t, srv.URL+"/affiliates/v1/", func(c *ClientConfig) { c.UserAgent = "raceflow-test/9" })

	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, 1, f.Attempts)
	got := <-reqs
	require.Equal(t, "/affiliates/v1/racing/events/"+testRaceID, got.URL.Path)
	require.Equal(t, "true", got.URL.Query().Get("with_money_tracker"))
	require.Equal(t, "true", got.URL.Query().Get("with_tote_trends_data"))
	require.Equal(t, "true", got.URL.Query().Get("with_will_pays"))
	require.Equal(t, "ops@example.org", got.Header.Get("From"))
	require.Equal(t, "Raceflow Tests", got.Header.Get("X-Partner"))
	require.Equal(t, "Private-Developer", got.Header.Get("X-Partner-ID"))
	require.Equal(t, "raceflow-test/9", got.Header.Get("User-Agent"))
	require.Equal(t, "application/json", got.Header.Get("Accept"))
}

func TestFetchEventReturnsRawBodyDecodedEventAndTimes(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "race-event-full-response.json")
	srv, _ := serve(t, okBody(body))
	c, _ := newTestClient(t, srv.URL, nil)

	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, body, f.Body)
	require.Equal(t, StatusFinal, f.Event.RaceStatus)
	require.Len(t, f.Event.Data.Runners, 8)
	require.Equal(t, testNow, f.ObservedAt)
	require.Equal(t, time.Date(2025, 7, 17, 11, 16, 59, 189042980, time.UTC), f.GeneratedAt)
	require.Equal(t, 1, f.Attempts)
}

func TestFetchEventRetriesServerErrorsWithExponentialBackoff(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, status(500, "boom"), status(502, ""), status(503, "busy"), okBody(eventBody(t, nil)))
	c, rec := newTestClient(t, srv.URL, nil)

	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, 4, f.Attempts)
	require.Equal(t, int32(4), h.calls.Load())
	require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, rec.got())
}

func TestBackoffJitterStaysWithinBounds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"lowest", 0, []time.Duration{80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}},
		{"middle", 0.5, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}},
		{"three quarters", 0.75, []time.Duration{110 * time.Millisecond, 220 * time.Millisecond, 440 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := serve(t, status(503, ""), status(503, ""), status(503, ""), okBody(eventBody(t, nil)))
			c, rec := newTestClient(t, srv.URL, func(c *ClientConfig) { c.Rand = func() float64 { return tc.r } })
			_, err := c.FetchEvent(t.Context(), testRaceID)
			require.NoError(t, err)
			require.Equal(t, tc.want, rec.got())
		})
	}

	t.Run("random stays within ±20%", func(t *testing.T) {
		t.Parallel()
		c, _ := newTestClient(t, "http://unused.invalid", func(c *ClientConfig) { c.Rand = nil })
		for n, base := range []time.Duration{100, 200, 400} {
			base *= time.Millisecond
			for range 200 {
				d := c.backoff(n + 1)
				require.GreaterOrEqual(t, d, base*8/10)
				require.LessOrEqual(t, d, base*12/10)
			}
		}
	})

	t.Run("capped at MaxBackoff", func(t *testing.T) {
		t.Parallel()
		c, _ := newTestClient(t, "http://unused.invalid", func(c *ClientConfig) {
			c.Rand = func() float64 { return 0.99 }
			c.MaxBackoff = 300 * time.Millisecond
		})
		require.Equal(t, 300*time.Millisecond, c.backoff(3))
		require.Equal(t, 300*time.Millisecond, c.backoff(40))
	})
}

func TestFetchEventGivesUpAfterMaxRetriesAsTemporary(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	srv, h := serve(t, status(503, long))
	c, rec := newTestClient(t, srv.URL, nil)

	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.Error(t, err)
	require.True(t, IsTemporary(err))
	var fe *FetchError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, 4, fe.Attempts)
	require.Equal(t, 503, fe.StatusCode)
	require.Equal(t, testRaceID, fe.RaceID)
	require.Equal(t, int32(4), h.calls.Load())
	require.Len(t, rec.got(), 3)
	var se *StatusError
	require.True(t, errors.As(err, &se))
	require.Len(t, se.BodyExcerpt, 200)
	require.NotContains(t, err.Error(), strings.Repeat("x", 201))
}

func TestFetchEventHonoursRetryAfterOn429(t *testing.T) {
	t.Parallel()
	retryAfter := func(v string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", v)
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}
	cases := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{"seconds", "2", 2 * time.Second},
		{"HTTP date", testNow.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second},
		{"shorter than backoff keeps backoff", "0", 100 * time.Millisecond},
		{"date in the past keeps backoff", testNow.Add(-time.Hour).Format(http.TimeFormat), 100 * time.Millisecond},
		{"garbage keeps backoff", "soon", 100 * time.Millisecond},
		{"at the cap", "10", 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, retryAfter(tc.value), okBody(eventBody(t, nil)))
			c, rec := newTestClient(t, srv.URL, nil)
			f, err := c.FetchEvent(t.Context(), testRaceID)
			require.NoError(t, err)
			require.Equal(t, 2, f.Attempts)
			require.Equal(t, int32(2), h.calls.Load())
			require.Equal(t, []time.Duration{tc.want}, rec.got())
		})
	}
}

func TestFetchEventDoesNotRetryClientErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 401, 403, 410, 422} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, status(code, `{"error":"nope"}`))
			c, rec := newTestClient(t, srv.URL, nil)
			_, err := c.FetchEvent(t.Context(), testRaceID)
			var fe *FetchError
			require.True(t, errors.As(err, &fe))
			require.Equal(t, 1, fe.Attempts)
			require.Equal(t, code, fe.StatusCode)
			require.False(t, fe.Temporary)
			require.False(t, IsTemporary(err))
			require.NotErrorIs(t, err, ErrRaceNotFound)
			require.Contains(t, err.Error(), `(body: {"error":"nope"})`)
			require.Equal(t, int32(1), h.calls.Load())
			require.Empty(t, rec.got())
		})
	}
}

func TestFetchEvent404IsRaceNotFound(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, status(404, "no such event"))
	c, _ := newTestClient(t, srv.URL, nil)
	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.ErrorIs(t, err, ErrRaceNotFound)
	require.False(t, IsTemporary(err))
	var fe *FetchError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, 1, fe.Attempts)
	require.Equal(t, 404, fe.StatusCode)
	require.Equal(t, int32(1), h.calls.Load())
}

func TestFetchEventRetriesAttemptTimeouts(t *testing.T) {
	t.Parallel()
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	srv, h := serve(t, hang, hang, okBody(eventBody(t, nil)))
	c, rec := newTestClient(t, srv.URL, func(c *ClientConfig) { c.Timeout = 50 * time.Millisecond })

	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, 3, f.Attempts)
	require.Equal(t, int32(3), h.calls.Load())
	require.Len(t, rec.got(), 2)
}

func TestFetchEventTimeoutsExhaustedAreTemporary(t *testing.T) {
	t.Parallel()
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	srv, _ := serve(t, hang)
	c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) {
		c.Timeout = 20 * time.Millisecond
		c.MaxRetries = 1
	})
	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.True(t, IsTemporary(err))
	require.ErrorContains(t, err, "attempt timed out after 20ms")
	var fe *FetchError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, 2, fe.Attempts)
	require.Equal(t, 0, fe.StatusCode)
}

func TestFetchEventTimesOutWhileReadingASlowBody(t *testing.T) {
	t.Parallel()
	slowBody := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte(`{"data":`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	srv, h := serve(t, slowBody, okBody(eventBody(t, nil)))
	c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) { c.Timeout = 50 * time.Millisecond })
	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, 2, f.Attempts)
	require.Equal(t, int32(2), h.calls.Load())
}

func TestFetchEventRetriesDroppedConnections(t *testing.T) {
	t.Parallel()
	drop := func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
	srv, h := serve(t, drop, okBody(eventBody(t, nil)))
	c, rec := newTestClient(t, srv.URL, nil)
	f, err := c.FetchEvent(t.Context(), testRaceID)
	require.NoError(t, err)
	require.Equal(t, 2, f.Attempts)
	require.Equal(t, int32(2), h.calls.Load())
	require.Equal(t, []time.Duration{100 * time.Millisecond}, rec.got())
}

func TestFetchEventCancelledDuringBackoffReturnsPromptly(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, status(503, ""))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	entered := make(chan struct{})
	c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) {
		c.BaseBackoff = time.Hour // only cancellation can end this wait
		c.MaxBackoff = time.Hour
		c.TotalTimeout = 2 * time.Hour
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			close(entered)
			return sleepCtx(ctx, d) // the default sleep
		}
	})

	done := make(chan error, 1)
	go func() {
		_, err := c.FetchEvent(ctx, testRaceID)
		done <- err
	}()
	<-entered
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("FetchEvent did not return after cancellation (deadlock guard)")
	}
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, IsTemporary(err))
	var fe *FetchError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, 1, fe.Attempts)
	require.Equal(t, int32(1), h.calls.Load())
}

func TestFetchEventCancelledDuringRequestStopsWithoutRetry(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	srv, h := serve(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, rec := newTestClient(t, srv.URL, func(c *ClientConfig) { c.Timeout = time.Hour })
	go func() {
		<-arrived
		cancel()
	}()
	_, err := c.FetchEvent(ctx, testRaceID)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, IsTemporary(err))
	require.Equal(t, int32(1), h.calls.Load())
	require.Empty(t, rec.got())
}

func TestFetchEventAlreadyCancelledMakesNoRetry(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, okBody(eventBody(t, nil)))
	c, rec := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.FetchEvent(ctx, testRaceID)
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, rec.got())
}

func TestFetchEventBadPayloadsArePermanent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		body  []byte
		check func(t *testing.T, err error)
	}{
		{"malformed JSON", []byte(`{"data":`), func(t *testing.T, err error) {
			var de *DecodeError
			require.True(t, errors.As(err, &de))
		}},
		{"invalid runner", eventBody(t, func(m obj) { runnerOf(m, 0)["runner_number"] = 0 }), func(t *testing.T, err error) {
			var ve *ValidationError
			require.True(t, errors.As(err, &ve))
			require.Equal(t, "data.runners[0].runner_number", ve.Field)
		}},
		{"unknown status", eventBody(t, func(m obj) { raceOf(m)["status"] = "Delayed" }), func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrUnknownStatus)
		}},
		{"another race", eventBody(t, func(m obj) { raceOf(m)["event_id"] = "someone-else" }), func(t *testing.T, err error) {
			var ve *ValidationError
			require.True(t, errors.As(err, &ve))
			require.Equal(t, "data.race.event_id", ve.Field)
			require.Equal(t, "someone-else", ve.RaceID)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, okBody(tc.body))
			c, rec := newTestClient(t, srv.URL, nil)
			_, err := c.FetchEvent(t.Context(), testRaceID)
			var fe *FetchError
			require.True(t, errors.As(err, &fe))
			require.False(t, fe.Temporary)
			require.Equal(t, 1, fe.Attempts)
			require.Equal(t, 200, fe.StatusCode)
			require.Equal(t, int32(1), h.calls.Load())
			require.Empty(t, rec.got())
			tc.check(t, err)
		})
	}
}

func TestFetchEventBodyTooLargeIsPermanent(t *testing.T) {
	t.Parallel()
	big := eventBody(t, func(m obj) { raceOf(m)["comment"] = strings.Repeat("z", 4096) })
	cases := []struct {
		name        string
		handler     http.HandlerFunc
		wantAnnounc int64
	}{
		{"announced by Content-Length", okBody(big), int64(len(big))},
		{"streamed without length", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(big[:100])
			w.(http.Flusher).Flush() // forces chunked encoding: no Content-Length
			_, _ = w.Write(big[100:])
		}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, tc.handler)
			c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) { c.MaxBodyBytes = 1024 })
			_, err := c.FetchEvent(t.Context(), testRaceID)
			var tl *BodyTooLargeError
			require.True(t, errors.As(err, &tl), "got %T: %v", err, err)
			require.Equal(t, int64(1024), tl.Limit)
			require.Equal(t, tc.wantAnnounc, tl.ContentLength)
			require.False(t, IsTemporary(err))
			require.Equal(t, int32(1), h.calls.Load())
		})
	}

	t.Run("exactly at the limit is fine", func(t *testing.T) {
		t.Parallel()
		body := eventBody(t, nil)
		srv, _ := serve(t, okBody(body))
		c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) { c.MaxBodyBytes = int64(len(body)) })
		_, err := c.FetchEvent(t.Context(), testRaceID)
		require.NoError(t, err)
	})
}

func TestFetchEventNoRetriesWhenDisabled(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, status(500, ""))
	c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) { c.MaxRetries = -1 })
	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.True(t, IsTemporary(err))
	require.Equal(t, int32(1), h.calls.Load())
}

func TestFetchErrorURLHidesUserInfo(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, status(400, ""))
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
	c, _ := newTestClient(t, u, nil)
	_, err := c.FetchEvent(t.Context(), testRaceID)
	var fe *FetchError
	require.True(t, errors.As(err, &fe))
	require.NotContains(t, fe.URL, "s3cret")
	require.NotContains(t, err.Error(), "s3cret")
}

// meetingsPage builds a meetings body with ids prefix0..prefix(n-1) followed
// by extra raw elements. It may run on a server goroutine, so it must not
// call t.FailNow; the values always marshal.
func meetingsPage(prefix string, n int, extra ...any) []byte {
	ms := make([]any, 0, n+len(extra))
	for i := range n {
		ms = append(ms, obj{"meeting": fmt.Sprintf("%s%d", prefix, i), "name": "M", "date": "2025-07-17T00:00:00Z",
			"country": "NZ", "category": "T", "track_condition": nil})
	}
	ms = append(ms, extra...)
	b, err := json.Marshal(obj{"header": obj{"title": "Race Meetings " + prefix}, "data": obj{"meetings": ms}})
	if err != nil {
		panic(err)
	}
	return b
}

func TestFetchMeetingsRequestsOneDay(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "meetings-list-response.json")
	var q []string
	var mu sync.Mutex
	srv, h := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		q = append(q, r.URL.Path+"?"+r.URL.RawQuery+" From="+r.Header.Get("From"))
		mu.Unlock()
		okBody(body)(w, r)
	})
	c, _ := newTestClient(t, srv.URL, nil)

	list, err := c.FetchMeetings(t.Context(), "2025-07-17")
	require.NoError(t, err)
	require.Len(t, list.Meetings, 76)
	require.Empty(t, list.Skipped)
	require.Equal(t, "Race Meetings", list.Header.Title)
	require.Equal(t, int32(1), h.calls.Load(), "76 < 100 meetings: no second page")
	require.Equal(t, []string{"/racing/meetings?date_from=2025-07-17&date_to=2025-07-17&limit=100&offset=0 From=ops@example.org"}, q)
}

func TestFetchMeetingsFollowsPaginationUntilAShortPage(t *testing.T) {
	t.Parallel()
	pages := map[string][]byte{
		"0":   meetingsPage("a", 99, nil), // 99 good + 1 null = a full page
		"100": meetingsPage("b", 100),
		"200": meetingsPage("c", 5),
	}
	var offsets []string
	var mu sync.Mutex
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		off := r.URL.Query().Get("offset")
		mu.Lock()
		offsets = append(offsets, r.URL.Query().Get("limit")+"/"+off)
		mu.Unlock()
		okBody(pages[off])(w, r)
	})
	c, _ := newTestClient(t, srv.URL, nil)

	list, err := c.FetchMeetings(t.Context(), "2025-07-17")
	require.NoError(t, err)
	require.Equal(t, []string{"100/0", "100/100", "100/200"}, offsets)
	require.Len(t, list.Meetings, 204)
	require.Equal(t, "Race Meetings a", list.Header.Title)
	require.Len(t, list.Skipped, 1)
	require.Equal(t, 99, list.Skipped[0].Index)
	require.Equal(t, "c4", list.Meetings[203].Meeting)
	require.Equal(t, [][]byte{pages["0"], pages["100"], pages["200"]}, list.Pages, "every page's raw body, in order")
}

func TestFetchMeetingsStopsWhenServerIgnoresOffset(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, okBody(meetingsPage("same", 99, nil)))
	c, _ := newTestClient(t, srv.URL, nil)
	list, err := c.FetchMeetings(t.Context(), "2025-07-17")
	require.NoError(t, err)
	require.Len(t, list.Meetings, 99)
	require.Len(t, list.Skipped, 1, "the repeated page's skip is not reported twice")
	require.Equal(t, int32(2), h.calls.Load(), "the second, identical page ends the loop")
	require.Len(t, list.Pages, 1, "the repeated page added nothing and is not kept")
}

func TestFetchMeetingsRefusesEndlessPagination(t *testing.T) {
	t.Parallel()
	var page atomic.Int32
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		okBody(meetingsPage(fmt.Sprintf("p%d-", page.Add(1)), 100))(w, r)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	_, err := c.FetchMeetings(t.Context(), "2025-07-17")
	require.ErrorContains(t, err, "more than 50 full pages")
	require.False(t, IsTemporary(err))
	require.Equal(t, int32(50), page.Load())
}

func TestFetchMeetingsErrors(t *testing.T) {
	t.Parallel()
	t.Run("bad day is rejected before any request", func(t *testing.T) {
		t.Parallel()
		srv, h := serve(t, okBody(meetingsPage("x", 1)))
		c, _ := newTestClient(t, srv.URL, nil)
		_, err := c.FetchMeetings(t.Context(), "17/07/2025")
		require.ErrorContains(t, err, "YYYY-MM-DD")
		require.Equal(t, int32(0), h.calls.Load())
	})
	t.Run("malformed body is permanent", func(t *testing.T) {
		t.Parallel()
		srv, h := serve(t, okBody([]byte(`{"data":{"meetings":{}}}`)))
		c, _ := newTestClient(t, srv.URL, nil)
		_, err := c.FetchMeetings(t.Context(), "2025-07-17")
		var de *DecodeError
		require.True(t, errors.As(err, &de))
		require.False(t, IsTemporary(err))
		require.Equal(t, int32(1), h.calls.Load())
	})
	t.Run("404 is not ErrRaceNotFound", func(t *testing.T) {
		t.Parallel()
		srv, _ := serve(t, status(404, ""))
		c, _ := newTestClient(t, srv.URL, nil)
		_, err := c.FetchMeetings(t.Context(), "2025-07-17")
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrRaceNotFound)
		require.False(t, IsTemporary(err))
	})
	t.Run("server errors are retried", func(t *testing.T) {
		t.Parallel()
		srv, h := serve(t, status(502, ""), okBody(meetingsPage("x", 3)))
		c, rec := newTestClient(t, srv.URL, nil)
		list, err := c.FetchMeetings(t.Context(), "2025-07-17")
		require.NoError(t, err)
		require.Len(t, list.Meetings, 3)
		require.Equal(t, int32(2), h.calls.Load())
		require.Len(t, rec.got(), 1)
	})
}
