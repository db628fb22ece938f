package nztabsim

import (
	"errors"
	"fmt"
	"time"
)

// FaultKind names an injected failure. The values are what the X-Sim-Fault
// request header (or the sim_fault query parameter) accepts.
type FaultKind string

// Fault kinds.
const (
	// FaultNone serves the normal response, overriding random faults.
	FaultNone FaultKind = "none"
	// FaultServerError answers 500 with a JSON error body.
	FaultServerError FaultKind = "500"
	// FaultTimeout never answers: the handler holds the request until the
	// client gives up (its context ends).
	FaultTimeout FaultKind = "timeout"
	// FaultMalformed answers 200 with a body that is not valid JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultTruncate answers 200, declares the full Content-Length, sends half
	// the body and drops the connection.
	FaultTruncate FaultKind = "truncate"
	// FaultRateLimit answers 429 with Retry-After: 1.
	FaultRateLimit FaultKind = "429"
	// FaultNotFound answers 404 with a JSON error body.
	FaultNotFound FaultKind = "404"
)

// FaultHeader is the request header that forces a fault on one request.
const FaultHeader = "X-Sim-Fault"

// faultQueryParam is the query parameter equivalent of FaultHeader.
const faultQueryParam = "sim_fault"

// ErrUnknownFault is returned for a fault kind the simulator does not know.
var ErrUnknownFault = errors.New("nztabsim: unknown fault kind")

// ErrInvalidFaults marks a Faults that SetFaults rejects.
var ErrInvalidFaults = errors.New("nztabsim: invalid faults")

// ParseFaultKind checks a fault kind name.
func ParseFaultKind(s string) (FaultKind, error) {
	switch k := FaultKind(s); k {
	case FaultNone, FaultServerError, FaultTimeout, FaultMalformed, FaultTruncate, FaultRateLimit, FaultNotFound:
		return k, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownFault, s)
}

// Faults are random failures applied to every request. Rates are
// probabilities per request; at most one fault hits a request, so the rates
// must add up to at most 1.
type Faults struct {
	// Latency delays every response (in real time, not simulated time).
	Latency time.Duration
	// ErrorRate answers 500.
	ErrorRate float64
	// TimeoutRate holds the request until the client's context ends.
	TimeoutRate float64
	// MalformedRate answers with invalid JSON.
	MalformedRate float64
	// TruncateRate cuts the body short.
	TruncateRate float64
	// RateLimitRate answers 429 with Retry-After: 1.
	RateLimitRate float64
}

// Validate checks the rates and the latency.
func (f Faults) Validate() error {
	if f.Latency < 0 {
		return fmt.Errorf("%w: Latency must not be negative, got %s", ErrInvalidFaults, f.Latency)
	}
	sum := 0.0
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"ErrorRate", f.ErrorRate}, {"TimeoutRate", f.TimeoutRate}, {"MalformedRate", f.MalformedRate},
		{"TruncateRate", f.TruncateRate}, {"RateLimitRate", f.RateLimitRate},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%w: %s must be in [0, 1], got %g", ErrInvalidFaults, r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("%w: rates add up to %g, more than 1", ErrInvalidFaults, sum)
	}
	return nil
}

// SetFaults replaces the random faults; it takes effect for requests that
// arrive afterwards.
func (s *Sim) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.faults = f
	return nil
}

// Faults returns the random faults in force.
func (s *Sim) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults
}

// SetRaceFault makes every event request for one race fail with kind, while
// other races flow. FaultNone exempts the race from random faults.
func (s *Sim) SetRaceFault(raceID string, kind FaultKind) error {
	if _, err := ParseFaultKind(string(kind)); err != nil {
		return err
	}
	if _, ok := s.byID[raceID]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownRace, raceID)
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.raceFaults[raceID] = kind
	return nil
}

// ClearRaceFault removes the race's fault override.
func (s *Sim) ClearRaceFault(raceID string) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	delete(s.raceFaults, raceID)
}

// chooseFault decides the fault of one request: a forced one (header or
// query) first, then the race's override, then a random draw. The draw uses
// its own generator, so faults never disturb the payloads. An unknown forced
// kind is reported as an error.
func (s *Sim) chooseFault(forced, raceID string) (FaultKind, time.Duration, error) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := s.faults
	if forced != "" {
		k, err := ParseFaultKind(forced)
		return k, f.Latency, err
	}
	if k, ok := s.raceFaults[raceID]; ok && raceID != "" {
		return k, f.Latency, nil
	}
	total := f.ErrorRate + f.TimeoutRate + f.MalformedRate + f.TruncateRate + f.RateLimitRate
	if total <= 0 {
		return FaultNone, f.Latency, nil
	}
	u := s.faultRand.Float64()
	for _, c := range []struct {
		rate float64
		kind FaultKind
	}{
		{f.ErrorRate, FaultServerError}, {f.TimeoutRate, FaultTimeout}, {f.MalformedRate, FaultMalformed},
		{f.TruncateRate, FaultTruncate}, {f.RateLimitRate, FaultRateLimit},
	} {
		if u < c.rate {
			return c.kind, f.Latency, nil
		}
		u -= c.rate
	}
	return FaultNone, f.Latency, nil
}
