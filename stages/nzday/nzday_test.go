package nzday_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nzday"
)

func TestDayLengthsFollowNZDaylightSaving(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		day   string
		hours float64
		start string
	}{
		{"2025-07-17", 24, "2025-07-16T12:00:00Z"}, // NZST, +12
		{"2025-01-15", 24, "2025-01-14T11:00:00Z"}, // NZDT, +13
		{"2025-09-28", 23, "2025-09-27T12:00:00Z"}, // clocks go forward at 02:00
		{"2025-04-06", 25, "2025-04-05T11:00:00Z"}, // clocks go back at 03:00
	} {
		d, err := nzday.Parse(tc.day)
		require.NoError(t, err)
		require.Equal(t, tc.day, d.String())
		require.Equal(t, tc.start, d.Start().UTC().Format(time.RFC3339), tc.day)
		require.Equal(t, tc.hours, d.End().Sub(d.Start()).Hours(), tc.day)
	}
}

func TestOfTakesTheNZCalendarDayOfAnInstant(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	require.Equal(t, "2025-07-17", nzday.Of(at("2025-07-16T12:00:00Z")).String(), "NZ midnight")
	require.Equal(t, "2025-07-16", nzday.Of(at("2025-07-16T11:59:59Z")).String())
	require.Equal(t, "20250717", nzday.Of(at("2025-07-17T00:50:00Z")).Compact())
	d, err := nzday.Parse("2024-12-31")
	require.NoError(t, err)
	require.Equal(t, "2025-01-01", d.AddDays(1).String())
	require.True(t, d.Before(d.AddDays(1)))
	require.False(t, d.Before(d))
	_, err = nzday.Parse("17/07/2025")
	require.Error(t, err)
}
