package nztab

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFetchEventRefusesIDsThatAreNotAPIIDsWithoutARequest(t *testing.T) {
	t.Parallel()
	for name, id := range map[string]string{
		"empty":           "",
		"blank":           " ",
		"slash and query": "a/b?c",
		"dot":             ".",
		"dot dot":         "..",
		"newline":         "abc\ndef",
		"NUL":             "abc\x00",
		"10 kB":           strings.Repeat("a", 10<<10),
		"65 bytes":        strings.Repeat("a", 65),
		"leading dash":    "-abc",
		"percent":         "a%2Fb",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, okBody(eventBody(t, nil)))
			c, _ := newTestClient(t, srv.URL, nil)
			_, err := c.FetchEvent(t.Context(), id)
			var fe *FetchError
			require.ErrorAs(t, err, &fe)
			require.Zero(t, fe.Attempts)
			require.False(t, fe.Temporary)
			require.ErrorIs(t, err, ErrInvalidID)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "race_id", ve.Field)
			require.NotContains(t, err.Error(), "\n", "the id is quoted in the message")
			require.Less(t, len(err.Error()), 1000, "the message stays bounded")
			require.Zero(t, h.calls.Load())
		})
	}
}

func TestValidIDAcceptsAPIAndReadableIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{testRaceID, "NZ-AWA-20250717", "race-1", "e1", "A_b-9", strings.Repeat("a", 64)} {
		require.True(t, ValidID(id), id)
	}
}

func TestFetchEventEndsAtOnceWhenRetryAfterIsTooLongOrDoesNotFitTheBudget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		retryAfter string
		budget     time.Duration
		want       error
	}{
		{"beyond MaxRetryAfter", "11", 0, ErrRetryAfterTooLong},
		{"an hour", "3600", 0, ErrRetryAfterTooLong},
		{"beyond the duration range", "99999999999999999999", 0, ErrRetryAfterTooLong},
		{"a date far ahead", testNow.Add(48 * time.Hour).Format(http.TimeFormat), 0, ErrRetryAfterTooLong},
		{"within the cap but not the budget", "8", 5 * time.Second, ErrFetchBudget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			c, rec := newTestClient(t, srv.URL, func(c *ClientConfig) { c.TotalTimeout = tc.budget })
			_, err := c.FetchEvent(t.Context(), testRaceID)
			require.ErrorIs(t, err, tc.want)
			require.True(t, IsTemporary(err), "rate limited: the next poll is the retry")
			require.Contains(t, err.Error(), "(1 attempt, temporary)")
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, http.StatusTooManyRequests, se.StatusCode)
			require.Equal(t, int32(1), h.calls.Load())
			require.Empty(t, rec.got(), "no wait is started")
		})
	}
}

func TestFetchEventEndsWhenItsTotalBudgetIsSpent(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c, _ := newTestClient(t, srv.URL, func(c *ClientConfig) {
		c.Timeout = time.Hour // only the budget can end the attempt
		c.TotalTimeout = 100 * time.Millisecond
	})
	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.ErrorIs(t, err, ErrFetchBudget)
	require.True(t, IsTemporary(err))
	require.Contains(t, err.Error(), "temporary")
	require.Equal(t, int32(1), h.calls.Load())
}

func TestFetchEventBackoffThatDoesNotFitTheBudgetEndsTheFetch(t *testing.T) {
	t.Parallel()
	srv, h := serve(t, status(503, ""))
	c, rec := newTestClient(t, srv.URL, func(c *ClientConfig) {
		c.BaseBackoff = time.Minute
		c.MaxBackoff = time.Minute
	})
	_, err := c.FetchEvent(t.Context(), testRaceID)
	require.ErrorIs(t, err, ErrFetchBudget)
	require.True(t, IsTemporary(err))
	require.Equal(t, int32(1), h.calls.Load())
	require.Empty(t, rec.got())
}

func TestFetchEventFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int32
	var mine sync.Map // tokens of this test's servers, which its clients send
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fromTestClient(w, r) {
			return
		}
		if _, ok := mine.Load(r.Header.Get(testServerHeader)); !ok {
			http.Error(w, "a request of another test's client", http.StatusMisdirectedRequest)
			return
		}
		elsewhere.Add(1)
		okBody(eventBody(t, nil))(w, r)
	}))
	t.Cleanup(other.Close)
	redirect := func(code int, loc string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if loc != "" {
				w.Header().Set("Location", strings.ReplaceAll(loc, "SELF", r.URL.String()))
			}
			w.WriteHeader(code)
		}
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc
		wantLoc string
	}{
		{"to another host", redirect(http.StatusFound, other.URL+"/racing/events/x"), other.URL + "/racing/events/x"},
		{"permanent to another host", redirect(http.StatusPermanentRedirect, other.URL), other.URL},
		{"to itself (a loop)", redirect(http.StatusTemporaryRedirect, "SELF"), "/racing/events/"},
		{"to a file", redirect(http.StatusMovedPermanently, "file:///etc/passwd"), "file:///etc/passwd"},
		{"with credentials", redirect(http.StatusFound, "http://u:secret@example.invalid/"), "http://u:xxxxx@example.invalid/"},
		{"without a Location", redirect(http.StatusFound, ""), ""},
		{"with an unparsable Location", redirect(http.StatusFound, "http://[::1"), "http://[::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, h := serve(t, tc.handler)
			mine.Store(h.token, true)
			c, rec := newTestClient(t, srv.URL, nil)
			_, err := c.FetchEvent(t.Context(), testRaceID)
			var re *RedirectError
			require.ErrorAs(t, err, &re)
			require.Contains(t, re.Location, tc.wantLoc)
			require.NotContains(t, err.Error(), "secret")
			require.False(t, IsTemporary(err), "a redirect is permanent")
			require.Contains(t, err.Error(), "permanent")
			require.Equal(t, int32(1), h.calls.Load())
			require.Empty(t, rec.got(), "not retried")
		})
	}
	require.Zero(t, elsewhere.Load(), "no request reached the other host")
}

func TestFetchErrorOfAnEndedCallerContextSaysInterrupted(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, okBody(eventBody(t, nil)))
	c, _ := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.FetchEvent(ctx, testRaceID)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "interrupted")
	require.NotContains(t, err.Error(), "permanent")
}
