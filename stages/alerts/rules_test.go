package alerts_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/alerts"
)

// start is the advertised start of the races built below.
var start = time.Date(2026, 3, 14, 2, 0, 0, 0, time.UTC)

// runner is a money-flow row with its prices.
type runner struct {
	id          string
	hold        float64
	cents       int64
	fixed, pool float64
}

// poll builds a poll minutes before the start (seconds within the minute
// as given), bucketed as the transform buckets it.
func poll(minutes, seconds int, rs ...runner) alerts.Poll {
	at := start.Add(-time.Duration(minutes)*time.Minute - time.Duration(seconds)*time.Second)
	p := alerts.Poll{At: at, MinutesToStart: minutes, Bucket: bucket(minutes), Open: true}
	for _, r := range rs {
		p.Runners = append(p.Runners, alerts.Runner{EntrantID: r.id, HoldPct: r.hold, WinCents: r.cents,
			FixedWin: r.fixed, PoolWin: r.pool})
	}
	return p
}

func bucket(t int) int {
	switch {
	case t >= 60:
		return 60
	case t >= 5:
		return t - t%5
	default:
		return t
	}
}

func history(polls ...alerts.Poll) alerts.History { return alerts.History{RaceID: "r1", Polls: polls} }

// priced is a runner with only prices (and a little money, so it has a row).
func priced(id string, fixed, pool float64) runner {
	return runner{id: id, hold: 10, cents: 10_000, fixed: fixed, pool: pool}
}

func f(v float64) *float64 { return &v }
func c(v int64) *int64     { return &v }

func TestWinPoolIsRecoveredFromTheRunnersRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    alerts.Poll
		want int64
	}{
		// W = $10,000: rows of 20, 30 and 45 % hold are 200000, 300000 and
		// 450000 cents; 950000 × 100 / 95 = 1000000.
		{"exact", poll(3, 0, runner{id: "a", hold: 20, cents: 200_000}, runner{id: "b", hold: 30, cents: 300_000},
			runner{id: "c", hold: 45, cents: 450_000}), 1_000_000},
		// W = 1234567: rows round(W × 0.20) = 246913, round(W × 0.305) =
		// 376543, round(W × 0.45) = 555555; 1179011 × 100 / 95.5 =
		// 1234566.49, half a cent per runner from W.
		{"rounded rows", poll(3, 0, runner{id: "a", hold: 20, cents: 246_913}, runner{id: "b", hold: 30.5, cents: 376_543},
			runner{id: "c", hold: 45, cents: 555_555}), 1_234_566},
		{"no hold", poll(3, 0, runner{id: "a"}), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.p.WinPool())
		})
	}
}

func TestPriceMovesFireAtThePollThatFirstCrossesTheThreshold(t *testing.T) {
	t.Parallel()
	cfg := alerts.DefaultConfig() // 30 points, or 200 % relative above 10 %, within 10 minutes
	tests := []struct {
		name string
		h    alerts.History
		want []alerts.Alert
	}{{
		// 10.00 → 2.50 is 10 % → 40 %: +30 points at the 3-minute poll.
		name: "steamer by points",
		h:    history(poll(12, 0, priced("a", 10, 11)), poll(9, 0, priced("a", 10, 11)), poll(3, 0, priced("a", 2.5, 11))),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 3,
			FiredAt: start.Add(-3 * time.Minute), MinutesToStart: 3, ReferenceAt: start.Add(-12 * time.Minute),
			Source: alerts.SourceFixedWin, BeforeOdds: f(10), AfterOdds: f(2.5), BeforePct: f(10), AfterPct: f(40),
			ChangePct: f(30), Ratio: f(4)}},
	}, {
		// 5.00 → 2.08 is 20 % → 48.08 %: +28.08 points, ×2.40 (140 %): neither.
		name: "28 points and 140 % fire nothing",
		h:    history(poll(12, 0, priced("a", 5, 0)), poll(3, 0, priced("a", 2.08, 0))),
	}, {
		// 20.00 → 6.25 is 5 % → 16 %: +11 points but ×3.2 (220 %), 16 % above the floor.
		name: "steamer by relative move",
		h:    history(poll(12, 0, priced("a", 0, 20)), poll(4, 0, priced("a", 0, 6.25))),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 4,
			FiredAt: start.Add(-4 * time.Minute), MinutesToStart: 4, ReferenceAt: start.Add(-12 * time.Minute),
			Source: alerts.SourcePoolWin, BeforeOdds: f(20), AfterOdds: f(6.25), BeforePct: f(5), AfterPct: f(16),
			ChangePct: f(11), Ratio: f(3.2)}},
	}, {
		// 50.00 → 12.50 is 2 % → 8 %: ×4, but a long shot (below 10 %) needs the points.
		name: "a long shot's relative move fires nothing",
		h:    history(poll(12, 0, priced("a", 50, 0)), poll(4, 0, priced("a", 12.5, 0))),
	}, {
		// 2.50 → 10.00 is 40 % → 10 %: −30 points.
		name: "drifter",
		h:    history(poll(11, 0, priced("a", 2.5, 0)), poll(2, 0, priced("a", 10, 0))),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindDrifter, Bucket: 2,
			FiredAt: start.Add(-2 * time.Minute), MinutesToStart: 2, ReferenceAt: start.Add(-11 * time.Minute),
			Source: alerts.SourceFixedWin, BeforeOdds: f(2.5), AfterOdds: f(10), BeforePct: f(40), AfterPct: f(10),
			ChangePct: f(-30), Ratio: f(0.25)}},
	}, {
		// Fixed 10 % → 40 % (+30), pool 10 % → 50 % (+40): the larger move is told.
		name: "the larger of the two prices",
		h:    history(poll(12, 0, priced("a", 10, 10)), poll(1, 0, priced("a", 2.5, 2))),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 1,
			FiredAt: start.Add(-time.Minute), MinutesToStart: 1, ReferenceAt: start.Add(-12 * time.Minute),
			Source: alerts.SourcePoolWin, BeforeOdds: f(10), AfterOdds: f(2), BeforePct: f(10), AfterPct: f(50),
			ChangePct: f(40), Ratio: f(5)}},
	}, {
		name: "no poll before the window",
		h:    history(poll(9, 0, priced("a", 10, 0)), poll(3, 0, priced("a", 2.5, 0))),
	}, {
		// The 10-minute poll is the reference, not in the window.
		name: "a move before the window",
		h:    history(poll(15, 0, priced("a", 10, 0)), poll(10, 0, priced("a", 2.5, 0))),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, alerts.Detect(cfg, tc.h))
		})
	}
}

func TestAPriceMoveThatHoldsFiresOnceAndAgainOnlyAfterFallingBack(t *testing.T) {
	t.Parallel()
	h := history(
		poll(12, 0, priced("a", 10, 0)),
		poll(4, 20, priced("a", 2.4, 0)), // +31.67 points: fires
		poll(4, 0, priced("a", 2.5, 0)),  // still beyond: nothing
		poll(3, 0, priced("a", 2.4, 0)),  // still beyond, in the next bucket: nothing
		poll(2, 0, priced("a", 5, 0)),    // back to +10
		poll(1, 0, priced("a", 2.5, 0)),  // beyond again: fires
	)
	got := alerts.Scan(alerts.DefaultConfig(), h)
	require.Len(t, got, 2)
	require.Equal(t, start.Add(-4*time.Minute-20*time.Second), got[0].FiredAt, "first crossing")
	require.Equal(t, 4, got[0].Bucket)
	require.Equal(t, start.Add(-time.Minute), got[1].FiredAt, "crossing again after falling back")
	require.Equal(t, 1, got[1].Bucket)
}

// money is a runner's win money in cents.
type money struct {
	id    string
	cents int64
}

// moneyPoll is a poll whose runners hold the given money: hold % is each
// one's share of it, as the money tracker would say.
func moneyPoll(minutes, seconds int, ms ...money) alerts.Poll {
	var sum int64
	for _, m := range ms {
		sum += m.cents
	}
	rs := make([]runner, len(ms))
	for i, m := range ms {
		rs[i] = runner{id: m.id, hold: float64(m.cents) * 100 / float64(sum), cents: m.cents}
	}
	return poll(minutes, seconds, rs...)
}

func TestLateMoneyComparesTheBucketsMoneyWithThePoolBeforeIt(t *testing.T) {
	t.Parallel()
	cfg := alerts.DefaultConfig() // ×2, at least $10,000, within 5 minutes
	before := moneyPoll(5, 0, money{"a", 1_000_000}, money{"b", 9_000_000})
	tests := []struct {
		name string
		h    alerts.History
		want []alerts.Alert
	}{{
		// Before the bucket: a holds $10,000 of $100,000 (10 %). In bucket
		// 3, $15,000 comes in: a takes $10,000 (66.67 %, 6.67 × 10 %), b
		// $5,000 (33.33 % of it, 0.37 × its 90 %).
		name: "a runner takes far more than its share",
		h:    history(before, moneyPoll(3, 0, money{"a", 2_000_000}, money{"b", 9_500_000})),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindLateMoney, Bucket: 3,
			FiredAt: start.Add(-3 * time.Minute), MinutesToStart: 3, ReferenceAt: start.Add(-5 * time.Minute),
			BeforeCents: c(1_000_000), AfterCents: c(2_000_000), WindowCents: c(1_500_000),
			BeforePct: f(10), AfterPct: f(66.67), Ratio: f(6.67)}},
	}, {
		// $9,900 is 93.4 % of what came in, but below the $10,000 minimum.
		name: "below the minimum amount",
		h:    history(before, moneyPoll(3, 0, money{"a", 1_990_000}, money{"b", 9_070_000})),
	}, {
		// a takes $10,000 of $60,000 that came in: 16.67 %, under 2 × 10 %.
		name: "its share of the money, no more",
		h: history(moneyPoll(5, 0, money{"a", 2_000_000}, money{"b", 18_000_000}),
			moneyPoll(3, 0, money{"a", 3_000_000}, money{"b", 23_000_000})),
	}, {
		// The increments add up over the bucket: $3,000 at the first poll,
		// $11,000 by the second, measured from the poll before the bucket:
		// 84.62 % of the $13,000 that came in, 8.46 × its 10 %.
		name: "fires at the poll where the bucket's money first qualifies",
		h: history(before, moneyPoll(3, 20, money{"a", 1_300_000}, money{"b", 9_100_000}),
			moneyPoll(3, 0, money{"a", 2_100_000}, money{"b", 9_200_000})),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "a", Kind: alerts.KindLateMoney, Bucket: 3,
			FiredAt: start.Add(-3 * time.Minute), MinutesToStart: 3, ReferenceAt: start.Add(-5 * time.Minute),
			BeforeCents: c(1_000_000), AfterCents: c(2_100_000), WindowCents: c(1_300_000),
			BeforePct: f(10), AfterPct: f(84.62), Ratio: f(8.46)}},
	}, {
		name: "outside the window",
		h:    history(moneyPoll(6, 0, money{"a", 1_000_000}, money{"b", 9_000_000}), moneyPoll(5, 0, money{"a", 2_000_000}, money{"b", 9_500_000})),
	}, {
		// A runner new to the money (no share before) fires on the amount.
		name: "a runner with no money before",
		h:    history(before, moneyPoll(3, 0, money{"a", 1_000_000}, money{"b", 9_000_000}, money{"c", 1_200_000})),
		want: []alerts.Alert{{RaceID: "r1", EntrantID: "c", Kind: alerts.KindLateMoney, Bucket: 3,
			FiredAt: start.Add(-3 * time.Minute), MinutesToStart: 3, ReferenceAt: start.Add(-5 * time.Minute),
			BeforeCents: c(0), AfterCents: c(1_200_000), WindowCents: c(1_200_000),
			BeforePct: f(0), AfterPct: f(100)}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, alerts.Detect(cfg, tc.h))
		})
	}
}

func TestLateMoneyFiresOncePerBucket(t *testing.T) {
	t.Parallel()
	h := history(moneyPoll(5, 0, money{"a", 1_000_000}, money{"b", 9_000_000}),
		moneyPoll(3, 20, money{"a", 2_000_000}, money{"b", 9_100_000}), // fires
		moneyPoll(3, 0, money{"a", 3_000_000}, money{"b", 9_200_000}),  // still qualifies: same bucket
		moneyPoll(2, 0, money{"a", 3_100_000}, money{"b", 9_900_000}),  // bucket 2: a takes its share
	)
	got := alerts.Scan(alerts.DefaultConfig(), h)
	require.Len(t, got, 1)
	require.Equal(t, start.Add(-3*time.Minute-20*time.Second), got[0].FiredAt)
}

func TestPoolSurgeIsTheWinPoolsGrowthWithinABucket(t *testing.T) {
	t.Parallel()
	cfg := alerts.DefaultConfig() // 50 %, at least $1,000, within 10 minutes
	pool := func(minutes int, cents int64) alerts.Poll {
		return poll(minutes, 0, runner{id: "a", hold: 40, cents: cents * 40 / 100}, runner{id: "b", hold: 60, cents: cents * 60 / 100})
	}
	tests := []struct {
		name string
		h    alerts.History
		want []alerts.Alert
	}{{
		// $10,000 → $16,000 within bucket 4: +60 %.
		name: "surge",
		h:    history(pool(5, 1_000_000), pool(4, 1_600_000)),
		want: []alerts.Alert{{RaceID: "r1", Kind: alerts.KindPoolSurge, Bucket: 4,
			FiredAt: start.Add(-4 * time.Minute), MinutesToStart: 4, ReferenceAt: start.Add(-5 * time.Minute),
			BeforeCents: c(1_000_000), AfterCents: c(1_600_000), WindowCents: c(600_000), ChangePct: f(60), Ratio: f(1.6)}},
	}, {
		name: "growth of 40 %",
		h:    history(pool(5, 1_000_000), pool(4, 1_400_000)),
	}, {
		// $1,000 → $1,900 is +90 % but only $900.
		name: "a thin pool",
		h:    history(pool(5, 100_000), pool(4, 190_000)),
	}, {
		name: "outside the window",
		h:    history(pool(15, 1_000_000), pool(10, 1_600_000)),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, alerts.Detect(cfg, tc.h))
		})
	}
}

func TestDetectIgnoresHistoryBeyondItsSpan(t *testing.T) {
	t.Parallel()
	cfg := alerts.DefaultConfig()
	// The reference poll is 16 minutes before the judged one: beyond the
	// 15-minute span (10-minute window + 5), so there is no reference.
	far := poll(15, 0, priced("a", 10, 0))
	h := history(far, poll(5, 0, priced("a", 10, 0)), poll(-1, 0, priced("a", 2.5, 0)))
	require.Equal(t, 15*time.Minute, alerts.Span(cfg))
	require.Empty(t, alerts.Detect(cfg, h))
	h.Polls[0] = poll(14, 0, priced("a", 10, 0))
	require.Len(t, alerts.Detect(cfg, h), 1)
}

func TestAnAlertsIDIsItsNaturalKey(t *testing.T) {
	t.Parallel()
	a := alerts.Alert{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 3, FiredAt: start}
	same := a
	same.FiredAt = start.Add(time.Second)
	require.Equal(t, a.ID(), same.ID(), "a redelivered or replayed alert keeps its id")
	for _, other := range []alerts.Alert{
		{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 2},
		{RaceID: "r1", EntrantID: "a", Kind: alerts.KindDrifter, Bucket: 3},
		{RaceID: "r1", EntrantID: "b", Kind: alerts.KindSteamer, Bucket: 3},
		{RaceID: "r2", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: 3},
		{RaceID: "r1", EntrantID: "a", Kind: alerts.KindSteamer, Bucket: -3},
	} {
		require.NotEqual(t, a.ID(), other.ID(), "%+v", other.Key())
	}
}

func TestOnlyAPollWhileTheRaceTakesBetsFires(t *testing.T) {
	t.Parallel()
	h := history(poll(12, 0, priced("a", 10, 0)), poll(3, 0, priced("a", 2.5, 0)))
	require.Len(t, alerts.Detect(alerts.DefaultConfig(), h), 1)
	h.Polls[1].Open = false
	require.Empty(t, alerts.Detect(alerts.DefaultConfig(), h), "a closed race's poll")
	require.False(t, alerts.Judged(alerts.DefaultConfig(), h.Polls[1]))
	require.False(t, alerts.Judged(alerts.DefaultConfig(), h.Polls[0]), "a poll outside every window")
}
