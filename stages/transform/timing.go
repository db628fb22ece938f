package transform

import (
	"math"
	"time"
)

// Interval types name the legacy polling cadence a money-flow row fell in
// (docs/DOMAIN.md §2.5); the money_flow_history CHECK allows exactly these.
const (
	IntervalFiveMinutes = "5m"
	IntervalTwoMinutes  = "2m"
	IntervalThirtySecs  = "30s"
	IntervalLive        = "live"
)

// TimeToStart is the whole minutes from observedAt to start, rounded like
// JavaScript's Math.round (halves toward +∞: 3.5 → 4, −1.5 → −1), which the
// stored history was built with. It is exact: floor((d + 30 s) / 60 s) on
// integer nanoseconds, with durations beyond ±292 years saturated.
func TimeToStart(start, observedAt time.Time) int {
	d := start.Sub(observedAt) // saturates at ±MaxInt64 ns
	const half = 30 * time.Second
	if d > math.MaxInt64-half {
		d = math.MaxInt64 - half
	}
	return int(floorDiv(int64(d+half), int64(time.Minute)))
}

// floorDiv is ⌊a/b⌋ for b > 0; Go's / truncates toward zero instead.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// TimeInterval is the timeline bucket of an integer time_to_start
// (docs/DOMAIN.md §2.5). Because t is an integer the legacy half-minute steps
// after the start collapse to t itself, which keeps the column an INTEGER.
func TimeInterval(t int) int {
	switch {
	case t >= 60:
		return 60
	case t >= 5:
		return t - t%5 // first of 55, 50, …, 5 with t ≥ bucket
	default:
		return t // 4, 3, 2, 1, 0 and every t < 0
	}
}

// IntervalType is the cadence label of an integer time_to_start. Note t = 0
// is bucket 0 but "live", as in the reference system.
func IntervalType(t int) string {
	switch {
	case t > 30:
		return IntervalFiveMinutes
	case t > 5:
		return IntervalTwoMinutes
	case t > 0:
		return IntervalThirtySecs
	default:
		return IntervalLive
	}
}
