package hostile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
)

// eventsPath is the path element before a race id in an event request.
const eventsPath = "/racing/events/"

// Handler answers event requests of the races a case is served for with
// that case, and passes every other request on (to the simulator by
// default). It is safe for concurrent use.
type Handler struct {
	sim  *nztabsim.Sim
	next http.Handler

	mu       sync.Mutex
	cases    map[string]served // by race id as it appears in a path
	requests map[string]int    // event requests seen per race id
}

// served is a case being served for one race, with its body built ahead
// when it comes from the simulator.
type served struct {
	c    Case
	body []byte
}

// NewHandler returns a Handler whose mutated bodies start from sim's event
// bodies at sim's clock, and which passes other requests to sim.
func NewHandler(sim *nztabsim.Sim) *Handler {
	return &Handler{sim: sim, next: sim, cases: map[string]served{}, requests: map[string]int{}}
}

// Wrap returns a handler serving the cases in front of next instead of the
// simulator, for harnesses that wrap their API handler.
func (h *Handler) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, next) })
}

// Serve makes event requests for raceID answer with c until Stop. A body
// mutated from the simulator's is built here, from the event at the
// simulator's clock now, so that answering costs no time: a slow answer
// would time the client out and change the outcome.
func (h *Handler) Serve(raceID string, c Case) error {
	s := served{c: c}
	if c.Response.Body == nil && c.Response.Padding == 0 {
		ev, err := h.sim.EventJSON(raceID, h.sim.Clock().Now())
		if err != nil {
			return fmt.Errorf("hostile: case %s: %w", c.Name, err)
		}
		if s.body, err = Mutate(ev, c.Response.Event); err != nil {
			return fmt.Errorf("hostile: case %s: %w", c.Name, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cases[url.PathEscape(raceID)] = s
	return nil
}

// Stop makes raceID answer normally again.
func (h *Handler) Stop(raceID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.cases, url.PathEscape(raceID))
}

// Requests is how many event requests for raceID (as it appears, escaped,
// in the path) arrived, served by a case or not.
func (h *Handler) Requests(raceID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests[url.PathEscape(raceID)]
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.next) }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	p := r.URL.EscapedPath()
	i := strings.LastIndex(p, eventsPath)
	if i < 0 {
		next.ServeHTTP(w, r)
		return
	}
	id := p[i+len(eventsPath):]
	h.mu.Lock()
	h.requests[id]++
	s, ok := h.cases[id]
	h.mu.Unlock()
	if !ok {
		next.ServeHTTP(w, r)
		return
	}
	answer(w, r, id, s)
}

// answer writes a served case's response for race id.
func answer(w http.ResponseWriter, r *http.Request, id string, s served) {
	res := s.c.Response
	self := "http://" + r.Host + r.URL.RequestURI()
	fill := func(s string) string {
		return strings.NewReplacer(RaceIDPlaceholder, id, SelfPlaceholder, self).Replace(s)
	}
	for k, v := range res.Headers {
		w.Header().Set(k, fill(v))
	}
	status := res.Status
	if status == 0 {
		status = http.StatusOK
	}
	if res.Padding > 0 {
		writePadding(w, status, res.Padding, res.Chunked)
		return
	}
	body := s.body
	if res.Body != nil {
		body = []byte(fill(*res.Body))
	}
	if res.ByteDelayMS > 0 {
		writeSlowly(w, r, body, time.Duration(res.ByteDelayMS)*time.Millisecond)
		return
	}
	if !res.Chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a client that stops reading (body cap) ends the write
}

// writePadding streams {"header":{},"data":{"error":"xxx…"}} with n bytes
// of padding, stopping when the client goes away.
func writePadding(w http.ResponseWriter, status int, n int64, chunked bool) {
	head, tail := []byte(`{"header":{},"data":{"error":"`), []byte(`"}}`)
	if !chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(int64(len(head))+n+int64(len(tail)), 10))
	}
	w.WriteHeader(status)
	if _, err := w.Write(head); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return // the client gave up, as it should
		}
		n -= k
	}
	_, _ = w.Write(tail)
}

// writeSlowly sends body a byte at a time, announcing more than it sends,
// until the client goes away.
func writeSlowly(w http.ResponseWriter, r *http.Request, body []byte, pause time.Duration) {
	w.Header().Set("Content-Length", "100000")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(pause)
	defer t.Stop()
	for i := range body {
		if _, err := w.Write(body[i : i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// Mutate applies ops to an event body: document ops first, in order, then
// byte ops, in order.
func Mutate(body []byte, ops []Op) ([]byte, error) {
	var doc any
	docOps := false
	var grown [][]byte // encoded arrays of grow ops, spliced in after encoding
	for _, op := range ops {
		if op.Op == "replace" || op.Op == "truncate" {
			continue
		}
		if !docOps {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber() // keep every number exactly as the simulator wrote it
			if err := dec.Decode(&doc); err != nil {
				return nil, fmt.Errorf("decode the event body: %w", err)
			}
			docOps = true
		}
		if err := apply(&doc, op, &grown); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	if docOps {
		var err error
		if body, err = json.Marshal(doc); err != nil {
			return nil, fmt.Errorf("encode the event body: %w", err)
		}
		for i, g := range grown {
			body = bytes.Replace(body, []byte(strconv.Quote(growMark(i))), g, 1)
		}
	}
	for _, op := range ops {
		switch op.Op {
		case "replace":
			repl := []byte(op.New)
			if op.NewHex != "" {
				b, err := hex.DecodeString(op.NewHex)
				if err != nil {
					return nil, fmt.Errorf("replace: new_hex: %w", err)
				}
				repl = b
			}
			if !bytes.Contains(body, []byte(op.Old)) {
				return nil, fmt.Errorf("replace: %q is not in the body", op.Old)
			}
			body = bytes.Replace(body, []byte(op.Old), repl, max(op.Times, 1))
		case "truncate":
			body = body[:int(float64(len(body))*op.Fraction)]
		}
	}
	return body, nil
}

// growMark is the string a grown array stands in as until it is spliced in.
func growMark(i int) string { return fmt.Sprintf("hostile-grown-array-%d", i) }

// apply runs one document op on doc; grow ops add their encoded array to
// grown and leave a mark in its place.
func apply(doc *any, op Op, grown *[][]byte) error {
	var value any
	if len(op.Value) > 0 {
		dec := json.NewDecoder(bytes.NewReader(op.Value))
		dec.UseNumber()
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("value: %w", err)
		}
	}
	cur, err := lookup(*doc, op.Path)
	if err != nil && op.Op != "set" {
		return err
	}
	switch op.Op {
	case "set":
		return set(doc, op.Path, value)
	case "repeat_string":
		s, ok := value.(string)
		if !ok {
			return fmt.Errorf("value must be a JSON string")
		}
		return set(doc, op.Path, strings.Repeat(s, op.Times))
	case "append":
		arr, ok := cur.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		return set(doc, op.Path, append(arr, value))
	case "repeat":
		arr, ok := cur.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		out := make([]any, 0, len(arr)*op.Times)
		for range op.Times {
			out = append(out, arr...)
		}
		return set(doc, op.Path, out)
	case "set_each":
		arr, ok := cur.([]any)
		if !ok {
			return fmt.Errorf("not an array")
		}
		for _, el := range arr {
			if m, ok := el.(map[string]any); ok {
				m[op.Key] = value
			}
		}
		return nil
	case "grow":
		arr, ok := cur.([]any)
		if !ok || len(arr) == 0 {
			return fmt.Errorf("not a non-empty array")
		}
		raw, err := grow(arr, op.Times)
		if err != nil {
			return err
		}
		*grown = append(*grown, raw)
		return set(doc, op.Path, growMark(len(*grown)-1))
	}
	return fmt.Errorf("not a document op")
}

// grow encodes arr grown to n elements by copies of its first, each with a
// distinct entrant_id when it has one. The copies are made as encoded bytes
// and spliced into the encoded body, because encoding (or even validating)
// 50,000 runners takes many seconds under the race detector; so no later op
// can address inside the grown array.
func grow(arr []any, n int) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, el := range arr {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := json.Marshal(el)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	first, err := json.Marshal(arr[0])
	if err != nil {
		return nil, err
	}
	var oldID []byte
	if m, ok := arr[0].(map[string]any); ok {
		if id, ok := m["entrant_id"].(string); ok {
			if oldID, err = json.Marshal(id); err != nil {
				return nil, err
			}
			oldID = append([]byte(`"entrant_id":`), oldID...)
		}
	}
	buf.Grow((n - len(arr)) * (len(first) + 8))
	for i := len(arr); i < n; i++ {
		buf.WriteByte(',')
		if oldID == nil {
			buf.Write(first)
			continue
		}
		newID := append(oldID[:len(oldID)-1:len(oldID)-1], fmt.Sprintf("-%d\"", i)...)
		buf.Write(bytes.Replace(first, oldID, newID, 1))
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// lookup returns the value at a dotted path.
func lookup(doc any, p string) (any, error) {
	cur := doc
	for _, k := range strings.Split(p, ".") {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[k]
			if !ok {
				return nil, fmt.Errorf("no key %q", k)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(v) {
				return nil, fmt.Errorf("no element %q", k)
			}
			cur = v[i]
		default:
			return nil, fmt.Errorf("cannot step into %T at %q", cur, k)
		}
	}
	return cur, nil
}

// set stores value at a dotted path whose parent exists.
func set(doc *any, p string, value any) error {
	i := strings.LastIndex(p, ".")
	if i < 0 {
		m, ok := (*doc).(map[string]any)
		if !ok {
			return fmt.Errorf("the document is not an object")
		}
		m[p] = value
		return nil
	}
	parent, err := lookup(*doc, p[:i])
	if err != nil {
		return err
	}
	k := p[i+1:]
	switch v := parent.(type) {
	case map[string]any:
		v[k] = value
	case []any:
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n >= len(v) {
			return fmt.Errorf("no element %q", k)
		}
		v[n] = value
	default:
		return fmt.Errorf("cannot set inside %T", parent)
	}
	return nil
}

// PickRace returns a race of sim whose market is open at sim's clock: its
// event body, unmutated, transforms into a valid snapshot with money-flow
// rows. The success cases' snapshot expectations hold for such a race.
func PickRace(sim *nztabsim.Sim) (string, error) {
	now := sim.Clock().Now()
	for _, r := range sim.Races() {
		if r.StartTime.Before(now.Add(2*time.Minute)) || r.StartTime.After(now.Add(2*time.Hour)) {
			continue
		}
		body, err := sim.EventJSON(r.ID, now)
		if err != nil {
			return "", err
		}
		ev, err := nztab.DecodeEvent(body)
		if err != nil {
			return "", fmt.Errorf("hostile: the simulator's race %s does not decode: %w", r.ID, err)
		}
		s, err := transform.Transform(ev, now)
		if err == nil && s.Quality.Valid && len(s.MoneyFlow) > 0 {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("hostile: no race with an open market at %s", now.Format(time.RFC3339))
}
