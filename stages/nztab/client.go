package nztab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of ClientConfig. The retry numbers follow docs/DOMAIN.md §1.5, with
// the "max 3 retries" the requirements asked for (the reference code only
// ever made 3 attempts in total).
const (
	// DefaultBaseURL is the production Affiliates API, version path included.
	DefaultBaseURL = "https://api.tab.co.nz/affiliates/v1"
	// DefaultUserAgent identifies raceflow when the caller sets none.
	DefaultUserAgent = "raceflow/1.0"
	// DefaultTimeout bounds one attempt; TAB answers in well under a second.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxBodyBytes is ~10× the largest real event payload seen
	// (410 KB): a body is read into memory and decoded whole, so the cap is
	// what bounds a fetch's memory.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxRetries is the number of retries after the first attempt.
	DefaultMaxRetries = 3
	// DefaultBaseBackoff is the first wait; waits double: 100, 200, 400 ms.
	DefaultBaseBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the exponential wait.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultJitter spreads waits by ±20%.
	DefaultJitter = 0.2
	// DefaultMaxRetryAfter is the longest Retry-After a fetch waits out; a
	// server asking for longer ends the fetch at once (the data would be
	// stale, and the next poll is the retry).
	DefaultMaxRetryAfter = 10 * time.Second
	// DefaultTotalTimeout bounds a whole fetch, every attempt and wait
	// included. It is well under the flow's 60 s ack deadline, so a fetch
	// ends on its own, as "skipped", before the deadline redelivers it.
	DefaultTotalTimeout = 20 * time.Second
	// MeetingsPageSize is the limit sent with every meetings request; a page
	// that comes back full triggers a request for the next one.
	MeetingsPageSize = 100
)

const (
	// maxMeetingPages bounds pagination: a real day has under 100 meetings,
	// so this many full pages means a misbehaving server.
	maxMeetingPages = 50
	// drainLimit is how much of an unwanted body is read so the connection
	// can be reused.
	drainLimit = 64 << 10
)

// ClientConfig configures a Client. Zero values select the defaults; see each
// field.
type ClientConfig struct {
	// BaseURL includes the version path; default DefaultBaseURL.
	BaseURL string
	// FromEmail, PartnerName and PartnerID identify the caller to TAB (the
	// From, X-Partner and X-Partner-ID headers). The API has no key; TAB
	// throttles or blocks callers that do not identify themselves, so all
	// three are required.
	FromEmail   string
	PartnerName string
	PartnerID   string
	// UserAgent defaults to DefaultUserAgent.
	UserAgent string
	// Timeout bounds one attempt, including reading the body; default 5s.
	// TotalTimeout cuts it short when less of the fetch's budget is left.
	Timeout time.Duration
	// TotalTimeout bounds a whole fetch: every attempt, backoff and
	// Retry-After wait. When the budget is spent, or a wait would not fit
	// in what is left, the fetch ends at once with a temporary *FetchError
	// matching ErrFetchBudget. Default 20s; keep it below the caller's own
	// deadline (the flow's ack deadline).
	TotalTimeout time.Duration
	// MaxBodyBytes bounds a response body; default 4 MiB.
	MaxBodyBytes int64
	// MaxRetries is the number of retries after the first attempt; 0 selects
	// DefaultMaxRetries and a negative value disables retrying.
	MaxRetries int
	// BaseBackoff is the wait before the first retry; it doubles per retry.
	// Default 100ms.
	BaseBackoff time.Duration
	// MaxBackoff caps the exponential backoff (after jitter); default 5s.
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out before
	// retrying; a longer one ends the fetch at once with a temporary
	// *FetchError matching ErrRetryAfterTooLong. Default 10s.
	MaxRetryAfter time.Duration
	// Jitter spreads each backoff uniformly by ±Jitter (0.2 = ±20%) so many
	// races failing together do not retry in lock step. 0 selects
	// DefaultJitter; a negative value disables jitter.
	Jitter float64
	// HTTPClient sends the requests; default a new client on the default
	// transport. Its own Timeout, if any, applies on top of Timeout. The
	// Client uses a copy whose CheckRedirect follows no redirect: see
	// RedirectError.
	HTTPClient *http.Client
	// Rand returns a number in [0, 1) for jitter; default math/rand/v2.
	Rand func() float64
	// Sleep waits d or until ctx is done, returning ctx.Err() in the latter
	// case; default a timer. Tests inject it to observe backoff.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock for Fetched.ObservedAt and Retry-After dates; default
	// time.Now.
	Now func() time.Time
}

// withDefaults returns c with every zero field set to its default.
func (c ClientConfig) withDefaults() ClientConfig {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.TotalTimeout == 0 {
		c.TotalTimeout = DefaultTotalTimeout
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultJitter
	case c.Jitter < 0:
		c.Jitter = 0
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first bad field of c after defaults are applied, by
// its Go name.
func (c ClientConfig) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("nztab: ClientConfig.BaseURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("nztab: ClientConfig.BaseURL: must be an absolute http(s) URL, got %q", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("nztab: ClientConfig.BaseURL: must not carry a query or fragment")
	}
	for _, f := range [...]struct{ name, v string }{
		{"FromEmail", c.FromEmail},
		{"PartnerName", c.PartnerName},
		{"PartnerID", c.PartnerID},
		{"UserAgent", c.UserAgent},
	} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("nztab: ClientConfig.%s: must be set (TAB requires callers to identify themselves)", f.name)
		}
		if strings.ContainsAny(f.v, "\r\n\x00") {
			return fmt.Errorf("nztab: ClientConfig.%s: must not contain control characters", f.name)
		}
	}
	if !strings.Contains(c.FromEmail, "@") {
		return fmt.Errorf("nztab: ClientConfig.FromEmail: must be an e-mail address")
	}
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("nztab: ClientConfig.Timeout: must be positive, got %s", c.Timeout)
	case c.TotalTimeout < 0:
		return fmt.Errorf("nztab: ClientConfig.TotalTimeout: must be positive, got %s", c.TotalTimeout)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("nztab: ClientConfig.MaxBodyBytes: must be positive, got %d", c.MaxBodyBytes)
	case c.BaseBackoff < 0:
		return fmt.Errorf("nztab: ClientConfig.BaseBackoff: must be positive, got %s", c.BaseBackoff)
	case c.MaxBackoff < c.BaseBackoff:
		return fmt.Errorf("nztab: ClientConfig.MaxBackoff: must be at least BaseBackoff (%s), got %s", c.BaseBackoff, c.MaxBackoff)
	case c.MaxRetryAfter < 0:
		return fmt.Errorf("nztab: ClientConfig.MaxRetryAfter: must be positive, got %s", c.MaxRetryAfter)
	case c.Jitter >= 1 || math.IsNaN(c.Jitter):
		return fmt.Errorf("nztab: ClientConfig.Jitter: must be below 1, got %g", c.Jitter)
	}
	return nil
}

// Client fetches NZ TAB payloads with per-attempt timeouts and retries of
// transient failures. It never logs: every outcome is a return value. It is
// safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	http *http.Client // a copy of cfg.HTTPClient that follows no redirect
	base string       // BaseURL without trailing slash
}

// NewClient validates cfg, applies its defaults and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// The API answers at a fixed, versioned URL and never redirects. A
	// redirect means a wrong base URL or a hostile answer: following it
	// would send the partner headers elsewhere (or loop), so the transport
	// turns every 3xx into a *RedirectError before http.Client's redirect
	// handling sees it, unparsable Location headers included.
	hc := *cfg.HTTPClient
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = refuseRedirects{rt}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{cfg: cfg, http: &hc, base: strings.TrimRight(cfg.BaseURL, "/")}, nil
}

// Fetched is one successful race-event fetch.
type Fetched struct {
	// Body is the raw response body exactly as received; downstream stores it
	// for replay.
	Body []byte
	// Event is Body decoded and validated, so callers need not decode twice.
	Event *EventResponse
	// ObservedAt is when the successful response had been read in full.
	ObservedAt time.Time
	// GeneratedAt is header.generated_time, zero when absent or unparsable.
	GeneratedAt time.Time
	// Attempts is how many requests it took, the successful one included.
	Attempts int
}

// FetchEvent fetches GET {base}/racing/events/{raceID} with the money
// tracker, tote trends and will-pays, and validates it with DecodeEvent
// (checking too that it describes the requested race). Every failure is a
// *FetchError; a 404 also matches ErrRaceNotFound. A race id without the
// API's id shape (ValidID) is refused before any request, as a permanent
// *FetchError wrapping a *ValidationError that matches ErrInvalidID.
func (c *Client) FetchEvent(ctx context.Context, raceID string) (*Fetched, error) {
	if err := ValidateRaceID(raceID); err != nil {
		return nil, &FetchError{RaceID: fmt.Sprintf("%q", excerpt(raceID)),
			URL: redact(c.endpoint("racing/events/{id}", nil)), Err: err}
	}
	// PathEscape is a no-op on a valid id; it stays as a second guard.
	u := c.endpoint("racing/events/"+url.PathEscape(raceID), url.Values{
		"with_money_tracker":    {"true"},
		"with_tote_trends_data": {"true"},
		"with_will_pays":        {"true"},
	})
	var ev *EventResponse
	res, err := c.get(ctx, u, raceID, func(body []byte) error {
		e, err := DecodeEvent(body)
		if err != nil {
			return err
		}
		if got := e.Data.Race.RaceID(); !strings.EqualFold(got, raceID) {
			return &ValidationError{RaceID: got, Field: "data.race.event_id",
				Reason: fmt.Sprintf("does not match the requested race %q", excerpt(raceID))}
		}
		ev = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Fetched{
		Body:        res.body,
		Event:       ev,
		ObservedAt:  res.at,
		GeneratedAt: ev.Header.GeneratedAt(),
		Attempts:    res.attempts,
	}, nil
}

// FetchMeetings fetches every meeting of one NZ racing day (YYYY-MM-DD),
// following limit/offset pagination while pages come back full. Bad meetings
// are reported in MeetingsList.Skipped, with indices counted across pages.
// Every failure is a *FetchError.
func (c *Client) FetchMeetings(ctx context.Context, day string) (MeetingsList, error) {
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return MeetingsList{}, &FetchError{URL: redact(c.endpoint("racing/meetings", nil)),
			Err: fmt.Errorf("day must be YYYY-MM-DD, got %q: %w", excerpt(day), err)}
	}
	var out MeetingsList
	seen := make(map[string]bool)
	for page := 0; ; page++ {
		offset := page * MeetingsPageSize
		u := c.endpoint("racing/meetings", url.Values{
			"date_from": {day},
			"date_to":   {day},
			"limit":     {strconv.Itoa(MeetingsPageSize)},
			"offset":    {strconv.Itoa(offset)},
		})
		if page == maxMeetingPages {
			return MeetingsList{}, &FetchError{URL: redact(u),
				Err: fmt.Errorf("more than %d full pages of meetings; refusing to paginate further", maxMeetingPages)}
		}
		var list MeetingsList
		var n int
		res, err := c.get(ctx, u, "", func(body []byte) error {
			var err error
			list, n, err = decodeMeetingsCounted(body, offset)
			return err
		})
		if err != nil {
			return MeetingsList{}, err
		}
		if page == 0 {
			out.Header = list.Header
		}
		fresh := 0
		for _, m := range list.Meetings {
			if !seen[m.Meeting] {
				seen[m.Meeting] = true
				out.Meetings = append(out.Meetings, m)
				fresh++
			}
		}
		// A later page with no new meeting is the server ignoring offset and
		// repeating itself: its skips are repeats too, and asking for more
		// would loop.
		if page > 0 && fresh == 0 {
			break
		}
		out.Skipped = append(out.Skipped, list.Skipped...)
		out.Pages = append(out.Pages, res.body)
		if n < MeetingsPageSize {
			break // a short page is the last
		}
	}
	return out, nil
}

// decodeMeetingsCounted decodes one page and also returns how many elements
// it held, valid or not, which decides whether another page follows.
func decodeMeetingsCounted(body []byte, offset int) (MeetingsList, int, error) {
	list, err := decodeMeetingsPage(body, offset)
	if err != nil {
		return MeetingsList{}, 0, err
	}
	return list, len(list.Meetings) + len(list.Skipped), nil
}

// endpoint joins an already escaped path and a query onto the base URL.
func (c *Client) endpoint(escapedPath string, q url.Values) string {
	s := c.base + "/" + escapedPath
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// result is a successful GET.
type result struct {
	body     []byte
	at       time.Time
	attempts int
}

// attemptError is the classified failure of one attempt.
type attemptError struct {
	err        error
	status     int
	transient  bool
	retryAfter time.Duration // from Retry-After, 0 when absent
}

// get performs the GET with retries, all within TotalTimeout. accept decodes
// and validates a 2xx body; its error is permanent.
func (c *Client) get(ctx context.Context, rawURL, raceID string, accept func([]byte) error) (result, error) {
	safeURL := redact(rawURL)
	fail := func(attempts int, ae attemptError, temporary bool, err error) error {
		return &FetchError{RaceID: raceID, URL: safeURL, Attempts: attempts, StatusCode: ae.status, Temporary: temporary, Err: err}
	}
	// The budget runs on the real clock, not cfg.Now: it guards the
	// caller's real deadline whatever clock the payloads are timed by.
	bctx, cancel := context.WithTimeout(ctx, c.cfg.TotalTimeout)
	defer cancel()
	deadline, _ := bctx.Deadline()
	spent := func(attempts int, ae attemptError) error {
		return fail(attempts, ae, true, fmt.Errorf("%w (%s, %d attempts): %w", ErrFetchBudget, c.cfg.TotalTimeout, attempts, ae.err))
	}
	for attempt := 1; ; attempt++ {
		body, at, ae := c.attempt(bctx, rawURL, raceID)
		if ae.err == nil {
			if err := accept(body); err != nil {
				return result{}, fail(attempt, attemptError{status: ae.status}, false, err)
			}
			return result{body: body, at: at, attempts: attempt}, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return result{}, fail(attempt, ae, false, fmt.Errorf("%w (during attempt %d: %v)", ctxErr, attempt, ae.err))
		}
		if !ae.transient {
			return result{}, fail(attempt, ae, false, ae.err)
		}
		if bctx.Err() != nil {
			return result{}, spent(attempt, ae)
		}
		if attempt > c.cfg.MaxRetries {
			return result{}, fail(attempt, ae, true, ae.err)
		}
		// The server's Retry-After wins over our backoff when longer. One
		// we will not wait out ends the fetch now rather than park the
		// poll: the next poll is the retry.
		if ae.retryAfter > c.cfg.MaxRetryAfter {
			return result{}, fail(attempt, ae, true, fmt.Errorf("%w: the server asked for %s, more than %s: %w",
				ErrRetryAfterTooLong, ae.retryAfter, c.cfg.MaxRetryAfter, ae.err))
		}
		wait := max(c.backoff(attempt), ae.retryAfter)
		if left := time.Until(deadline); wait >= left {
			return result{}, fail(attempt, ae, true, fmt.Errorf("%w (%s): waiting %s to retry would not fit the %s left: %w",
				ErrFetchBudget, c.cfg.TotalTimeout, wait.Round(time.Millisecond), left.Round(time.Millisecond), ae.err))
		}
		if err := c.cfg.Sleep(bctx, wait); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return result{}, fail(attempt, ae, false, fmt.Errorf("%w (waiting to retry after: %v)", ctxErr, ae.err))
			}
			return result{}, spent(attempt, ae)
		}
	}
}

// backoff is the wait before retry number n (1-based): BaseBackoff·2^(n-1),
// spread by ±Jitter, capped at MaxBackoff.
func (c *Client) backoff(n int) time.Duration {
	d := float64(c.cfg.BaseBackoff) * math.Pow(2, float64(n-1))
	d *= 1 + c.cfg.Jitter*(2*c.cfg.Rand()-1)
	if d > float64(c.cfg.MaxBackoff) {
		return c.cfg.MaxBackoff
	}
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}

// attempt performs one request under the per-attempt timeout and classifies
// its outcome.
func (c *Client) attempt(ctx context.Context, rawURL, raceID string) ([]byte, time.Time, attemptError) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, time.Time{}, attemptError{err: err}
	}
	req.Header.Set("From", c.cfg.FromEmail)
	req.Header.Set("X-Partner", c.cfg.PartnerName)
	req.Header.Set("X-Partner-ID", c.cfg.PartnerID)
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")

	resp, err := c.http.Do(req)
	if re := (*RedirectError)(nil); errors.As(err, &re) {
		return nil, time.Time{}, attemptError{status: re.StatusCode, err: re}
	}
	if err != nil {
		return nil, time.Time{}, attemptError{err: c.transportError(actx, err), transient: true}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, time.Time{}, c.statusFailure(resp, raceID)
	}
	if resp.ContentLength > c.cfg.MaxBodyBytes {
		drain(resp.Body)
		return nil, time.Time{}, attemptError{status: resp.StatusCode,
			err: &BodyTooLargeError{Limit: c.cfg.MaxBodyBytes, ContentLength: resp.ContentLength}}
	}
	body, err := readBody(resp.Body, c.cfg.MaxBodyBytes, resp.ContentLength)
	if err != nil {
		return nil, time.Time{}, attemptError{status: resp.StatusCode, err: fmt.Errorf("reading body: %w", c.transportError(actx, err)), transient: true}
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return nil, time.Time{}, attemptError{status: resp.StatusCode,
			err: &BodyTooLargeError{Limit: c.cfg.MaxBodyBytes, ContentLength: -1}}
	}
	return body, c.cfg.Now(), attemptError{status: resp.StatusCode}
}

// readBody reads up to limit+1 bytes, into a buffer sized once from the
// response's declared length when it has one (io.ReadAll would grow it a
// dozen times for a race's few hundred kilobytes).
func readBody(r io.Reader, limit, declared int64) ([]byte, error) {
	var buf bytes.Buffer
	if declared > 0 {
		buf.Grow(int(min(declared, limit)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	return buf.Bytes(), err
}

// transportError says plainly when the per-attempt timeout fired, because
// the bare context.DeadlineExceeded would read like the caller's deadline.
func (c *Client) transportError(actx context.Context, err error) error {
	// The FetchError names the URL; the *url.Error would name it again.
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("attempt timed out after %s: %w", c.cfg.Timeout, err)
	}
	return err
}

// statusFailure classifies a non-2xx response: 429 and 5xx are transient,
// everything else is permanent; a 404 of an event is ErrRaceNotFound.
func (c *Client) statusFailure(resp *http.Response, raceID string) attemptError {
	buf := make([]byte, maxExcerpt)
	n, _ := io.ReadFull(resp.Body, buf)
	drain(resp.Body)
	se := &StatusError{StatusCode: resp.StatusCode, Status: resp.Status, BodyExcerpt: strings.ToValidUTF8(excerpt(string(buf[:n])), "")}
	ae := attemptError{err: se, status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		ae.transient = true
		ae.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now())
	case resp.StatusCode == http.StatusNotFound && raceID != "":
		ae.err = fmt.Errorf("%w: %w", ErrRaceNotFound, se)
	}
	return ae
}
