package nztab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrUnknownStatus matches (errors.Is) every *UnknownStatusError, for callers
// that only need the condition and not the offending value.
var ErrUnknownStatus = errors.New("nztab: unknown race status")

// ErrRaceNotFound matches (errors.Is) a fetch of a race the API answers with
// 404: the poll should end "skipped" and the race stop being polled, rather
// than be retried or poisoned.
var ErrRaceNotFound = errors.New("nztab: race not found")

// ErrFetchBudget matches (errors.Is) a fetch that ended because its
// ClientConfig.TotalTimeout was spent, or because the next wait would not
// fit in what was left. Such a *FetchError is temporary.
var ErrFetchBudget = errors.New("nztab: fetch budget spent")

// ErrRetryAfterTooLong matches (errors.Is) a fetch that ended because the
// server's Retry-After exceeded ClientConfig.MaxRetryAfter. Such a
// *FetchError is temporary: the server is rate limiting us.
var ErrRetryAfterTooLong = errors.New("nztab: Retry-After too long")

// maxExcerpt bounds how much of an untrusted body or message is copied into
// an error, so errors stay loggable.
const maxExcerpt = 200

// UnknownStatusError is a race status ParseStatus does not know.
type UnknownStatusError struct {
	// Value is the raw status as the API sent it.
	Value string
}

// Error implements error.
func (e *UnknownStatusError) Error() string {
	return fmt.Sprintf("unknown race status %q", excerpt(e.Value))
}

// Unwrap lets errors.Is(err, ErrUnknownStatus) match.
func (e *UnknownStatusError) Unwrap() error { return ErrUnknownStatus }

// ValidationError says that a decoded event payload breaks a rule: which race,
// which field (a JSON path such as data.runners[3].runner_number) and what was
// wrong. It is permanent: fetching the same payload again cannot fix it.
type ValidationError struct {
	// RaceID is the race the payload claims to describe; empty when the
	// payload names no race.
	RaceID string
	// Field is the JSON path of the offending value.
	Field string
	// Reason says what is wrong with the value.
	Reason string
	// Err is the underlying cause, when there is one (for example an
	// *UnknownStatusError for data.race.status).
	Err error
}

// Error implements error.
func (e *ValidationError) Error() string {
	id := e.RaceID
	if id == "" {
		id = "<unknown>"
	}
	return fmt.Sprintf("race %s: field %s: %s", id, e.Field, e.Reason)
}

// Unwrap exposes the cause, so errors.As can reach an *UnknownStatusError.
func (e *ValidationError) Unwrap() error { return e.Err }

// DecodeError is a body that is not valid JSON or whose JSON types do not fit
// the payload types. It is permanent.
type DecodeError struct {
	// Payload names what was being decoded: "event", "meetings" or "meeting".
	Payload string
	// Offset is where the offending value starts (-1 when the decoder gave
	// none); for a single meeting it is relative to that meeting's JSON.
	Offset int64
	// Field is the JSON path of the offending value, when known, e.g.
	// data.runners[2].barrier (for a single meeting, inside it).
	Field string
	// Err is the JSON decoder's error.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nztab: decode %s", e.Payload)
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %d", e.Offset)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s)", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap exposes the JSON decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// FieldError is a meeting field that breaks a rule. Meetings have no race id,
// so they are reported by field alone inside a MeetingError.
type FieldError struct {
	// Field is the JSON path inside the meeting, e.g. "date" or "races[2].id".
	Field string
	// Reason says what is wrong with the value.
	Reason string
	// Err is the underlying cause, when there is one.
	Err error
}

// Error implements error.
func (e *FieldError) Error() string { return fmt.Sprintf("field %s: %s", e.Field, e.Reason) }

// Unwrap exposes the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// MeetingError reports one element of data.meetings that was skipped. Err is
// a *DecodeError (wrong JSON type) or a *FieldError (rule broken).
type MeetingError struct {
	// Index is the element's position in the whole day's list, counting
	// across pages.
	Index int
	// MeetingID is the element's "meeting" value when it could be read.
	MeetingID string
	// Err says why the meeting was skipped.
	Err error
}

// Error implements error.
func (e *MeetingError) Error() string {
	id := e.MeetingID
	if id == "" {
		id = "<unknown>"
	}
	return fmt.Sprintf("data.meetings[%d] (meeting %s): %v", e.Index, id, e.Err)
}

// Unwrap exposes the cause.
func (e *MeetingError) Unwrap() error { return e.Err }

// BodyTooLargeError is a response body longer than ClientConfig.MaxBodyBytes.
// It is permanent: the same request would return the same body.
type BodyTooLargeError struct {
	// Limit is the configured maximum in bytes.
	Limit int64
	// ContentLength is the length the server announced, or -1 when the body
	// was cut off while reading.
	ContentLength int64
}

// Error implements error.
func (e *BodyTooLargeError) Error() string {
	if e.ContentLength >= 0 {
		return fmt.Sprintf("nztab: response body of %d bytes exceeds limit of %d bytes", e.ContentLength, e.Limit)
	}
	return fmt.Sprintf("nztab: response body exceeds limit of %d bytes", e.Limit)
}

// RedirectError is a 3xx response. The client follows no redirect: the API
// never sends one, and following it could carry the partner headers to
// another host (or loop). It is permanent: fix the base URL.
type RedirectError struct {
	// StatusCode is the 3xx status.
	StatusCode int
	// Location is the redirect target, redacted and bounded; empty when
	// the response had none.
	Location string
}

// Error implements error.
func (e *RedirectError) Error() string {
	return fmt.Sprintf("nztab: HTTP %d redirect to %q not followed (the API does not redirect; check the base URL)", e.StatusCode, e.Location)
}

// StatusError is a non-2xx HTTP response.
type StatusError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Status is the status line text, e.g. "503 Service Unavailable".
	Status string
	// BodyExcerpt is at most the first 200 bytes of the body.
	BodyExcerpt string
}

// Error implements error. The body shows as one line of at most
// shownBody characters: enough to tell an HTML error page from a JSON one.
func (e *StatusError) Error() string {
	body := oneLine(e.BodyExcerpt, shownBody)
	if body == "" {
		return fmt.Sprintf("HTTP %s", e.Status)
	}
	return fmt.Sprintf("HTTP %s (body: %s)", e.Status, body)
}

// shownBody bounds the body an error message shows.
const shownBody = 60

// oneLine collapses s's runs of white space and control characters into
// single spaces and cuts it to n runes, marking the cut.
func oneLine(s string, n int) string {
	var b strings.Builder
	space, runes := false, 0
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if runes == n {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
			runes++
		}
		b.WriteRune(r)
		runes++
	}
	return b.String()
}

// FetchError is the one error type the Client returns. Temporary tells the
// caller whether trying again later can help: it is true only when every
// attempt failed for a transient reason (network, timeout, 5xx, 429) and the
// retries, the fetch budget or the server's patience (Retry-After) ran out.
// Decode, validation, 4xx, 3xx, bad race id and too-large failures are
// permanent; a cancelled or expired caller context is neither (check it with
// errors.Is(err, context.Canceled) / context.DeadlineExceeded), and its
// message says "interrupted".
type FetchError struct {
	// RaceID is the requested race; empty for meetings fetches.
	RaceID string
	// URL is the request URL with any user info redacted.
	URL string
	// Attempts is how many HTTP requests were made.
	Attempts int
	// StatusCode is the HTTP status of the last response, 0 when none came.
	StatusCode int
	// Temporary says whether a later retry may succeed.
	Temporary bool
	// Err is the cause of the last failure.
	Err error
}

// Error implements error.
func (e *FetchError) Error() string {
	var b strings.Builder
	b.WriteString("nztab: fetch")
	if e.URL == "" {
		fmt.Fprintf(&b, " race %s", e.RaceID)
	} else {
		// The query is the same on every request; the path names the race.
		u, _, _ := strings.Cut(e.URL, "?")
		fmt.Fprintf(&b, " GET %s", u)
	}
	fmt.Fprintf(&b, " (%d attempt", e.Attempts)
	if e.Attempts != 1 {
		b.WriteString("s")
	}
	switch {
	case e.Temporary:
		b.WriteString(", temporary")
	case errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded):
		b.WriteString(", interrupted") // the caller's context ended: neither
	default:
		b.WriteString(", permanent")
	}
	fmt.Fprintf(&b, "): %v", e.Err)
	return b.String()
}

// Unwrap exposes the cause, so errors.Is/As reach ErrRaceNotFound,
// *ValidationError, *DecodeError, *StatusError, context errors and so on.
func (e *FetchError) Unwrap() error { return e.Err }

// IsTemporary reports whether err is a *FetchError whose retries ran out on a
// transient failure, i.e. whether trying again later may help.
func IsTemporary(err error) bool {
	var fe *FetchError
	return errors.As(err, &fe) && fe.Temporary
}

// excerpt cuts s to at most maxExcerpt bytes without splitting a UTF-8
// sequence, so untrusted text stays bounded inside error messages.
func excerpt(s string) string {
	if len(s) <= maxExcerpt {
		return s
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
