package transform

import (
	"errors"
	"fmt"

	"github.com/raceflow/raceflow/stages/nztab"
)

// ErrUnknownStatus marks a race status the transform has no mapping for; it
// is the API package's sentinel, so one errors.Is check serves both stages.
// Guessing a lifecycle state would corrupt scheduling and the races CHECK
// constraint, so the poll fails permanently instead.
var ErrUnknownStatus = nztab.ErrUnknownStatus

// ErrMissingField marks a payload without a value the snapshot cannot be
// keyed or timed without (race id, meeting id, advertised start).
var ErrMissingField = errors.New("missing required field")

// ErrInvalidField marks a value that is present but unusable, such as an
// advertised start outside any plausible racing era.
var ErrInvalidField = errors.New("invalid field value")

// Error is a permanent transform failure: the same payload will fail the same
// way on every retry, so callers should send it to the poison queue rather
// than retry. It wraps a sentinel (ErrUnknownStatus, ErrMissingField,
// ErrInvalidField) for
// errors.Is.
type Error struct {
	RaceID string
	// Field is the payload path at fault, e.g. "data.race.status".
	Field  string
	Reason string
	Err    error
}

// Error implements error.
func (e *Error) Error() string {
	id := e.RaceID
	if id == "" {
		id = "(unknown)"
	}
	return fmt.Sprintf("transform race %s: %s: %s", id, e.Field, e.Reason)
}

// Unwrap exposes the sentinel so callers can branch with errors.Is.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports false: a transform is pure, so retrying the same input
// cannot succeed. It lets callers classify errors through an interface
// without importing this package.
func (e *Error) Retryable() bool { return false }
