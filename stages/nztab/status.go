package nztab

import "strings"

// Status is a race status as the pipeline and the database spell it: lower
// case, one of the Status constants. The API capitalises statuses and has
// used synonyms over the years, so every raw value goes through ParseStatus.
type Status string

// The race lifecycle is open → closed → interim → final; abandoned can
// happen at any point (docs/DOMAIN.md §1.4).
const (
	// StatusOpen means betting is open.
	StatusOpen Status = "open"
	// StatusClosed means betting has closed; the race is about to run or running.
	StatusClosed Status = "closed"
	// StatusInterim means a provisional result and interim dividends exist.
	StatusInterim Status = "interim"
	// StatusFinal means the result and dividends are official.
	StatusFinal Status = "final"
	// StatusAbandoned means the race will not be run.
	StatusAbandoned Status = "abandoned"
)

// ParseStatus maps a raw API status to a Status. Matching ignores case and
// surrounding space. Legacy synonyms are accepted: "finalized"/"finalised"
// mean final and "paying" (dividends are being paid on a provisional result)
// means interim. Anything else is an *UnknownStatusError, which matches
// ErrUnknownStatus with errors.Is, so a new upstream value is reported rather
// than silently stored.
func ParseStatus(s string) (Status, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "open":
		return StatusOpen, nil
	case "closed":
		return StatusClosed, nil
	case "interim", "paying":
		return StatusInterim, nil
	case "final", "finalized", "finalised":
		return StatusFinal, nil
	case "abandoned":
		return StatusAbandoned, nil
	}
	return "", &UnknownStatusError{Value: s}
}

// Valid reports whether s is one of the Status constants; the zero Status is
// not valid.
func (s Status) Valid() bool {
	switch s {
	case StatusOpen, StatusClosed, StatusInterim, StatusFinal, StatusAbandoned:
		return true
	}
	return false
}

// String returns the database spelling of the status.
func (s Status) String() string { return string(s) }
