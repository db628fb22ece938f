package stats_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/stats"
)

func TestSummarizeTakesNearestRankPercentiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		want stats.Summary
	}{
		{"none", nil, stats.Summary{}},
		{"one", []float64{7}, stats.Summary{N: 1, Min: 7, Avg: 7, P50: 7, P95: 7, P99: 7, Max: 7}},
		{"ten, unsorted", []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5},
			stats.Summary{N: 10, Min: 1, Avg: 5.5, P50: 5, P95: 10, P99: 10, Max: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xs := append([]float64(nil), tc.xs...)
			require.Equal(t, tc.want, stats.Summarize(xs))
			require.Equal(t, tc.xs, xs, "the samples are left as they are")
		})
	}
}

func TestNearestRankOfAHundredIsTheSampleAtThatRank(t *testing.T) {
	t.Parallel()
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	require.Equal(t, 50.0, stats.NearestRank(xs, .50))
	require.Equal(t, 95.0, stats.NearestRank(xs, .95))
	require.Equal(t, 100.0, stats.NearestRank(xs, 1))
	require.Zero(t, stats.NearestRank(nil, .5))
}
