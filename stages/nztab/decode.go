package nztab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Plausibility bounds. JSON has no NaN or ±Inf, but the decoder happily
// decodes 1e300; values beyond these bounds are corrupt data that
// would overflow cents columns or poison percentages downstream.
const (
	maxOdds       = 1e6  // decimal odds
	maxPercentage = 100  // money-tracker percentages are 0–100
	maxMoney      = 1e10 // dollars in a pool, dividend or jackpot
)

// DecodeEvent decodes the body of GET /racing/events/{id} and validates it.
// Unknown fields are ignored because the API schema is open. A body that is
// not JSON or does not fit the types is a *DecodeError; a payload that breaks
// a rule is a *ValidationError naming the race and the field. Both are
// permanent. On success EventResponse.RaceStatus holds the mapped status.
//
// Characters PostgreSQL cannot store (NUL, invalid UTF-8) are replaced with
// U+FFFD before decoding and counted in EventResponse.ReplacedChars; values
// beyond the limits (MaxRunners, MaxStringBytes, ...) are a *ValidationError
// matching ErrTooLarge, and ids without the API's id shape one matching
// ErrInvalidID.
//
// Member names match exactly, as the API sends them.
func DecodeEvent(body []byte) (*EventResponse, error) {
	body, replaced := sanitizeJSON(body)
	var ev EventResponse
	if err := jsonv2.Unmarshal(body, &ev, apiJSON); err != nil {
		return nil, newDecodeError("event", err)
	}
	st, err := ev.validate()
	if err != nil {
		return nil, err
	}
	ev.RaceStatus = st
	ev.ReplacedChars = replaced
	return &ev, nil
}

// apiJSON are the decoding options of the API's bodies. An event body is a
// few hundred kilobytes, mostly form the pipeline skips, and it is decoded on
// every poll: encoding/json/v2 (from the module that mirrors it until the Go
// version in go.mod has it) reads it several times faster than encoding/json.
// Like encoding/json, it keeps the last of repeated member names (checking
// for repeats would cost most of the speed) and turns an escaped lone
// surrogate into U+FFFD, so stored bodies replay as they were first read.
var apiJSON = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// Validate applies DecodeEvent's rules to an already decoded payload, for
// callers that build or re-read one themselves (replay, tests). It returns
// the first *ValidationError found and does not modify e.
func (e *EventResponse) Validate() error {
	_, err := e.validate()
	return err
}

func (e *EventResponse) validate() (Status, error) {
	d := &e.Data
	raceID := d.Race.RaceID()
	fail := func(field, format string, args ...any) (Status, error) {
		return "", &ValidationError{RaceID: raceID, Field: field, Reason: fmt.Sprintf(format, args...)}
	}

	if raceID == "" {
		if strings.TrimSpace(d.Error) != "" {
			return fail("data.error", "API reported an error and no race: %q", excerpt(d.Error))
		}
		return fail("data.race.event_id", "must be non-empty (neither event_id nor id is set)")
	}
	if err := checkEventLimits(e, raceID); err != nil {
		return "", err
	}
	if d.Race.MeetingID == "" {
		return fail("data.race.meeting_id", "must be non-empty")
	}
	if d.Race.AdvertisedStart <= 0 {
		return fail("data.race.advertised_start", "must be a positive Unix time, got %d", d.Race.AdvertisedStart)
	}
	st, err := ParseStatus(d.Race.Status)
	if err != nil {
		return "", &ValidationError{RaceID: raceID, Field: "data.race.status", Reason: err.Error(), Err: err}
	}

	seen := make(map[string]int, len(d.Runners))
	for i := range d.Runners {
		r := &d.Runners[i]
		p := fmt.Sprintf("data.runners[%d]", i)
		if r.EntrantID == "" {
			return fail(p+".entrant_id", "must be non-empty")
		}
		if j, dup := seen[r.EntrantID]; dup {
			return fail(p+".entrant_id", "duplicates data.runners[%d].entrant_id %q", j, excerpt(r.EntrantID))
		}
		seen[r.EntrantID] = i
		if r.RunnerNumber <= 0 {
			return fail(p+".runner_number", "must be positive, got %d", r.RunnerNumber)
		}
		if r.RunnerNumber > MaxRunnerNumber {
			return "", &ValidationError{RaceID: raceID, Field: p + ".runner_number", Err: ErrTooLarge,
				Reason: fmt.Sprintf("must be at most %d, got %d", MaxRunnerNumber, r.RunnerNumber)}
		}
		for _, o := range [...]struct {
			name string
			v    *float64
		}{
			{"fixed_win", r.Odds.FixedWin},
			{"fixed_place", r.Odds.FixedPlace},
			{"pool_win", r.Odds.PoolWin},
			{"pool_place", r.Odds.PoolPlace},
		} {
			if o.v != nil && !inRange(*o.v, 0, maxOdds) {
				return fail(p+".odds."+o.name, "must be a finite number in [0, %g], got %g", float64(maxOdds), *o.v)
			}
		}
	}

	if d.MoneyTracker != nil {
		for i, m := range d.MoneyTracker.Entrants {
			p := fmt.Sprintf("data.money_tracker.entrants[%d]", i)
			if !inRange(m.HoldPercentage, 0, maxPercentage) {
				return fail(p+".hold_percentage", "must be a percentage in [0, 100], got %g", m.HoldPercentage)
			}
			if !inRange(m.BetPercentage, 0, maxPercentage) {
				return fail(p+".bet_percentage", "must be a percentage in [0, 100], got %g", m.BetPercentage)
			}
		}
	}

	for i, tp := range d.TotePools {
		if !inRange(tp.Total, 0, maxMoney) {
			return fail(fmt.Sprintf("data.tote_pools[%d].total", i), "must be a finite amount in [0, %g], got %g", float64(maxMoney), tp.Total)
		}
	}

	for i, dv := range d.Dividends {
		p := fmt.Sprintf("data.dividends[%d]", i)
		for _, f := range [...]struct {
			name string
			v    float64
		}{
			{"dividend", dv.Dividend},
			{"pool_size", dv.PoolSize},
			{"jackpot_size", dv.JackpotSize},
		} {
			if !inRange(f.v, 0, maxMoney) {
				return fail(p+"."+f.name, "must be a finite amount in [0, %g], got %g", float64(maxMoney), f.v)
			}
		}
	}
	return st, nil
}

// inRange reports lo <= v <= hi; NaN and ±Inf are never in range.
func inRange(v, lo, hi float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= lo && v <= hi
}

// GeneratedAt parses header.generated_time. It returns the zero time when the
// header is absent or unparsable: the value is informative metadata, and a
// payload is not rejected for it.
func (h Header) GeneratedAt() time.Time {
	if h.GeneratedTime == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, h.GeneratedTime)
	if err != nil {
		return time.Time{}
	}
	return t
}

// MeetingsList is a decoded meetings response: the meetings that passed
// validation, and a report for each one that did not.
type MeetingsList struct {
	// Header is the response envelope header (of the first page when the
	// client paginated).
	Header Header
	// Meetings are the valid meetings, in response order.
	Meetings []Meeting
	// Skipped reports each element that was dropped and why.
	Skipped []MeetingError
	// ReplacedChars counts the NUL characters and invalid UTF-8 sequences
	// replaced with U+FFFD (see DecodeEvent).
	ReplacedChars int
	// Pages are the raw bodies the meetings came from, as received, in
	// order: the baseline stores them so a replay can apply them again.
	Pages [][]byte
}

// DecodeMeetings decodes the body of GET /racing/meetings. Each element of
// data.meetings is decoded and validated on its own: one bad meeting (a
// wrong-typed field, a missing id, a bad date) is reported in Skipped and the
// rest survive, because a whole race day must not be lost to one odd meeting.
// Only a body that is not JSON or has the wrong envelope shape is fatal, as a
// *DecodeError. An absent or null data.meetings is an empty day.
func DecodeMeetings(body []byte) (MeetingsList, error) {
	list, err := decodeMeetingsPage(body, 0)
	if err != nil {
		return MeetingsList{}, err
	}
	list.Pages = [][]byte{body}
	return list, nil
}

// decodeMeetingsPage is DecodeMeetings with indices offset by the number of
// elements on earlier pages.
func decodeMeetingsPage(body []byte, base int) (MeetingsList, error) {
	body, replaced := sanitizeJSON(body)
	var resp MeetingsResponse
	if err := jsonv2.Unmarshal(body, &resp, apiJSON); err != nil {
		return MeetingsList{}, newDecodeError("meetings", err)
	}
	out := MeetingsList{Header: resp.Header, Meetings: make([]Meeting, 0, len(resp.Data.Meetings)), ReplacedChars: replaced}
	for i, raw := range resp.Data.Meetings {
		m, err := decodeMeeting(raw)
		if err != nil {
			out.Skipped = append(out.Skipped, MeetingError{Index: base + i, MeetingID: m.Meeting, Err: err})
			continue
		}
		out.Meetings = append(out.Meetings, m)
	}
	return out, nil
}

// decodeMeeting decodes and validates one meeting. On failure the returned
// Meeting still carries whatever was decoded, so the report can name it.
func decodeMeeting(raw json.RawMessage) (Meeting, error) {
	var m Meeting
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return m, &FieldError{Field: ".", Reason: "meeting is null"}
	}
	if err := jsonv2.Unmarshal(raw, &m, apiJSON); err != nil {
		// Decoding stops at the first bad value, so the id may be unset
		// even when present; recover it for the report on a best-effort
		// basis.
		if m.Meeting == "" {
			var id struct {
				Meeting string `json:"meeting"`
			}
			_ = jsonv2.Unmarshal(raw, &id, apiJSON)
			m.Meeting = id.Meeting
		}
		return m, newDecodeError("meeting", err)
	}
	for _, f := range [...]struct{ name, v string }{
		{"meeting", m.Meeting},
		{"name", m.Name},
		{"date", m.Date},
		{"country", m.Country},
		{"category", m.Category},
	} {
		if strings.TrimSpace(f.v) == "" {
			return m, &FieldError{Field: f.name, Reason: "must be non-empty"}
		}
	}
	if _, err := time.Parse(time.RFC3339, m.Date); err != nil {
		return m, &FieldError{Field: "date", Reason: fmt.Sprintf("must be RFC3339, got %q", excerpt(m.Date)), Err: err}
	}
	for i, r := range m.Races {
		if r.ID == "" {
			return m, &FieldError{Field: fmt.Sprintf("races[%d].id", i), Reason: "must be non-empty"}
		}
	}
	if err := checkMeetingLimits(&m); err != nil {
		return m, err
	}
	return m, nil
}

// newDecodeError wraps a decoding error with the offset of the value it
// failed on and that value's path (e.g. data.runners[2].barrier).
func newDecodeError(payload string, err error) *DecodeError {
	de := &DecodeError{Payload: payload, Offset: -1, Err: err}
	var se *jsontext.SyntacticError
	var me *jsonv2.SemanticError
	switch {
	case errors.As(err, &se):
		de.Offset, de.Field = se.ByteOffset, pointerPath(se.JSONPointer)
	case errors.As(err, &me):
		de.Offset, de.Field = me.ByteOffset, pointerPath(me.JSONPointer)
	}
	return de
}

// pointerPath spells a JSON pointer (/data/runners/2/odds) as the field
// paths of the package's other errors (data.runners[2].odds).
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			fmt.Fprintf(&b, "[%s]", tok)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
