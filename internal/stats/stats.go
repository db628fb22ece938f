// Package stats summarises samples of latency the one way raceflow reports
// them everywhere (bench, demo, metrics, the status page): min, mean,
// nearest-rank percentiles and max.
package stats

import (
	"math"
	"slices"
)

// Summary of samples.
type Summary struct {
	N                            int
	Min, Avg, P50, P95, P99, Max float64
}

// Summarize computes min, mean, nearest-rank percentiles and max of xs,
// which it leaves as they are.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Summary{N: len(s), Min: s[0], Avg: sum / float64(len(s)), P50: NearestRank(s, .50), P95: NearestRank(s, .95),
		P99: NearestRank(s, .99), Max: s[len(s)-1]}
}

// NearestRank is the nearest-rank p-percentile (0 < p ≤ 1) of sorted, 0
// when it is empty: the smallest sample with at least p of them at or
// below it.
func NearestRank(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}
