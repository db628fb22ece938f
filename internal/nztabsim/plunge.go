package nztabsim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Plunge stages a late plunge on one runner: at Before the advertised start
// a bet as large as the race's win pool so far (at least MinPlungeBet
// dollars) lands on the runner. From that step on the win pool holds the
// bet, the money tracker and the tote price follow (the runner's share of
// the pool becomes its share plus the bet's), and the bookmakers' fixed
// price follows the tote. Nothing changes before it, so the first poll at
// or after the plunge is the first to see the move.
type Plunge struct {
	// RaceID is the race.
	RaceID string
	// Runner is the runner number; 0 lets the simulator pick the runner
	// with the least chance at the plunge (the move is then largest).
	Runner int
	// Before is how long before the advertised start the money lands, at
	// least one Step and at most MaxPlungeBefore.
	Before time.Duration
}

// Plunge bounds.
const (
	// MinPlungeBet is the least a plunge bets, in dollars.
	MinPlungeBet = 15_000.0
	// MaxPlungeBefore is the earliest a plunge may land before the start.
	MaxPlungeBefore = 2 * time.Hour
)

// ErrBadPlunge marks a plunge the simulator cannot stage.
var ErrBadPlunge = errors.New("nztabsim: bad plunge")

// ParsePlunge reads RACE:RUNNER:MINUTES_BEFORE, e.g.
// "4b0c…:5:3" (runner 5, three minutes before the start; 2.5 is 2m30s).
func ParsePlunge(s string) (Plunge, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return Plunge{}, fmt.Errorf("%w: %q is not RACE:RUNNER:MINUTES_BEFORE", ErrBadPlunge, s)
	}
	runner, err := strconv.Atoi(parts[1])
	if err != nil || runner < 1 {
		return Plunge{}, fmt.Errorf("%w: runner %q in %q is not a runner number", ErrBadPlunge, parts[1], s)
	}
	minutes, err := strconv.ParseFloat(parts[2], 64)
	before := time.Duration(minutes * float64(time.Minute))
	if err != nil || before < Step || before > MaxPlungeBefore {
		return Plunge{}, fmt.Errorf("%w: minutes before %q in %q must be between %g and %g", ErrBadPlunge, parts[2], s,
			Step.Minutes(), MaxPlungeBefore.Minutes())
	}
	return Plunge{RaceID: parts[0], Runner: runner, Before: before}, nil
}

// String is the plunge as ParsePlunge reads it.
func (p Plunge) String() string {
	return fmt.Sprintf("%s:%d:%s", p.RaceID, p.Runner, strconv.FormatFloat(p.Before.Minutes(), 'f', -1, 64))
}

// Clean reports whether a plunge at lead before r's start would be seen
// cleanly: no runner is scratched within the quarter hour before it (the
// alert rules never measure across a scratching, so one right before the
// plunge would hide it).
func Clean(r RaceInfo, lead time.Duration) bool {
	at := r.StartTime.Add(-lead)
	for _, s := range r.ScratchedAt {
		if !s.Before(at.Add(-15*time.Minute)) && !s.After(at) {
			return false
		}
	}
	return r.AbandonedAt.IsZero() || r.AbandonedAt.After(at)
}

// PlungeInfo is a staged plunge as the simulator resolved it.
type PlungeInfo struct {
	RaceID string
	// Runner is the runner number and EntrantID its id.
	Runner    int
	EntrantID string
	// At is the first instant that shows the plunge: the Step boundary at
	// or after Before the advertised start.
	At time.Time
	// Bet is the money that lands, in dollars.
	Bet float64
}

// plungePlan is a plunge on a race's plan.
type plungePlan struct {
	runner int   // index into the race's runners
	step   int64 // the first step that shows it
	bet    float64
	at     time.Time
}

// Plunges lists the staged plunges, in the order configured.
func (s *Sim) Plunges() []PlungeInfo { return s.plunges }

// stagePlunges resolves the configured plunges onto the race plans.
func (s *Sim) stagePlunges(ps []Plunge) error {
	for _, p := range ps {
		rc, ok := s.byID[p.RaceID]
		if !ok {
			return fmt.Errorf("%w: %w: %q", ErrBadPlunge, ErrUnknownRace, p.RaceID)
		}
		if p.Before < Step || p.Before > MaxPlungeBefore {
			return fmt.Errorf("%w: %s before the start must be between %s and %s", ErrBadPlunge, p.Before, Step, MaxPlungeBefore)
		}
		at := alignUp(s.dayStart, rc.adv.Add(-p.Before))
		if !rc.abandonAt.IsZero() && !at.Before(rc.abandonAt) {
			return fmt.Errorf("%w: race %s is abandoned by then", ErrBadPlunge, rc.id)
		}
		k := s.stepOf(at)
		active := make([]bool, len(rc.runners))
		for i, rn := range rc.runners {
			active[i] = rn.scratchAt.IsZero() || at.Before(rn.scratchAt)
		}
		idx := p.Runner - 1
		switch {
		case p.Runner == 0:
			_, tote := s.market(rc, k-1, active)
			for i := range rc.runners {
				if active[i] && (idx < 0 || tote[i] < tote[idx]) {
					idx = i
				}
			}
		case p.Runner < 0 || p.Runner > len(rc.runners):
			return fmt.Errorf("%w: race %s has no runner %d", ErrBadPlunge, rc.id, p.Runner)
		case !active[idx]:
			return fmt.Errorf("%w: runner %d of race %s is scratched by then", ErrBadPlunge, p.Runner, rc.id)
		}
		bet := max(s.naturalWinPool(rc, k), MinPlungeBet)
		rc.plunges = append(rc.plunges, plungePlan{runner: idx, step: k, bet: bet, at: at})
		s.plunges = append(s.plunges, PlungeInfo{RaceID: rc.id, Runner: idx + 1, EntrantID: rc.runners[idx].id, At: at, Bet: bet})
	}
	return nil
}

// plungeBets is the money the race's plunges have put in by step k.
func (rc *race) plungeBets(k int64) float64 {
	var sum float64
	for _, p := range rc.plunges {
		if k >= p.step {
			sum += p.bet
		}
	}
	return sum
}

// applyPlunges shifts win probabilities p (fixed or tote) at step k by the
// plunges landed by then: with W the pool without them, a plunged runner's
// share is (p × W + bet) / (W + bet), everyone else's p × W / (W + bet).
func (s *Sim) applyPlunges(rc *race, k int64, active []bool, p []float64) {
	for _, pl := range rc.plunges {
		if k < pl.step || !active[pl.runner] {
			continue
		}
		w := s.naturalWinPool(rc, k)
		for i := range p {
			p[i] *= w / (w + pl.bet)
		}
		p[pl.runner] += pl.bet / (w + pl.bet)
	}
}

// naturalWinPool is the race's win pool at step k without plunges, in
// dollars.
func (s *Sim) naturalWinPool(rc *race, k int64) float64 {
	for _, p := range rc.pools {
		if p.product == "Win" {
			return s.poolAt(rc, p, k)
		}
	}
	return 0
}
