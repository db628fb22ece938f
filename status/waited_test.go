package status

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAnAgeStampedByAClockAheadIsZeroNotNegative(t *testing.T) {
	for _, tc := range []struct {
		age  time.Duration
		want float64
	}{
		{-300 * time.Millisecond, 0},
		{0, 0},
		{1500 * time.Millisecond, 1.5},
	} {
		require.Equal(t, tc.want, waited(tc.age), "%s", tc.age)
	}
}
