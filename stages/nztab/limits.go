package nztab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits on what a payload may hold. Each is far beyond anything a real
// meeting has (the largest real event seen is 410 KB with 8 runners and 76
// money-tracker rows; a big field is 24 runners) and well inside what the
// database columns hold, so a value beyond one is corrupt or hostile data and
// the payload is rejected whole, as a permanent *ValidationError, before it
// can cost memory downstream or fail a write.
const (
	// MaxRunners bounds data.runners and data.results of an event, and the
	// entrant_count, field_size and positions_paid it reports.
	MaxRunners = 64
	// MaxRunnerNumber bounds runner numbers, barriers, placings and race
	// numbers (all int4 columns or their JSON copies).
	MaxRunnerNumber = 99
	// MaxDistance bounds a race distance in metres (the longest races run
	// are under 8,000 m).
	MaxDistance = 20000
	// MaxStringBytes bounds every decoded string (names, ids, URLs).
	MaxStringBytes = 1 << 10
	// MaxRawJSONBytes bounds the JSON values kept verbatim and stored as
	// jsonb (runner_change, video_channels).
	MaxRawJSONBytes = 16 << 10
	// MaxMoneyTrackerRows bounds data.money_tracker.entrants (many rows per
	// runner, summed per runner).
	MaxMoneyTrackerRows = 5000
	// MaxListLen bounds the other lists of an event (tote pools, dividends,
	// substitutions) and the races of a meeting.
	MaxListLen = 512
	// MaxIDBytes bounds an id; real ids are 36-byte UUIDs.
	MaxIDBytes = 64
)

// ErrTooLarge matches (errors.Is) a *ValidationError or *FieldError for a
// value, string or list beyond one of the limits above.
var ErrTooLarge = errors.New("nztab: beyond the payload limits")

// ErrInvalidID matches (errors.Is) an id that does not have the API's id
// shape, including a race id refused by FetchEvent before any request.
var ErrInvalidID = errors.New("nztab: invalid id")

// ValidID reports whether s has the shape of an API id: 1 to MaxIDBytes
// ASCII letters, digits, '-' or '_', starting with a letter or digit. Real
// ids are UUIDs; the looser shape also admits the readable ids tests and
// simulators use, while ruling out everything that could change a URL path
// (/, ., ..), a log line (newlines) or a database key (NUL, huge values).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateRaceID returns a permanent *ValidationError (field "race_id",
// matching ErrInvalidID) when id is not a valid API id; FetchEvent calls it
// before any request.
func ValidateRaceID(id string) error {
	if ValidID(id) {
		return nil
	}
	return &ValidationError{RaceID: fmt.Sprintf("%q", excerpt(id)), Field: "race_id",
		Reason: fmt.Sprintf("is not an API id (1 to %d letters, digits, - or _)", MaxIDBytes), Err: ErrInvalidID}
}

// replacement is the JSON escape of U+FFFD, the same length as `\u0000`.
var replacement = []byte(`\ufffd`)

// sanitizeJSON replaces, inside a JSON document, every \u0000 escape and
// every invalid UTF-8 sequence with U+FFFD, and returns how many it
// replaced. PostgreSQL text and jsonb refuse both, so one such character in
// a cosmetic field would otherwise fail every write of the race; and
// the JSON decoder keeps them verbatim in json.RawMessage fields. A body
// with neither is returned as is, without copying.
func sanitizeJSON(body []byte) ([]byte, int) {
	hasNUL := bytes.Contains(body, []byte(`\u0000`))
	if !hasNUL && utf8.Valid(body) {
		return body, 0
	}
	n := 0
	if hasNUL {
		out := bytes.Clone(body)
		for i := 0; i < len(out); i++ {
			k := bytes.IndexByte(out[i:], '\\')
			if k < 0 {
				break
			}
			i += k
			// An escape: \u0000 is replaced; any other (\\, \", \n, \uXXXX)
			// is skipped whole, so an escaped backslash followed by
			// "u0000" is left alone.
			if i+5 < len(out) && out[i+1] == 'u' && string(out[i+2:i+6]) == "0000" {
				copy(out[i:], replacement)
				n++
				i += 5
				continue
			}
			i++
		}
		body = out
	}
	if !utf8.Valid(body) {
		out := make([]byte, 0, len(body)+16)
		for len(body) > 0 {
			r, size := utf8.DecodeRune(body)
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
				n++
			} else {
				out = append(out, body[:size]...)
			}
			body = body[size:]
		}
		body = out
	}
	return body, n
}

// limits checks one payload against the limits, reporting the first
// violation. Field paths are only formatted on failure, to keep the check
// cheap on the hot path.
type limits struct {
	raceID string
	prefix string // e.g. "data.runners"; "" for top-level fields
	idx    int    // element of prefix, -1 for none
	err    error
}

func (l *limits) at(prefix string, idx int) { l.prefix, l.idx = prefix, idx }

func (l *limits) path(name string) string {
	switch {
	case l.prefix == "":
		return name
	case l.idx < 0:
		return l.prefix + "." + name
	}
	return fmt.Sprintf("%s[%d].%s", l.prefix, l.idx, name)
}

func (l *limits) fail(name string, cause error, format string, args ...any) {
	if l.err == nil {
		l.err = &ValidationError{RaceID: l.raceID, Field: l.path(name), Reason: fmt.Sprintf(format, args...), Err: cause}
	}
}

func (l *limits) str(name, v string) {
	if len(v) > MaxStringBytes {
		l.fail(name, ErrTooLarge, "is %d bytes long, more than %d", len(v), MaxStringBytes)
	}
}

func (l *limits) id(name, v string) {
	if v != "" && !ValidID(v) {
		l.fail(name, ErrInvalidID, "%q is not an API id (1 to %d letters, digits, - or _)", excerpt(v), MaxIDBytes)
	}
}

func (l *limits) raw(name string, v json.RawMessage) {
	if len(v) > MaxRawJSONBytes {
		l.fail(name, ErrTooLarge, "is %d bytes of JSON, more than %d", len(v), MaxRawJSONBytes)
	}
}

func (l *limits) count(name string, n, limit int) {
	if n > limit {
		l.fail(name, ErrTooLarge, "has %d elements, more than %d", n, limit)
	}
}

func (l *limits) num(name string, v, lo, hi int) {
	if v < lo || v > hi {
		l.fail(name, ErrTooLarge, "must be in [%d, %d], got %d", lo, hi, v)
	}
}

func (l *limits) optNum(name string, v *int, lo, hi int) {
	if v != nil {
		l.num(name, *v, lo, hi)
	}
}

// checkEventLimits applies the limits to a decoded event.
func checkEventLimits(e *EventResponse, raceID string) error {
	l := &limits{raceID: raceID, idx: -1}
	d := &e.Data

	l.at("header", -1)
	l.str("title", e.Header.Title)
	l.str("generated_time", e.Header.GeneratedTime)
	l.str("url", e.Header.URL)

	l.at("data", -1)
	l.str("error", d.Error)
	l.count("runners", len(d.Runners), MaxRunners)
	l.count("results", len(d.Results), MaxRunners)
	l.count("dividends", len(d.Dividends), MaxListLen)
	l.count("substitutions", len(d.Substitutions), MaxListLen)
	l.count("tote_pools", len(d.TotePools), MaxListLen)
	if d.MoneyTracker != nil {
		l.count("money_tracker.entrants", len(d.MoneyTracker.Entrants), MaxMoneyTrackerRows)
	}
	if l.err != nil {
		return l.err // counts first: the loops below must not walk 50,000 runners
	}

	r := &d.Race
	l.at("data.race", -1)
	l.id("event_id", r.EventID)
	l.id("id", r.ID)
	l.id("meeting_id", r.MeetingID)
	for _, f := range [...]struct{ name, v string }{
		{"meeting_name", r.MeetingName}, {"display_meeting_name", r.DisplayMeetingName},
		{"description", r.Description}, {"name", r.Name}, {"status", r.Status},
		{"race_date_nz", r.RaceDateNZ}, {"start_time_nz", r.StartTimeNZ}, {"type", r.Type},
		{"country", r.Country}, {"state", r.State}, {"weather", r.Weather},
		{"track_condition", r.TrackCondition}, {"track_surface", r.TrackSurface},
		{"track_direction", r.TrackDirection}, {"rail_position", r.RailPosition},
		{"silk_url", r.SilkURL}, {"silk_base_url", r.SilkBaseURL}, {"class", r.Class},
		{"gait", r.Gait}, {"start_type", r.StartType}, {"protest_reason", r.ProtestReason},
	} {
		l.str(f.name, f.v)
	}
	l.raw("video_channels", r.VideoChannels)
	l.num("race_number", r.RaceNumber, 0, MaxRunnerNumber)
	l.optNum("distance", r.Distance, 0, MaxDistance)
	l.optNum("entrant_count", r.EntrantCount, 0, MaxRunners)
	l.optNum("field_size", r.FieldSize, 0, MaxRunners)
	l.optNum("positions_paid", r.PositionsPaid, 0, MaxRunners)

	for i := range d.Runners {
		rn := &d.Runners[i]
		l.at("data.runners", i)
		l.id("entrant_id", rn.EntrantID)
		for _, f := range [...]struct{ name, v string }{
			{"name", rn.Name}, {"barrier_position", rn.BarrierPosition}, {"jockey", rn.Jockey},
			{"trainer_name", rn.TrainerName}, {"silk_colours", rn.SilkColours},
			{"silk_url_64x64", rn.SilkURL64}, {"silk_url_128x128", rn.SilkURL128},
		} {
			l.str(f.name, f.v)
		}
		l.raw("runner_change", rn.RunnerChange)
		l.optNum("barrier", rn.Barrier, 0, MaxRunnerNumber)
	}
	for i := range d.Results {
		rs := &d.Results[i]
		l.at("data.results", i)
		l.str("name", rs.Name)
		l.str("entrant_id", rs.EntrantID)
		l.str("positional_margin", rs.PositionalMargin)
		l.num("position", rs.Position, 0, MaxRunnerNumber)
		l.num("runner_number", rs.RunnerNumber, 0, MaxRunnerNumber)
		l.optNum("barrier", rs.Barrier, 0, MaxRunnerNumber)
	}
	for i := range d.Dividends {
		dv := &d.Dividends[i]
		l.at("data.dividends", i)
		for _, f := range [...]struct{ name, v string }{
			{"id", dv.ID}, {"tote", dv.Tote}, {"product_name", dv.ProductName},
			{"status", dv.Status}, {"description", dv.Description},
		} {
			l.str(f.name, f.v)
		}
		l.count("positions", len(dv.Positions), MaxRunners)
		for _, p := range dv.Positions {
			l.num("positions[].runner_number", p.RunnerNumber, 0, MaxRunnerNumber)
			l.num("positions[].position", p.Position, 0, MaxRunnerNumber)
		}
	}
	for i := range d.Substitutions {
		s := &d.Substitutions[i]
		l.at("data.substitutions", i)
		l.str("entrant_id", s.EntrantID)
		l.str("tote", s.Tote)
		l.str("product_name", s.ProductName)
	}
	for i := range d.TotePools {
		tp := &d.TotePools[i]
		l.at("data.tote_pools", i)
		l.str("product_type", tp.ProductType)
		l.str("status", tp.Status)
	}
	if d.MoneyTracker != nil {
		for i := range d.MoneyTracker.Entrants {
			l.at("data.money_tracker.entrants", i)
			l.str("entrant_id", d.MoneyTracker.Entrants[i].EntrantID)
		}
	}
	return l.err
}

// checkMeetingLimits applies the limits to one decoded meeting; a violation
// is a *FieldError, so only that meeting is skipped.
func checkMeetingLimits(m *Meeting) error {
	l := &limits{idx: -1}
	if !ValidID(m.Meeting) {
		return &FieldError{Field: "meeting", Reason: fmt.Sprintf("%q is not an API id", excerpt(m.Meeting)), Err: ErrInvalidID}
	}
	tc := ""
	if m.TrackCondition != nil {
		tc = *m.TrackCondition
	}
	for _, f := range [...]struct{ name, v string }{
		{"name", m.Name}, {"date", m.Date}, {"country", m.Country}, {"category", m.Category},
		{"category_name", m.CategoryName}, {"state", m.State}, {"track_condition", tc},
		{"tote_status", m.ToteStatus}, {"meeting_type", m.MeetingType},
	} {
		l.str(f.name, f.v)
	}
	l.count("races", len(m.Races), MaxListLen)
	if l.err == nil {
		for i := range m.Races {
			r := &m.Races[i]
			l.at("races", i)
			if !ValidID(r.ID) {
				l.fail("id", ErrInvalidID, "%q is not an API id", excerpt(r.ID))
			}
			for _, f := range [...]struct{ name, v string }{
				{"name", r.Name}, {"start_time", r.StartTime}, {"track_condition", r.TrackCondition},
				{"weather", r.Weather}, {"country", r.Country}, {"state", r.State}, {"status", r.Status},
			} {
				l.str(f.name, f.v)
			}
			l.num("race_number", r.RaceNumber, 0, MaxRunnerNumber)
			l.optNum("distance", r.Distance, 0, MaxDistance)
		}
	}
	// Meetings have no race id: report by field alone.
	var ve *ValidationError
	if errors.As(l.err, &ve) {
		return &FieldError{Field: ve.Field, Reason: ve.Reason, Err: ve.Err}
	}
	return nil
}
