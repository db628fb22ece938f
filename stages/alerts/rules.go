package alerts

import (
	"time"
)

// LookbackMinutes is how much history before the start of its widest window
// a poll is judged with: enough to hold the poll before the window (polls
// come every few minutes there) for every poll up to LookbackMinutes into
// the window. Detect's history must cover Span before the poll.
const LookbackMinutes = 5

// Span is how far back from a poll the history Detect judges it with must
// reach: the widest window plus LookbackMinutes. A rule with no poll before
// its window or bucket inside the span does not fire, so a shorter history
// never invents a move; it can only miss one.
func Span(c Config) time.Duration {
	return time.Duration(max(c.PriceMinutes, c.LateMinutes, c.SurgeMinutes)+LookbackMinutes) * time.Minute
}

// Judged reports whether a poll can fire at all: it was taken while the
// race took bets and within one of the rules' windows. Detect fires nothing
// for any other poll, so a caller may skip reading its history.
func Judged(c Config, p Poll) bool {
	return p.Open && p.MinutesToStart < max(c.PriceMinutes, c.LateMinutes, c.SurgeMinutes)
}

// Detect returns the alerts that the last poll of h fires, judged with the
// polls of h (oldest first; those before the last poll's Span are ignored).
// Each rule fires at most once per runner and timing bucket: at the first
// poll whose data meet it.
func Detect(c Config, h History) []Alert {
	n := len(h.Polls)
	if n == 0 || !Judged(c, h.Polls[n-1]) {
		return nil
	}
	from := n - 1
	cut := h.Polls[n-1].At.Add(-Span(c))
	for from > 0 && !h.Polls[from-1].At.Before(cut) {
		from--
	}
	s := judge{cfg: c, race: h.RaceID, polls: h.Polls[from:]}
	last := len(s.polls) - 1
	out := s.prices(last)
	out = append(out, s.lateMoney(last)...)
	return append(out, s.poolSurge(last)...)
}

// Scan returns every alert the polls of h fire, in the order of the polls
// that fire them: what Detect returns for each poll in turn, as the flow
// judges them.
func Scan(c Config, h History) []Alert {
	var out []Alert
	for i := range h.Polls {
		out = append(out, Detect(c, History{RaceID: h.RaceID, Polls: h.Polls[:i+1]})...)
	}
	return out
}

// judge evaluates the rules on one history.
type judge struct {
	cfg   Config
	race  string
	polls []Poll
}

// runner is entrant's row at poll i, nil when the poll has none. A field is
// at most a few dozen runners: a scan beats building an index per poll.
func (s *judge) runner(i int, entrant string) *Runner {
	rs := s.polls[i].Runners
	for j := range rs {
		if rs[j].EntrantID == entrant {
			return &rs[j]
		}
	}
	return nil
}

// scratchedBetween reports that a runner was scratched after poll a and by
// poll b.
func (s *judge) scratchedBetween(a, b int) bool {
	for _, r := range s.polls[b].Runners {
		if r.Scratched {
			if was := s.runner(a, r.EntrantID); was == nil || !was.Scratched {
				return true
			}
		}
	}
	return false
}

// bucketStart is the first poll of the run of polls sharing poll i's bucket.
func (s *judge) bucketStart(i int) int {
	f := i
	for f > 0 && s.polls[f-1].Bucket == s.polls[i].Bucket {
		f--
	}
	return f
}

// ---- steamers and drifters ----

// move is a runner's price move from the reference poll.
type move struct {
	source                string
	beforeOdds, afterOdds float64
	before, after         float64 // implied probability, percent
}

func (m move) points() float64 { return m.after - m.before }

// priceMove is the larger qualifying move of the runner's two prices from
// poll ref to poll j in direction kind, or false.
func (s *judge) priceMove(ref, j int, entrant string, kind Kind) (move, bool) {
	c := s.cfg
	if s.polls[j].MinutesToStart >= c.PriceMinutes {
		return move{}, false
	}
	a, b := s.runner(ref, entrant), s.runner(j, entrant)
	if a == nil || b == nil {
		return move{}, false
	}
	var best move
	found := false
	for _, src := range []struct {
		name        string
		before, now float64
	}{{SourceFixedWin, a.FixedWin, b.FixedWin}, {SourcePoolWin, a.PoolWin, b.PoolWin}} {
		if src.before <= 0 || src.now <= 0 {
			continue
		}
		m := move{source: src.name, beforeOdds: src.before, afterOdds: src.now, before: 100 / src.before, after: 100 / src.now}
		pts := m.points()
		if kind == KindSteamer && pts <= 0 || kind == KindDrifter && pts >= 0 {
			continue
		}
		// The relative move is the larger probability over the smaller, so a
		// drift from 25 % to 10 % moves as far as a steam from 10 % to 25 %.
		hi, lo := max(m.before, m.after), min(m.before, m.after)
		rel := (hi/lo - 1) * 100
		if abs(pts) < c.PricePoints && !(rel >= c.PriceRelative && hi >= c.PriceRelativeFloor) {
			continue
		}
		if !found || abs(pts) > abs(best.points()) {
			best, found = m, true
		}
	}
	return best, found
}

// prices judges steamers and drifters at poll i: a runner's move from the
// last poll before the window fires when it first qualifies (the poll
// before did not), once per bucket.
func (s *judge) prices(i int) []Alert {
	c := s.cfg
	p := s.polls[i]
	if p.MinutesToStart >= c.PriceMinutes {
		return nil
	}
	ref := -1
	for j := i - 1; j >= 0; j-- {
		if s.polls[j].MinutesToStart >= c.PriceMinutes {
			ref = j
			break
		}
	}
	if ref < 0 {
		return nil // no poll before the window: nothing to measure from
	}
	// After a scratching within the window, prices are measured from the
	// first poll that shows it.
	for j := i; j > ref; j-- {
		if s.scratchedBetween(j-1, j) {
			ref = j
			break
		}
	}
	if ref == i {
		return nil
	}
	// fires: the move qualifies at j and did not at the poll before.
	fires := func(j int, entrant string, kind Kind) (move, bool) {
		m, ok := s.priceMove(ref, j, entrant, kind)
		if !ok || j-1 > ref && qualifies(s.priceMove(ref, j-1, entrant, kind)) {
			return move{}, false
		}
		return m, true
	}
	var out []Alert
	for _, kind := range []Kind{KindSteamer, KindDrifter} {
		for _, r := range p.Runners {
			m, ok := fires(i, r.EntrantID, kind)
			if !ok {
				continue
			}
			earlier := false
			for j := i - 1; j > ref && s.polls[j].Bucket == p.Bucket; j-- {
				if _, ok := fires(j, r.EntrantID, kind); ok {
					earlier = true
					break
				}
			}
			if earlier {
				continue
			}
			out = append(out, Alert{RaceID: s.race, EntrantID: r.EntrantID, Kind: kind, Bucket: p.Bucket,
				FiredAt: p.At, MinutesToStart: p.MinutesToStart, ReferenceAt: s.polls[ref].At, Source: m.source,
				BeforeOdds: ptr(m.beforeOdds), AfterOdds: ptr(m.afterOdds),
				BeforePct: ptr(round2(m.before)), AfterPct: ptr(round2(m.after)), ChangePct: ptr(round2(m.points())),
				Ratio: ptr(round2(m.after / m.before))})
		}
	}
	return out
}

func qualifies(_ move, ok bool) bool { return ok }

// ---- late money ----

// lateMoney judges late money at poll i: within i's bucket so far, a
// runner's share of the win money that came in against its share of the
// pool at the poll before the bucket; fires at the first poll of the
// bucket where it qualifies.
func (s *judge) lateMoney(i int) []Alert {
	c := s.cfg
	p := s.polls[i]
	if p.MinutesToStart >= c.LateMinutes {
		return nil
	}
	f := s.bucketStart(i)
	ref := f - 1
	if ref < 0 {
		return nil // the poll before the bucket is not in the history
	}
	var out []Alert
	for _, r := range p.Runners {
		a, ok := s.lateAt(ref, i, r.EntrantID)
		if !ok {
			continue
		}
		earlier := false
		for j := f; j < i; j++ {
			if _, ok := s.lateAt(ref, j, r.EntrantID); ok {
				earlier = true
				break
			}
		}
		if !earlier {
			out = append(out, a)
		}
	}
	return out
}

// lateAt is the late-money alert of entrant at poll j against the
// reference poll ref, when it qualifies.
func (s *judge) lateAt(ref, j int, entrant string) (Alert, bool) {
	c := s.cfg
	p := s.polls[j]
	if p.MinutesToStart >= c.LateMinutes || s.scratchedBetween(ref, j) {
		return Alert{}, false
	}
	var before, after int64
	if r := s.runner(ref, entrant); r != nil {
		before = r.WinCents
	}
	if r := s.runner(j, entrant); r != nil {
		after = r.WinCents
	}
	took := after - before
	if took < int64(c.LateMinCents) || took <= 0 {
		return Alert{}, false
	}
	poolBefore, poolAfter := sumWin(s.polls[ref]), sumWin(p)
	came := poolAfter - poolBefore // every runner's increments within the bucket
	if came <= 0 {
		return Alert{}, false
	}
	share := float64(took) / float64(came)
	var held float64
	if poolBefore > 0 {
		held = float64(before) / float64(poolBefore)
	}
	if share < c.LateRatio*held {
		return Alert{}, false
	}
	a := Alert{RaceID: s.race, EntrantID: entrant, Kind: KindLateMoney, Bucket: p.Bucket, FiredAt: p.At,
		MinutesToStart: p.MinutesToStart, ReferenceAt: s.polls[ref].At,
		BeforeCents: ptr(before), AfterCents: ptr(after), WindowCents: ptr(came),
		BeforePct: ptr(round2(held * 100)), AfterPct: ptr(round2(share * 100))}
	if held > 0 {
		a.Ratio = ptr(round2(share / held))
	}
	return a, true
}

// sumWin is the runners' win money at a poll.
func sumWin(p Poll) int64 {
	var n int64
	for _, r := range p.Runners {
		n += r.WinCents
	}
	return n
}

// ---- pool surges ----

// poolSurge judges the race's win pool at poll i against the poll before
// its bucket; fires at the first poll of the bucket where it qualifies.
func (s *judge) poolSurge(i int) []Alert {
	f := s.bucketStart(i)
	ref := f - 1
	if ref < 0 {
		return nil
	}
	a, ok := s.surgeAt(ref, i)
	if !ok {
		return nil
	}
	for j := f; j < i; j++ {
		if _, ok := s.surgeAt(ref, j); ok {
			return nil
		}
	}
	return []Alert{a}
}

func (s *judge) surgeAt(ref, j int) (Alert, bool) {
	c := s.cfg
	p := s.polls[j]
	if p.MinutesToStart >= c.SurgeMinutes || s.scratchedBetween(ref, j) {
		return Alert{}, false
	}
	before, after := s.polls[ref].WinPool(), p.WinPool()
	grew := after - before
	if before <= 0 || grew < int64(c.SurgeMinCents) || grew <= 0 {
		return Alert{}, false
	}
	growth := float64(grew) / float64(before) * 100
	if growth < c.SurgePercent {
		return Alert{}, false
	}
	return Alert{RaceID: s.race, Kind: KindPoolSurge, Bucket: p.Bucket, FiredAt: p.At,
		MinutesToStart: p.MinutesToStart, ReferenceAt: s.polls[ref].At,
		BeforeCents: ptr(before), AfterCents: ptr(after), WindowCents: ptr(grew),
		ChangePct: ptr(round2(growth)), Ratio: ptr(round2(float64(after) / float64(before)))}, true
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
