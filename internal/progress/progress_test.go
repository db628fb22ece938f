package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for the display's throttling.
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

func TestTerminalLineRedrawsAtMostEveryIntervalButAlwaysAtTheEnd(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clk := &fakeClock{now: time.Unix(0, 0)}
	d := New(&buf, true, clk.Now)
	draws := func() int { return strings.Count(buf.String(), "\r\033[K") }

	d.Show("1/4", false)
	require.Equal(t, 1, draws(), "the first update draws")
	d.Show("2/4", false)
	require.Equal(t, 1, draws(), "too soon: skipped")
	clk.Add(Redraw)
	d.Show("3/4", false)
	require.Equal(t, 2, draws(), "an interval later: drawn")
	d.Show("4/4", true)
	require.Equal(t, 3, draws(), "the final line is always drawn")
	require.True(t, strings.HasSuffix(buf.String(), "4/4"))

	d.Finish()
	require.Equal(t, 4, draws(), "finish clears the line")
	d.Finish()
	require.Equal(t, 4, draws(), "finishing twice clears once")
}

func TestPlainLinesAreWholeLinesAndRare(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clk := &fakeClock{now: time.Unix(0, 0)}
	d := New(&buf, false, clk.Now)
	d.Show("a", false)
	clk.Add(Redraw)
	d.Show("b", false)
	clk.Add(Plain)
	d.Show("c", false)
	d.Show("d", true)
	d.Finish()
	require.Equal(t, "a\nc\nd\n", buf.String(), "no escape codes, no line more often than Plain but the final one")
}

func TestBar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		frac float64
		want string
	}{
		{0, "[..........]   0%"}, {0.75, "[#######...]  75%"}, {1, "[##########] 100%"},
		{1.5, "[##########] 100%"}, {-1, "[..........]   0%"},
	} {
		require.Equal(t, tc.want, Bar(tc.frac, 10), "%v", tc.frac)
	}
}
