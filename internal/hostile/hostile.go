// Package hostile is a corpus of hostile NZ TAB API answers and the outcome
// each must come to in the flow: success, skipped or poisoned, with the
// error kind the flow reports. Each case is one file in testdata/cases
// (embedded, so tests of any package can load it with Cases); Handler serves
// a case for a chosen race id and the simulator for everything else.
//
// A case describes how the fake API answers (a status, headers and a body:
// literal, generated, or the simulator's event body with mutations), or,
// for a race id that is itself hostile, the id to poll. Want is the outcome
// of one poll of that race; its snapshot fields are checked where a poll
// ends in success, for a race whose market is open (see PickRace).
package hostile

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/raceflow/raceflow/stages/nztab"
)

// Outcomes of a poll, as a flow test observes them.
const (
	// OutcomeSuccess: the poll was written (result status "success").
	OutcomeSuccess = "success"
	// OutcomeSkipped: result status "skipped", nothing written, nothing
	// poisoned; the next poll is the retry.
	OutcomeSkipped = "skipped"
	// OutcomePoisoned: result status "failed" and the message is in the
	// poison queue once, nothing written.
	OutcomePoisoned = "poisoned"
)

// Placeholders replaced in a case's literal body and header values.
const (
	// RaceIDPlaceholder is the race id being answered.
	RaceIDPlaceholder = "{{race_id}}"
	// SelfPlaceholder is the absolute URL of the request being answered
	// (a redirect to it is a loop).
	SelfPlaceholder = "{{self}}"
)

//go:embed testdata/cases/*.json
var corpus embed.FS

// Case is one hostile answer and its expected outcome.
type Case struct {
	// Name is the file name without ".json", e.g. "int-runner-number-2e40".
	Name string `json:"-"`
	// Item is the issue-18 item the case belongs to ("1" … "8"), or
	// "existing" for the cases flows/hostile_test.go had before.
	Item string `json:"item"`
	// About says in a sentence what is hostile about the answer.
	About string `json:"about"`
	// PollID, when set, is the race id to poll instead of the one the case
	// is served for: the id itself is the hostile input, and no request
	// may reach the API.
	PollID string `json:"poll_id,omitempty"`
	// Response is how the API answers.
	Response Response `json:"response"`
	// Want is the outcome of one poll.
	Want Want `json:"want"`
}

// Response is how the fake API answers a request for the case's race.
// Exactly one body source applies: Body, Padding, or else the simulator's
// event body for the race with Event applied.
type Response struct {
	// Status is the HTTP status; default 200.
	Status int `json:"status,omitempty"`
	// Headers are set on the response; values may hold placeholders.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is a literal body; it may hold placeholders.
	Body *string `json:"body,omitempty"`
	// Padding, when positive, answers a valid-looking envelope whose
	// data.error string is this many bytes, streamed in 1 MiB chunks.
	Padding int64 `json:"padding,omitempty"`
	// Event mutates the simulator's event body, in order (see Op).
	Event []Op `json:"event,omitempty"`
	// Chunked sends no Content-Length.
	Chunked bool `json:"chunked,omitempty"`
	// ByteDelayMS, when positive, sends the body one byte at a time with
	// this pause between bytes (a slow body), announcing Content-Length
	// 100000.
	ByteDelayMS int `json:"byte_delay_ms,omitempty"`
}

// Op is one mutation of the simulator's event body. Document ops work on
// the decoded JSON and address a value by a dotted path from the root
// ("data.runners.0.name"); byte ops work on the encoded body and run after
// every document op.
type Op struct {
	// Op is the operation:
	//   set            Path = Value (JSON)
	//   repeat_string  Path = Value (a JSON string) repeated Times times
	//   grow           the array at Path grows to Times elements, copies of
	//                  its first with distinct entrant_id values (no later
	//                  op can address inside the grown array)
	//   repeat         the array at Path becomes Times copies of itself
	//   set_each       Key = Value (JSON) in every object of the array at
	//                  Path
	//   append         Value (JSON) is appended to the array at Path
	//   replace        bytes: the first Times (default 1) Old become New,
	//                  or the bytes NewHex spells (for invalid UTF-8)
	//   truncate       bytes: only the first Fraction of the body is sent
	Op       string          `json:"op"`
	Path     string          `json:"path,omitempty"`
	Key      string          `json:"key,omitempty"`
	Value    json.RawMessage `json:"value,omitempty"`
	Times    int             `json:"times,omitempty"`
	Old      string          `json:"old,omitempty"`
	New      string          `json:"new,omitempty"`
	NewHex   string          `json:"new_hex,omitempty"`
	Fraction float64         `json:"fraction,omitempty"`
}

// Want is the expected outcome of one poll of a case.
type Want struct {
	// Outcome is OutcomeSuccess, OutcomeSkipped or OutcomePoisoned.
	Outcome string `json:"outcome"`
	// Stage is the failing stage ("fetch", "transform", "write"); empty
	// on success.
	Stage string `json:"stage,omitempty"`
	// Kind is the error kind the flow reports (ErrorInfo.Kind): e.g.
	// "validation", "malformed_json", "invalid_response", "unreachable",
	// "not_found", "transform"; empty on success.
	Kind string `json:"kind,omitempty"`

	// The rest is checked on success only.

	// MoneyFlow, when set, is the exact number of money-flow rows.
	MoneyFlow *int `json:"money_flow,omitempty"`
	// Valid, when set, is Quality.Valid.
	Valid *bool `json:"valid,omitempty"`
	// ReplacedChars is the least Quality.ReplacedChars.
	ReplacedChars int `json:"replaced_chars,omitempty"`
	// Warning, when set, is a substring of one of Quality.Warnings.
	Warning string `json:"warning,omitempty"`
}

// Cases loads the whole corpus, sorted by name, and checks every case.
func Cases() ([]Case, error) {
	names, err := fs.Glob(corpus, "testdata/cases/*.json")
	if err != nil {
		return nil, fmt.Errorf("hostile: list cases: %w", err)
	}
	slices.Sort(names)
	out := make([]Case, 0, len(names))
	for _, n := range names {
		b, err := corpus.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("hostile: read %s: %w", n, err)
		}
		c, err := parseCase(strings.TrimSuffix(path.Base(n), ".json"), b)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// parseCase decodes one case file strictly and checks it.
func parseCase(name string, b []byte) (Case, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var c Case
	if err := dec.Decode(&c); err != nil {
		return Case{}, fmt.Errorf("hostile: case %s: %w", name, err)
	}
	c.Name = name
	if err := c.check(); err != nil {
		return Case{}, fmt.Errorf("hostile: case %s: %w", name, err)
	}
	return c, nil
}

func (c Case) check() error {
	switch c.Want.Outcome {
	case OutcomeSuccess:
		if c.Want.Stage != "" || c.Want.Kind != "" {
			return fmt.Errorf("a success has no stage or kind")
		}
	case OutcomeSkipped, OutcomePoisoned:
		if c.Want.Stage == "" || c.Want.Kind == "" {
			return fmt.Errorf("want.stage and want.kind are required for %s", c.Want.Outcome)
		}
	default:
		return fmt.Errorf("want.outcome %q is not success, skipped or poisoned", c.Want.Outcome)
	}
	if c.Item == "" || c.About == "" {
		return fmt.Errorf("item and about are required")
	}
	r := c.Response
	if r.Body != nil && (r.Padding > 0 || len(r.Event) > 0) || r.Padding > 0 && len(r.Event) > 0 {
		return fmt.Errorf("response: body, padding and event exclude each other")
	}
	for i, op := range r.Event {
		switch op.Op {
		case "set", "append":
			if op.Path == "" || len(op.Value) == 0 {
				return fmt.Errorf("event[%d] %s: path and value are required", i, op.Op)
			}
		case "set_each":
			if op.Path == "" || op.Key == "" || len(op.Value) == 0 {
				return fmt.Errorf("event[%d] set_each: path, key and value are required", i)
			}
		case "repeat_string", "grow", "repeat":
			if op.Path == "" || op.Times <= 0 {
				return fmt.Errorf("event[%d] %s: path and times are required", i, op.Op)
			}
		case "replace":
			if op.Old == "" {
				return fmt.Errorf("event[%d] replace: old is required", i)
			}
		case "truncate":
			if op.Fraction <= 0 || op.Fraction >= 1 {
				return fmt.Errorf("event[%d] truncate: fraction must be in (0, 1)", i)
			}
		default:
			return fmt.Errorf("event[%d]: unknown op %q", i, op.Op)
		}
	}
	return nil
}

// RaceID is the race id to poll for this case when it is served for the
// race served: PollID when the id itself is the hostile input.
func (c Case) RaceID(served string) string {
	if c.PollID != "" {
		return c.PollID
	}
	return served
}

// ShortTimeouts sets client timeouts that let every case end within seconds
// (a 3 s attempt, one retry, a 10 s budget) and keep every outcome of the
// corpus: tests use it so the slow-body case does not take the default 20 s
// budget. The attempt must still outlast the other cases on a starved
// machine: a 1 s attempt once timed out twice reading the 50 MB body up to
// the 4 MiB cap (the whole suite under the race detector on 2 cores), which
// turned its "too large" into "unreachable".
func ShortTimeouts(c *nztab.ClientConfig) {
	c.Timeout = 3 * time.Second
	c.TotalTimeout = 10 * time.Second
	c.MaxRetries = 1
	c.BaseBackoff = 10 * time.Millisecond
	c.MaxBackoff = 50 * time.Millisecond
}
