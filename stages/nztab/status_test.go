package nztab

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStatusMapsAPISpellingsToDatabaseStatuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want Status
	}{
		{"Open", StatusOpen},
		{"open", StatusOpen},
		{"  CLOSED\t", StatusClosed},
		{"Interim", StatusInterim},
		{"Paying", StatusInterim},
		{"Final", StatusFinal},
		{"finalized", StatusFinal},
		{"Finalised", StatusFinal},
		{"Abandoned", StatusAbandoned},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStatus(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.True(t, got.Valid())
		})
	}
}

func TestParseStatusRejectsUnknownValuesWithTypedError(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "Postponed", "upcoming", "open-ish", "final final"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStatus(in)
			require.Error(t, err)
			require.Empty(t, got)
			require.ErrorIs(t, err, ErrUnknownStatus)
			var use *UnknownStatusError
			require.True(t, errors.As(err, &use))
			require.Equal(t, in, use.Value)
		})
	}
}

func TestStatusValidRejectsZeroAndForeignValues(t *testing.T) {
	t.Parallel()
	require.False(t, Status("").Valid())
	require.False(t, Status("Open").Valid())
	require.Equal(t, "final", StatusFinal.String())
}
