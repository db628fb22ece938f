package transform

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTimeToStartRoundsHalvesTowardPositiveInfinity(t *testing.T) {
	t.Parallel()
	start := testStart
	cases := []struct {
		name   string
		before time.Duration // start − observedAt
		want   int
	}{
		{"exactly at start", 0, 0},
		{"3.5 minutes before rounds up", 3*time.Minute + 30*time.Second, 4},
		{"2m29s before rounds down", 2*time.Minute + 29*time.Second, 2},
		{"2m30s before rounds up", 2*time.Minute + 30*time.Second, 3},
		{"2m29.999999999s before rounds down", 2*time.Minute + 30*time.Second - 1, 2},
		{"1.5 minutes after rounds toward +inf", -(time.Minute + 30*time.Second), -1},
		{"1m31s after rounds to -2", -(time.Minute + 31*time.Second), -2},
		{"29s after is 0", -29 * time.Second, 0},
		{"30s after is 0 (half)", -30 * time.Second, 0},
		{"31s after is -1", -31 * time.Second, -1},
		{"80 minutes before", 80 * time.Minute, 80},
		{"a day after", -24 * time.Hour, -1440},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, c.want, TimeToStart(start, start.Add(-c.before)))
		})
	}
}

func TestTimeToStartSaturatesInsteadOfOverflowing(t *testing.T) {
	t.Parallel()
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	old := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Positive(t, TimeToStart(far, old))
	require.Negative(t, TimeToStart(old, far))
}

func TestTimeIntervalAndTypeAtEveryBucketEdge(t *testing.T) {
	t.Parallel()
	cases := []struct {
		t        int
		interval int
		kind     string
	}{
		{80, 60, IntervalFiveMinutes},
		{60, 60, IntervalFiveMinutes},
		{59, 55, IntervalFiveMinutes},
		{55, 55, IntervalFiveMinutes},
		{54, 50, IntervalFiveMinutes},
		{31, 30, IntervalFiveMinutes},
		{30, 30, IntervalTwoMinutes},
		{29, 25, IntervalTwoMinutes},
		{10, 10, IntervalTwoMinutes},
		{6, 5, IntervalTwoMinutes},
		{5, 5, IntervalThirtySecs},
		{4, 4, IntervalThirtySecs},
		{3, 3, IntervalThirtySecs},
		{2, 2, IntervalThirtySecs},
		{1, 1, IntervalThirtySecs},
		{0, 0, IntervalLive},
		{-1, -1, IntervalLive},
		{-2, -2, IntervalLive},
		{-5, -5, IntervalLive},
		{-6, -6, IntervalLive},
		{-10, -10, IntervalLive},
	}
	for _, c := range cases {
		require.Equal(t, c.interval, TimeInterval(c.t), "time_interval(%d)", c.t)
		require.Equal(t, c.kind, IntervalType(c.t), "interval_type(%d)", c.t)
	}
}

func TestTimeMetadataMatchesDomainExamples(t *testing.T) {
	t.Parallel()
	// docs/DOMAIN.md §2.5 table, race starting 00:50:00Z.
	cases := []struct {
		at       time.Time
		tts      int
		interval int
		kind     string
	}{
		{time.Date(2025, 7, 16, 23, 30, 0, 0, time.UTC), 80, 60, IntervalFiveMinutes},
		{time.Date(2025, 7, 17, 0, 20, 0, 0, time.UTC), 30, 30, IntervalTwoMinutes},
		{time.Date(2025, 7, 17, 0, 46, 30, 0, time.UTC), 4, 4, IntervalThirtySecs},
		{time.Date(2025, 7, 17, 0, 51, 0, 0, time.UTC), -1, -1, IntervalLive},
	}
	for _, c := range cases {
		ev := baseEvent()
		s, err := Transform(ev, c.at)
		require.NoError(t, err)
		require.NotEmpty(t, s.MoneyFlow)
		for _, mf := range s.MoneyFlow {
			require.Equal(t, c.tts, mf.TimeToStart, c.at)
			require.Equal(t, c.interval, mf.TimeInterval, c.at)
			require.Equal(t, c.kind, mf.IntervalType, c.at)
		}
	}
}
