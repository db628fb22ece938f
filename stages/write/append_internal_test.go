package write

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/transform"
)

func TestHistorySpanIsTheSQLWindow(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var secs float64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT extract(epoch FROM `+historyWindow+`)::float8`).Scan(&secs))
	require.Equal(t, historySpan.Seconds(), secs)
}

func TestAppendMoneyOnlyExtendsASeriesWithinItsWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 7, 17, 1, 0, 0, 0, time.UTC)
	row := func(at time.Time, win int64) entry[transform.MoneyFlow] {
		return entry[transform.MoneyFlow]{row: transform.MoneyFlow{PollingTimestamp: at, EventTimestamp: at,
			WinPoolAmount: win, PlacePoolAmount: win / 2}}
	}
	s := []entry[transform.MoneyFlow]{row(t0, 100), row(t0.Add(time.Minute), 250)}

	rows, ok := appendMoney(s, storedMoney{})
	require.True(t, ok)
	require.Equal(t, [][2]int64{{100, 50}, {150, 75}}, [][2]int64{{rows[0].incWin, rows[0].incPlace}, {rows[1].incWin, rows[1].incPlace}},
		"the first row has no predecessor: its full amount")

	rows, ok = appendMoney(s, storedMoney{ok: true, polling: t0.Add(-time.Minute), event: t0.Add(-time.Minute), win: 40, place: 20})
	require.True(t, ok)
	require.Equal(t, int64(60), rows[0].incWin)

	for name, last := range map[string]storedMoney{
		"stored row at the first row's instant":       {ok: true, polling: t0, event: t0},
		"stored row after it":                         {ok: true, polling: t0.Add(time.Hour), event: t0.Add(time.Hour)},
		"predecessor beyond the window (SQL decides)": {ok: true, polling: t0.Add(-time.Minute), event: t0.Add(-historySpan - time.Second)},
	} {
		_, ok := appendMoney(s, last)
		require.False(t, ok, name)
	}
	far := []entry[transform.MoneyFlow]{row(t0, 100), row(t0.Add(historySpan+time.Second), 250)}
	_, ok = appendMoney(far, storedMoney{})
	require.False(t, ok, "consecutive rows further apart than the window")
}

func TestAppendOddsKeepsOnlyChangesOfMoreThanACent(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 7, 17, 1, 0, 0, 0, time.UTC)
	s := make([]entry[transform.Odds], 4)
	for i := range s {
		s[i] = entry[transform.Odds]{row: transform.Odds{EventTimestamp: t0.Add(time.Duration(i) * time.Minute)}}
	}
	kept, ok := appendOdds(s, storedOdds{ok: true, at: t0.Add(-time.Minute), cents: 250}, []int64{251, 253, 254, 252})
	require.True(t, ok)
	require.Equal(t, []bool{false, true, false, false}, kept, "compared with the latest kept row, not the previous candidate")

	kept, ok = appendOdds(s[:1], storedOdds{ok: true, at: t0.Add(-historySpan - time.Second), cents: 250}, []int64{250})
	require.True(t, ok)
	require.Equal(t, []bool{true}, kept, "a stored row beyond the window is no predecessor")

	_, ok = appendOdds(s, storedOdds{ok: true, at: t0, cents: 1}, []int64{1, 2, 3, 4})
	require.False(t, ok, "a stored row at the first instant: not an extension")
}

func TestParseCentsReadsNumericTwoDecimals(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"2.50": 250, "-0.05": -5, "99999999.99": 9999999999, "0.00": 0} {
		got, err := parseCents(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"1", "1.5", "x.00", "1.2x"} {
		_, err := parseCents(in)
		require.Error(t, err, in)
	}
}
