// Package progress shows how far a long-running command has come: on a
// terminal, one line redrawn in place; elsewhere (logs, CI), a plain line
// now and then. The benchmark, replay and the demo all draw through it.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Display draws progress lines on one writer. Updates may come from many
// goroutines (a flow's result handlers), so it locks, and it throttles, so
// that drawing costs nothing measurable.
type Display struct {
	w   io.Writer
	tty bool
	// every is the least time between two drawn lines.
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	last  time.Time
	drawn bool // something was drawn (a terminal line is open)
}

// Redraw is how often a terminal line is redrawn at most.
const Redraw = 100 * time.Millisecond

// Plain is how often a plain line is written at most.
const Plain = 10 * time.Second

// New draws on w: in place when tty, else as plain lines. now may be nil
// (time.Now).
func New(w io.Writer, tty bool, now func() time.Time) *Display {
	if now == nil {
		now = time.Now
	}
	every := Plain
	if tty {
		every = Redraw
	}
	return &Display{w: w, tty: tty, every: every, now: now}
}

// Show draws line unless a line was drawn less than an interval ago; a
// final line (the end of a phase) is always drawn.
func (d *Display) Show(line string, final bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.drawn && !final && now.Sub(d.last) < d.every {
		return
	}
	d.last, d.drawn = now, true
	if d.tty {
		fmt.Fprintf(d.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(d.w, line)
}

// Finish ends a terminal line, so what follows starts on a clean one.
func (d *Display) Finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tty && d.drawn {
		fmt.Fprint(d.w, "\r\033[K")
	}
	d.drawn = false
}

// Bar renders frac (0..1, clamped) as a bar of width cells and a
// percentage: "[#####.....]  50%".
func Bar(frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	filled := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100)
}
