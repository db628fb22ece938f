package nztab

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// refuseRedirects answers every 3xx response with a *RedirectError.
type refuseRedirects struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t refuseRedirects) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode < 300 || resp.StatusCode > 399 {
		return resp, err
	}
	drain(resp.Body)
	_ = resp.Body.Close()
	return nil, &RedirectError{StatusCode: resp.StatusCode, Location: redactLocation(resp.Header.Get("Location"))}
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent,
// unparsable or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && v[0] != '-', err == nil && secs > int64(math.MaxInt64/time.Second):
		return time.Duration(math.MaxInt64) // longer than any wait: ends the fetch
	case err == nil && secs <= 0:
		return 0
	case err == nil:
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// redactLocation makes a Location header safe for an error: user info
// hidden, bounded in length, control characters quoted by the caller's %q.
func redactLocation(loc string) string {
	if loc == "" {
		return ""
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.Redacted()
	}
	return excerpt(loc)
}

// drain reads a bounded remainder of body so the connection can be reused.
func drain(body io.Reader) {
	_, _ = io.CopyN(io.Discard, body, drainLimit)
}

// redact hides any user info in a URL before it goes into an error.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
