package bench

import (
	"fmt"

	"github.com/raceflow/raceflow/internal/progress"
)

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
	return fmt.Sprintf("%s %s iteration %d/%d, %d/%d polls", phase, progress.Bar(frac, width),
		pr.Iteration, pr.Iterations, min(pr.Done, pr.Total), pr.Total)
}

// Final reports whether pr ends its phase: the display always shows it.
func (pr Progress) Final() bool {
	return pr.Done >= pr.Total && pr.Iteration == pr.Iterations
}
