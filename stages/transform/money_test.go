package transform

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nztab"
)

func TestHundredthsRoundsTheDecimalTheAPISent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   float64
		want int64
	}{
		{9151.38, 915138}, // 9151.38×100 is 915137.99999… in float64
		{3923.51, 392351},
		{8126.61, 812661},
		{0, 0},
		{17000, 1700000},
		{1.005, 101},  // float64 1.005×100 = 100.4999…; the API said 1.005
		{0.285, 29},   // 28.499999999999996 in float64
		{2.675, 268},  // the classic binary-float tie
		{1.004, 100},  // below half
		{1.0049, 100}, // only the third decimal decides
		{2333.333, 233333},
		{0.001, 0},
		{0.005, 1},
		{-1.005, -101}, // symmetric: half away from zero
		{18, 1800},
		{0.45, 45},
		{8.9e16, 8900000000000000000},
	}
	for _, c := range cases {
		got, ok := hundredths(c.in)
		require.True(t, ok, "%v", c.in)
		require.Equal(t, c.want, got, "%v", c.in)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 9e16, -1e300, 1e300} {
		_, ok := hundredths(bad)
		require.False(t, ok, "%v", bad)
	}
}

func TestMulDivHalfUpIsExactAndDetectsOverflow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b, d int64
		want    int64
		ok      bool
	}{
		{915138, 1800, 10000, 164725, true}, // 164724.84
		{392351, 1800, 10000, 70623, true},  // 70623.18
		{1, 5000, 10000, 1, true},           // exactly half rounds up
		{1, 4999, 10000, 0, true},
		{0, 1234, 10000, 0, true},
		{math.MaxInt64, 10000, 10000, math.MaxInt64, true}, // 128-bit intermediate
		{math.MaxInt64, math.MaxInt64, 1, 0, false},        // result too large
		{-1, 1, 1, 0, false},
		{1, 1, 0, 0, false},
	}
	for _, c := range cases {
		got, ok := mulDivHalfUp(c.a, c.b, c.d)
		require.Equal(t, c.ok, ok, "%d×%d/%d", c.a, c.b, c.d)
		if c.ok {
			require.Equal(t, c.want, got, "%d×%d/%d", c.a, c.b, c.d)
		}
	}
}

func TestPoolAmountsMatchDomainVectors(t *testing.T) {
	t.Parallel()
	// docs/DOMAIN.md §2.3. W and P are dollars; amounts are cents.
	cases := []struct {
		name                 string
		hold, win, place     float64
		wantWin, wantPlace   int64
		wantTotal            int64
		wantWinPct, wantPPct float64
	}{
		{"h 15.5", 15.5, 50000, 30000, 775000, 465000, 1240000, 15.5, 15.5},
		{"RUJI h 11", 11, 75000, 50000, 825000, 550000, 1375000, 11, 11},
		{"rounding case", 100, 3500, 2333.333, 350000, 233333, 583333, 100, 100},
		{"large case", 50, 2500000, 1500000, 125000000, 75000000, 200000000, 50, 50},
		{"Tickford", 18, 9151.38, 3923.51, 164725, 70623, 235348, 18, 18},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev := baseEvent()
			ev.Data.Runners = ev.Data.Runners[:1]
			ev.Data.MoneyTracker.Entrants = []nztab.MoneyTrackerEntry{{EntrantID: "e-2", HoldPercentage: c.hold, BetPercentage: 1}}
			ev.Data.TotePools = []nztab.TotePool{{ProductType: "Win", Total: c.win}, {ProductType: "Place", Total: c.place}}
			s, err := Transform(ev, testStart)
			require.NoError(t, err)
			require.Len(t, s.MoneyFlow, 1)
			mf := s.MoneyFlow[0]
			require.Equal(t, c.wantWin, mf.WinPoolAmount)
			require.Equal(t, c.wantPlace, mf.PlacePoolAmount)
			require.Equal(t, c.wantTotal, mf.TotalPoolAmount)
			require.Equal(t, ptr(c.wantWinPct), mf.WinPoolPercentage)
			require.Equal(t, ptr(c.wantPPct), mf.PlacePoolPercentage)
			require.Equal(t, c.hold, mf.HoldPercentage)
		})
	}
}
