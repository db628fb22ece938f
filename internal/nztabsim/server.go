package nztabsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nzday"
)

// apiPrefix is the real API's versioned path prefix; the simulator accepts
// paths with or without it.
const apiPrefix = "/affiliates/v1"

// Meetings list paging, as documented by the real API.
const (
	defaultMeetingsLimit = 100
	maxMeetingsLimit     = 200
)

// response is a rendered reply before any fault is applied.
type response struct {
	status int
	body   []byte
}

// ServeHTTP serves the simulated API: GET /racing/meetings,
// /racing/meetings/{id} and /racing/events/{id}, with or without the
// /affiliates/v1 prefix. Every other path is a JSON 404.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	path := r.URL.Path
	if path == apiPrefix || strings.HasPrefix(path, apiPrefix+"/") {
		path = path[len(apiPrefix):]
	}
	query := r.URL.Query()
	forced := r.Header.Get(FaultHeader)
	if v := query.Get(faultQueryParam); v != "" && forced == "" {
		forced = v
	}
	query.Del(faultQueryParam)
	canonical := apiPrefix + path
	if enc := query.Encode(); enc != "" {
		canonical += "?" + enc
	}

	var raceID string
	if id, ok := strings.CutPrefix(path, "/racing/events/"); ok && id != "" && !strings.Contains(id, "/") {
		raceID = id
		if c, ok := s.raceReqs[id]; ok {
			c.Add(1)
		}
	}

	kind, latency, err := s.chooseFault(forced, raceID)
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	now := s.clock.Now()
	if err != nil {
		s.write(w, response{http.StatusBadRequest, mustJSON(errorJSON("Bad Request", canonical, err.Error(), "BAD_REQUEST", now))})
		return
	}

	switch kind {
	case FaultTimeout:
		<-r.Context().Done()
		return
	case FaultServerError:
		s.write(w, response{http.StatusInternalServerError, mustJSON(errorJSON("Internal Server Error", canonical, "simulated upstream failure", "INTERNAL_ERROR", now))})
		return
	case FaultRateLimit:
		w.Header().Set("Retry-After", "1")
		s.write(w, response{http.StatusTooManyRequests, mustJSON(errorJSON("Too Many Requests", canonical, "rate limit exceeded", "RATE_LIMITED", now))})
		return
	case FaultNotFound:
		s.write(w, response{http.StatusNotFound, mustJSON(errorJSON("Not Found", canonical, "not found", "NOT_FOUND", now))})
		return
	}

	resp := s.route(r.Method, path, query, canonical, now)
	switch kind {
	case FaultMalformed:
		resp.body = corrupt(resp.body)
	case FaultTruncate:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
		w.WriteHeader(resp.status)
		// The short write and the declared length make net/http close the
		// connection: the client sees an unexpected EOF, like a dropped link.
		_, _ = w.Write(resp.body[:len(resp.body)/2])
		return
	}
	s.write(w, resp)
}

func (s *Sim) write(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// route renders the normal reply to a request at simulated instant now.
func (s *Sim) route(method, path string, q url.Values, canonical string, now time.Time) response {
	if method != http.MethodGet && method != http.MethodHead {
		return response{http.StatusMethodNotAllowed, mustJSON(errorJSON("Method Not Allowed", canonical, "only GET is supported", "METHOD_NOT_ALLOWED", now))}
	}
	switch {
	case path == "/racing/meetings" || path == "/racing/meetings/":
		return s.serveMeetings(q, canonical, now)
	case strings.HasPrefix(path, "/racing/meetings/"):
		return s.serveMeeting(strings.TrimPrefix(path, "/racing/meetings/"), canonical, now)
	case strings.HasPrefix(path, "/racing/events/"):
		id := strings.TrimPrefix(path, "/racing/events/")
		rc, ok := s.byID[id]
		if !ok {
			return response{http.StatusNotFound, mustJSON(errorJSON(eventTitle(id), canonical, fmt.Sprintf("event %q not found", id), "NOT_FOUND", now))}
		}
		body, err := s.renderEventURL(rc, q, canonical, now)
		if err != nil {
			return response{http.StatusInternalServerError, mustJSON(errorJSON(eventTitle(id), canonical, err.Error(), "INTERNAL_ERROR", now))}
		}
		return response{http.StatusOK, body}
	}
	return response{http.StatusNotFound, mustJSON(errorJSON("Not Found", canonical, fmt.Sprintf("no route for %s", path), "NOT_FOUND", now))}
}

// renderEvent renders an event body with the canonical URL for query q.
func (s *Sim) renderEvent(rc *race, q url.Values, at time.Time) ([]byte, error) {
	canonical := apiPrefix + "/racing/events/" + rc.id
	if enc := q.Encode(); enc != "" {
		canonical += "?" + enc
	}
	return s.renderEventURL(rc, q, canonical, at)
}

func (s *Sim) renderEventURL(rc *race, q url.Values, canonical string, at time.Time) ([]byte, error) {
	flag := func(name string) bool {
		v, err := strconv.ParseBool(q.Get(name))
		return err == nil && v
	}
	body := eventBody{
		Header: header{Title: eventTitle(rc.id), GeneratedTime: at.UTC().Format(time.RFC3339Nano), URL: canonical},
		Params: eventParams{
			Enc:               "json",
			ID:                rc.id,
			PresentOverlay:    flag("present_overlay"),
			WithBigBets:       flag("with_big_bets"),
			WithLiveBets:      flag("with_live_bets"),
			WithMoneyTracker:  flag("with_money_tracker"),
			WithBiggestBet:    flag("with_biggest_bet"),
			WillPays:          flag("with_will_pays") || flag("will_pays"),
			WithToteTrendData: flag("with_tote_trends_data"),
			BetTypeFilter:     q.Get("bet_type_filter"),
			BetsLimit:         10,
		},
		Data: s.eventData(rc, at, flag("with_money_tracker")),
	}
	return encodeJSON(body)
}

// serveMeetings answers GET /racing/meetings for the simulated day:
// date_from/date_to (YYYY-MM-DD or "today", default today) must cover it;
// country, category and ids filter; limit/offset page.
func (s *Sim) serveMeetings(q url.Values, canonical string, now time.Time) response {
	bad := func(msg string) response {
		return response{http.StatusBadRequest, mustJSON(errorJSON("Race Meetings", canonical, msg, "BAD_REQUEST", now))}
	}
	today := nzday.Of(now).String()
	params := meetingsParams{Enc: "json", Type: " ", Country: " "}
	dates := [2]string{}
	for i, name := range []string{"date_from", "date_to"} {
		v := q.Get(name)
		switch {
		case v == "" || v == "today":
			dates[i] = today
			if v == "" {
				// The real API echoes the defaulted instant, to the minute.
				v = now.UTC().Truncate(time.Minute).Format(time.RFC3339)
			} else {
				v = today + "T00:00:00Z"
			}
		default:
			d, err := nzday.Parse(v)
			if err != nil {
				return bad(fmt.Sprintf("%s: %q is not YYYY-MM-DD or today", name, v))
			}
			dates[i] = d.String()
			v = d.String() + "T00:00:00Z"
		}
		if i == 0 {
			params.DateFrom = v
		} else {
			params.DateTo = v
		}
	}
	limit, offset := defaultMeetingsLimit, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad(fmt.Sprintf("limit: %q is not a non-negative integer", v))
		}
		if n > 0 {
			limit = min(n, maxMeetingsLimit)
		}
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad(fmt.Sprintf("offset: %q is not a non-negative integer", v))
		}
		offset = n
	}
	params.Limit, params.Offset = limit, offset
	countries := listFilter(q.Get("country"))
	categories := listFilter(q.Get("category"))
	ids := listFilter(q.Get("ids"))
	if v := q.Get("country"); v != "" {
		params.Country = v
	}
	if v := q.Get("category"); v != "" {
		params.Type = v
	}
	if v := q.Get("ids"); v != "" {
		params.IDs = strings.Split(v, ",")
	}

	var list []meetingJSON
	if dates[0] <= s.date && s.date <= dates[1] {
		for _, m := range s.meetings {
			if !countries.match(m.kind.country) || !categories.match(m.kind.category) || !ids.match(m.id) {
				continue
			}
			list = append(list, s.meetingJSON(m, now))
		}
	}
	page := []meetingJSON{}
	if offset < len(list) {
		page = list[offset:min(len(list), offset+limit)]
	}
	body := meetingsBody{
		Header: header{Title: "Race Meetings", GeneratedTime: now.UTC().Format(time.RFC3339Nano), URL: canonical},
		Params: params,
		Data:   meetingsData{Meetings: page},
	}
	return response{http.StatusOK, mustJSON(body)}
}

// serveMeeting answers GET /racing/meetings/{id}.
func (s *Sim) serveMeeting(id, canonical string, now time.Time) response {
	m, ok := s.meetingByID[id]
	if !ok {
		return response{http.StatusNotFound, mustJSON(errorJSON("Get meeting by id", canonical, fmt.Sprintf("meeting %q not found", id), "NOT_FOUND", now))}
	}
	body := meetingsBody{
		Header: header{Title: "Get meeting by id", GeneratedTime: now.UTC().Format(time.RFC3339Nano), URL: canonical},
		Params: map[string]string{"enc": "json", "id": id},
		Data:   meetingsData{Meetings: []meetingJSON{s.meetingJSON(m, now)}},
	}
	return response{http.StatusOK, mustJSON(body)}
}

// filter is a case-insensitive set from a comma-separated query value; an
// empty filter matches everything.
type filter map[string]bool

func listFilter(v string) filter {
	f := filter{}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			f[strings.ToUpper(p)] = true
		}
	}
	return f
}

func (f filter) match(v string) bool { return len(f) == 0 || f[strings.ToUpper(v)] }

// encodeJSON marshals without HTML escaping, so "Cerise & gold" reads as the
// real API writes it.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("nztabsim: encode response: %w", err)
	}
	return buf.Bytes(), nil
}

// mustJSON encodes the simulator's own types, which cannot fail to encode.
func mustJSON(v any) []byte {
	b, err := encodeJSON(v)
	if err != nil {
		panic(err)
	}
	return b
}

// corrupt breaks a JSON body in its middle: the first key separator in the
// second half becomes '=', so the body keeps its length and a valid-looking
// start but no decoder accepts it.
func corrupt(body []byte) []byte {
	out := bytes.Clone(body)
	if i := bytes.Index(out[len(out)/2:], []byte(`":`)); i >= 0 {
		out[len(out)/2+i+1] = '='
		return out
	}
	if len(out) > 0 {
		out[0] = '['
	}
	return out
}
