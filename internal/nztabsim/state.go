package nztabsim

import (
	"math"
	"time"
)

// Race statuses as the API spells them.
const (
	StatusOpen      = "Open"
	StatusClosed    = "Closed"
	StatusInterim   = "Interim"
	StatusFinal     = "Final"
	StatusAbandoned = "Abandoned"
)

// runnerState is a runner as it stands at one instant.
type runnerState struct {
	scratched bool
	hasOdds   bool
	fixedWin  float64
	fixedPl   float64
	poolWin   float64
	poolPl    float64
	fav       bool
	mover     bool
}

// mtRow is one money-tracker row: integer percentages, as the API sends them.
type mtRow struct {
	id        string
	hold, bet int
}

// poolState is a tote pool as it stands at one instant.
type poolState struct {
	product string
	total   float64
	closed  bool
	early   bool // EarlyQuadrella, a meeting-level pool shown on each leg
}

// raceState is everything about a race that changes during the day, at one
// instant. It is computed from the race plan, the seed and the instant only.
type raceState struct {
	at         time.Time
	status     string
	jumped     bool
	runners    []runnerState
	field      int
	placesPaid int
	pools      []poolState
	money      []mtRow
	tote       []float64 // tote win probabilities at the shown step
}

// stepOf is the index of the Step containing t, counted from NZ midnight.
func (s *Sim) stepOf(t time.Time) int64 {
	d := t.Sub(s.dayStart)
	k := int64(d / Step)
	if d%Step < 0 {
		k--
	}
	return k
}

func (s *Sim) stepTime(k int64) time.Time { return s.dayStart.Add(time.Duration(k) * Step) }

// status is the race status at t: Open until the advertised start, Closed
// until the interim result, Interim until the final one, then Final, unless
// the race has been abandoned by then.
func (rc *race) status(t time.Time) string {
	switch {
	case !rc.abandonAt.IsZero() && !t.Before(rc.abandonAt):
		return StatusAbandoned
	case t.Before(rc.adv):
		return StatusOpen
	case t.Before(rc.interimAt):
		return StatusClosed
	case t.Before(rc.finalAt):
		return StatusInterim
	default:
		return StatusFinal
	}
}

// trackCondition is the meeting's track condition at t.
func (m *meeting) trackCondition(t time.Time) string {
	if m.rains && !t.Before(m.degradeAt) {
		return m.wetCond
	}
	return m.baseCond
}

// toteStatus is "Open" while any race of the meeting takes bets.
func (m *meeting) toteStatus(t time.Time) string {
	for _, rc := range m.races {
		if rc.status(t) == StatusOpen {
			return "Open"
		}
	}
	return "Closed"
}

// lastStep is the step whose prices and pools a race shows from close (or
// abandonment) on: nothing moves after betting stops.
func (s *Sim) lastStep(rc *race) int64 {
	k := s.stepOf(rc.adv)
	if !rc.abandonAt.IsZero() {
		k = min(k, s.stepOf(rc.abandonAt))
	}
	return k
}

// fill is the share of a pool's final size bet by m minutes before the
// start: a little overnight, most of it in the last quarter hour. tau < 1
// makes a pool fill later. It rises monotonically to 1 at m = 0.
func fill(m, tau float64) float64 {
	m = max(m, 0) / tau
	return 0.55*math.Exp(-m/8) + 0.30*math.Exp(-m/45) + 0.15*math.Exp(-m/360)
}

// market returns the fixed-odds and tote win probabilities of the active
// runners at step k. Strength drifts along slow waves whose amplitude grows
// towards the start, plus per-step noise drawn from a generator keyed by
// (seed, race, step), so any step can be computed on its own.
func (s *Sim) market(rc *race, k int64, active []bool) (fixed, tote []float64) {
	ts := float64(k) * Step.Seconds()
	m := max(rc.adv.Sub(s.stepTime(k)).Minutes(), 0)
	amp := 0.25 + 0.35*math.Exp(-m/45)
	r := s.rand(purposeStep, uint64(rc.idx), uint64(k), 1)
	fs := make([]float64, len(rc.runners))
	us := make([]float64, len(rc.runners))
	for i, rn := range rc.runners {
		n1, n2 := r.NormFloat64(), r.NormFloat64()
		v := rn.base + 0.03*n1
		for _, w := range rn.waves {
			v += amp * 0.3 * w.amp * math.Sin(2*math.Pi*ts/w.period+w.phase)
		}
		u := v + 0.05*n2
		for _, w := range rn.toteWaves {
			u += 0.12 * w.amp * math.Sin(2*math.Pi*ts/w.period+w.phase)
		}
		fs[i], us[i] = v, u
	}
	fixed, tote = softmax(fs, active), softmax(us, active)
	s.applyPlunges(rc, k, active, fixed)
	s.applyPlunges(rc, k, active, tote)
	return fixed, tote
}

// state computes the race at instant t.
func (s *Sim) state(rc *race, t time.Time) raceState {
	st := raceState{at: t, status: rc.status(t)}
	st.jumped = !t.Before(rc.actual) && (rc.abandonAt.IsZero() || rc.abandonAt.After(rc.actual))
	k := min(s.stepOf(t), s.lastStep(rc))

	active := make([]bool, len(rc.runners))
	st.runners = make([]runnerState, len(rc.runners))
	for i, rn := range rc.runners {
		sc := !rn.scratchAt.IsZero() && !t.Before(rn.scratchAt)
		st.runners[i].scratched = sc
		active[i] = !sc
		if !sc {
			st.field++
		}
	}
	switch {
	case st.field >= 8:
		st.placesPaid = 3
	case st.field >= 5:
		st.placesPaid = 2
	default:
		st.placesPaid = 1
	}

	fixed, tote := s.market(rc, k, active)
	before, _ := s.market(rc, k-40, active) // ten minutes earlier, for the mover
	st.tote = tote
	cat := rc.meeting.kind.category
	over := map[string]float64{"T": 1.18, "H": 1.22, "G": 1.25}[cat]
	placeDiv := 3.5
	if st.placesPaid >= 3 {
		placeDiv = 5
	}
	fav, mover, moverGain := -1, -1, 0.015
	for i := range rc.runners {
		if !active[i] {
			continue
		}
		rs := &st.runners[i]
		rs.hasOdds = true
		rs.fixedWin = priceLadder(1 / (fixed[i] * over))
		rs.fixedPl = priceLadder(1 + (rs.fixedWin-1)/placeDiv)
		rs.poolWin = min(max(1, round1(0.85/tote[i])), 999)
		rs.poolPl = max(1, round1(1+(rs.poolWin-1)/(placeDiv+1.5)))
		if fav < 0 || rs.fixedWin < st.runners[fav].fixedWin {
			fav = i
		}
		if g := fixed[i] - before[i]; g > moverGain {
			mover, moverGain = i, g
		}
	}
	if fav >= 0 {
		st.runners[fav].fav = true
	}
	if mover >= 0 {
		st.runners[mover].mover = true
	}

	st.pools = s.pools(rc, t, k, st.status != StatusOpen)
	st.money = s.moneyTracker(rc, k, active, tote)
	return st
}

// pools sizes the race's tote pools at step k (already capped at close).
// Inside a step the growth is sampled at a keyed random offset so the
// increments are uneven, yet totals never fall.
func (s *Sim) pools(rc *race, t time.Time, k int64, closed bool) []poolState {
	out := make([]poolState, 0, len(rc.pools)+1)
	for _, p := range rc.pools {
		total := s.poolAt(rc, p, k)
		if p.product == "Win" {
			total = round2(total + rc.plungeBets(k))
		}
		out = append(out, poolState{product: p.product, total: total, closed: closed})
	}
	m := rc.meeting
	for _, leg := range m.early {
		if leg != rc.number {
			continue
		}
		ke := min(k, s.stepOf(m.eqClose))
		e := s.rand(purposeStep, uint64(m.idx), uint64(ke), 4).Float64()
		effEQ := s.stepTime(ke).Add(time.Duration(e * float64(Step)))
		out = append(out, poolState{
			product: "EarlyQuadrella",
			total:   round2(m.eqFinal * fill(m.eqClose.Sub(effEQ).Minutes(), 1.5)),
			closed:  closed || !t.Before(m.eqClose),
			early:   true,
		})
	}
	return out
}

// poolAt is the size of a pool at step k, sampled at a keyed random offset
// inside the step.
func (s *Sim) poolAt(rc *race, p poolPlan, k int64) float64 {
	j := s.rand(purposeStep, uint64(rc.idx), uint64(k), 3).Float64()
	eff := s.stepTime(k).Add(time.Duration(j * float64(Step)))
	return round2(p.final * fill(rc.adv.Sub(eff).Minutes(), p.tau))
}

// moneyTracker builds the money-tracker rows at step k: each id's integer
// hold and bet percentages, split over several rows in no order. Summed per
// id they follow the tote market; summed over all ids they make 100 ± 1.
func (s *Sim) moneyTracker(rc *race, k int64, active []bool, tote []float64) []mtRow {
	r := s.rand(purposeStep, uint64(rc.idx), uint64(k), 2)
	n := len(rc.runners)
	ids := make([]string, 0, n+1)
	hold := make([]float64, 0, n+1)
	bet := make([]float64, 0, n+1)
	var betSum float64
	for i, rn := range rc.runners {
		ids = append(ids, rn.id)
		h, b := 0.0, 0.0
		if active[i] {
			h, b = tote[i], math.Pow(tote[i], 0.7)
		}
		hold = append(hold, h)
		bet = append(bet, b)
		betSum += b
	}
	for i := range bet {
		if betSum > 0 {
			bet[i] /= betSum
		}
	}
	if rc.ghostID != "" {
		g := rc.ghostShare
		for i := range hold {
			hold[i] *= 1 - g
		}
		ids = append(ids, rc.ghostID)
		hold = append(hold, g)
		bet = append(bet, 0)
	}
	holdPct := largestRemainder(hold, 100+r.IntN(3)-1)
	betPct := largestRemainder(bet, 100+r.IntN(3)-1)

	f := fill(rc.adv.Sub(s.stepTime(k)).Minutes(), 1)
	var rows []mtRow
	for i, id := range ids {
		nrows := 1
		if i < n && active[i] {
			nrows = 1 + int(f*float64(rc.runners[i].mtRows))
		}
		hs := splitInt(r, holdPct[i], nrows)
		bs := splitInt(r, betPct[i], nrows)
		for j := range nrows {
			rows = append(rows, mtRow{id: id, hold: hs[j], bet: bs[j]})
		}
	}
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	return rows
}

// largestRemainder rounds shares (summing to 1, or all zero) to integers
// summing to total.
func largestRemainder(shares []float64, total int) []int {
	out := make([]int, len(shares))
	var sum float64
	for _, v := range shares {
		sum += v
	}
	if sum <= 0 {
		return out
	}
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(shares))
	left := total
	for i, v := range shares {
		x := v / sum * float64(total)
		out[i] = int(math.Floor(x))
		left -= out[i]
		rems[i] = rem{i, x - math.Floor(x)}
	}
	// Selection by repeated maximum keeps this allocation-light and stable
	// (ties go to the lower index).
	for ; left > 0; left-- {
		best := -1
		for j, rm := range rems {
			if shares[rm.i] > 0 && (best < 0 || rm.r > rems[best].r) {
				best = j
			}
		}
		if best < 0 {
			break
		}
		out[rems[best].i]++
		rems[best].r = -1
	}
	return out
}

// splitInt splits v into n non-negative integers summing to v.
func splitInt(r interface{ IntN(int) int }, v, n int) []int {
	cuts := make([]int, n+1)
	cuts[n] = v
	for i := 1; i < n; i++ {
		cuts[i] = r.IntN(v + 1)
	}
	// Insertion sort: n is at most ten.
	for i := 2; i < n; i++ {
		for j := i; j > 1 && cuts[j] < cuts[j-1]; j-- {
			cuts[j], cuts[j-1] = cuts[j-1], cuts[j]
		}
	}
	out := make([]int, n)
	for i := range n {
		out[i] = cuts[i+1] - cuts[i]
	}
	return out
}

// priceLadder rounds decimal odds to the increments a bookmaker quotes.
func priceLadder(x float64) float64 {
	var step float64
	switch {
	case x < 1.01:
		return 1.01
	case x < 3:
		step = 0.05
	case x < 6:
		step = 0.1
	case x < 10:
		step = 0.5
	case x < 20:
		step = 1
	case x < 50:
		step = 2
	case x < 101:
		step = 5
	default:
		step = 10
	}
	return min(max(round2(math.Round(x/step)*step), 1.01), 501)
}
