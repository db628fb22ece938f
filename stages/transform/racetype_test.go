package transform_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/transform"
)

func TestRaceTypeMapsTheAPICodesAnyCase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code, want string
		ok         bool
	}{
		{"T", transform.RaceTypeThoroughbred, true},
		{" h ", transform.RaceTypeHarness, true},
		{"g", transform.RaceTypeGreyhound, true},
		{"", "", false},
		{"X", "", false},
		{"TH", "", false},
	} {
		got, ok := transform.RaceType(tc.code)
		require.Equal(t, tc.ok, ok, "%q", tc.code)
		require.Equal(t, tc.want, got, "%q", tc.code)
	}
}
