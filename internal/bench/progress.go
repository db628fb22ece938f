package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressBar draws a run's progress on one terminal line, redrawn in
// place. Updates come from the flow's result goroutines, so it locks, and
// it redraws at most every Interval so drawing costs nothing measurable.
type ProgressBar struct {
	w        io.Writer
	width    int
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	last  time.Time
	drawn bool
}

// DefaultProgressInterval is how often the bar is redrawn at most.
const DefaultProgressInterval = 100 * time.Millisecond

// NewProgressBar draws on w with a bar of width cells; now may be nil
// (time.Now).
func NewProgressBar(w io.Writer, width int, now func() time.Time) *ProgressBar {
	if width < 1 {
		width = 30
	}
	if now == nil {
		now = time.Now
	}
	return &ProgressBar{w: w, width: width, interval: DefaultProgressInterval, now: now}
}

// Update redraws the bar unless it was drawn less than an interval ago;
// the last poll of an iteration is always drawn.
func (p *ProgressBar) Update(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.drawn && pr.Done < pr.Total && now.Sub(p.last) < p.interval {
		return
	}
	p.last, p.drawn = now, true
	fmt.Fprintf(p.w, "\r\033[K%s", ProgressLine(pr, p.width))
}

// Finish ends the bar's line.
func (p *ProgressBar) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// ProgressLine renders one progress state, e.g.
// "measuring [#######.......] iteration 3/5, 12/20 polls".
func ProgressLine(pr Progress, width int) string {
	phase := "measuring"
	if pr.Warmup {
		phase = "warm-up  "
	}
	// The bar covers the whole phase: finished iterations plus this one's share.
	frac := 0.0
	if pr.Iterations > 0 && pr.Total > 0 {
		done := min(pr.Done, pr.Total)
		frac = (float64(pr.Iteration-1) + float64(done)/float64(pr.Total)) / float64(pr.Iterations)
	}
	frac = min(max(frac, 0), 1)
	filled := int(frac * float64(width))
	return fmt.Sprintf("%s [%s%s] %3.0f%% iteration %d/%d, %d/%d polls", phase,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100,
		pr.Iteration, pr.Iterations, min(pr.Done, pr.Total), pr.Total)
}
