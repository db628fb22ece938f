package bench

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProgressLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Progress
		want string
	}{
		{"start", Progress{Iteration: 1, Iterations: 2, Total: 5},
			"measuring [..........]   0% iteration 1/2, 0/5 polls"},
		{"half way through the second of two", Progress{Iteration: 2, Iterations: 2, Done: 2, Total: 4},
			"measuring [#######...]  75% iteration 2/2, 2/4 polls"},
		{"done", Progress{Iteration: 2, Iterations: 2, Done: 4, Total: 4},
			"measuring [##########] 100% iteration 2/2, 4/4 polls"},
		{"warm-up", Progress{Warmup: true, Iteration: 1, Iterations: 1, Done: 1, Total: 1},
			"warm-up   [##########] 100% iteration 1/1, 1/1 polls"},
		{"late answers never overflow", Progress{Iteration: 1, Iterations: 1, Done: 9, Total: 4},
			"measuring [##########] 100% iteration 1/1, 4/4 polls"},
		{"nothing to do", Progress{}, "measuring [..........]   0% iteration 0/0, 0/0 polls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, ProgressLine(tt.in, 10))
		})
	}
}

// fakeClock is a settable clock for the bar's throttling.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestProgressBarRedrawsAtMostEveryIntervalButAlwaysAtTheEnd(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clk := &fakeClock{now: time.Unix(0, 0)}
	bar := NewProgressBar(&buf, 10, clk.Now)
	draws := func() int { return strings.Count(buf.String(), "\r\033[K") }

	bar.Update(Progress{Iteration: 1, Iterations: 1, Done: 1, Total: 4})
	require.Equal(t, 1, draws(), "the first update draws")
	bar.Update(Progress{Iteration: 1, Iterations: 1, Done: 2, Total: 4})
	require.Equal(t, 1, draws(), "too soon: skipped")
	clk.Add(DefaultProgressInterval)
	bar.Update(Progress{Iteration: 1, Iterations: 1, Done: 3, Total: 4})
	require.Equal(t, 2, draws(), "an interval later: drawn")
	bar.Update(Progress{Iteration: 1, Iterations: 1, Done: 4, Total: 4})
	require.Equal(t, 3, draws(), "the last poll of an iteration is always drawn")
	require.True(t, strings.HasSuffix(buf.String(), "4/4 polls"))

	bar.Finish()
	require.Equal(t, 4, draws(), "finish clears the line")
	bar.Finish()
	require.Equal(t, 4, draws(), "finishing twice clears once")
}
