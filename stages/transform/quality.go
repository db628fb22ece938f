package transform

import (
	"fmt"
	"math"
)

// Quality tuning (docs/DOMAIN.md §2.8). The tolerance is ±5 percentage points,
// not the reference system's ±0.5, because the API gives integer percentages
// that legitimately sum to 93–101 %.
const (
	PercentageTolerance = 5.0
	MinEntrants         = 2
	MaxEntrants         = 30
	// ValidScore is the lowest score a poll counts as valid with.
	ValidScore = 80
)

// qualityAcc collects what the transform noticed on its way through the
// payload; buildQuality turns it into the poll's Quality report.
type qualityAcc struct {
	warnings     []string
	unknownIDs   int
	unknownPools int
	// unknownHoldBP and unknownBetBP are the shares (hundredths of %) on
	// money-tracker ids that are not runners. The hold counts towards the
	// percentage-sum check: it is real money of the pool (8 % in the real
	// sample), only not a runner's.
	unknownHoldBP, unknownBetBP int64
	// replacedChars counts characters the decoder replaced (NUL, bad UTF-8).
	replacedChars int
	// moneyWithheld says why the poll's money data was not emitted; empty
	// when it was.
	moneyWithheld string
}

func (q *qualityAcc) warnf(format string, args ...any) {
	q.warnings = append(q.warnings, fmt.Sprintf(format, args...))
}

// buildQuality scores the finished snapshot. Check 5 of the reference
// (incremental vs pool amount, live before the start) is not run here: the
// transform derives interval_type from time_to_start so they always agree,
// and incremental amounts are the write stage's business.
//
// The percentage checks count hold on money-tracker ids that are not runners
// towards the 100 %, reporting it in a warning without failing the check;
// a poll whose money was withheld as impossible is never valid.
func buildQuality(s *RaceSnapshot, q *qualityAcc, holdBP, betBP int64) Quality {
	score := 100
	checkPercentages := func(label string, get func(*Entrant) *float64) {
		var sum int64
		n := 0
		for i := range s.Entrants {
			if v := get(&s.Entrants[i]); v != nil {
				sum += int64(math.Round(*v * 100))
				n++
			}
		}
		switch {
		case n == 0:
			score -= 20
			q.warnf("no runner has a %s pool percentage", label)
		case math.Abs(float64(sum+q.unknownHoldBP)/100-100) > PercentageTolerance:
			score -= 20
			msg := fmt.Sprintf("%s pool percentages of %d runners sum to %.2f (want 100±%g)",
				label, n, float64(sum)/100, PercentageTolerance)
			if q.unknownHoldBP > 0 {
				msg += fmt.Sprintf(" with %.2f%% more hold on %d money-tracker ids that are not runners",
					float64(q.unknownHoldBP)/100, q.unknownIDs)
			}
			q.warnings = append(q.warnings, msg)
		case q.unknownHoldBP > 0:
			q.warnf("%s pool percentages of %d runners sum to %.2f; the other %.2f%% hold is on %d money-tracker ids that are not runners",
				label, n, float64(sum)/100, float64(q.unknownHoldBP)/100, q.unknownIDs)
		}
	}
	checkPercentages("win", func(e *Entrant) *float64 { return e.WinPoolPercentage })
	checkPercentages("place", func(e *Entrant) *float64 { return e.PlacePoolPercentage })

	switch p := s.RacePools; {
	case p == nil:
		score -= 15 + 10
		q.warnf("no race pools in the payload")
	case p.WinPoolTotal == 0 && p.PlacePoolTotal == 0:
		score -= 15
		q.warnf("win and place pools are both 0")
	case p.ExtractedPools == 0:
		score -= 15
		q.warnf("no pools extracted")
	case p.PlacePoolTotal > 3*p.WinPoolTotal:
		q.warnf("place pool %d cents is more than 3× the win pool %d cents", p.PlacePoolTotal, p.WinPoolTotal)
	}

	if n := len(s.Entrants); n < MinEntrants || n > MaxEntrants {
		score -= 15
		q.warnf("%d entrants, want %d to %d", n, MinEntrants, MaxEntrants)
	}
	if s.Meeting == nil {
		score -= 5
	}
	if len(s.Entrants) == 0 {
		score -= 10
	}
	if len(s.MoneyFlow) == 0 {
		score -= 10
		q.warnf("no money-flow rows")
	}
	if q.unknownIDs > 0 {
		q.warnf("%d money-tracker entrant ids are not runners of the race; their rows were skipped", q.unknownIDs)
	}
	if score < 0 {
		score = 0
	}
	return Quality{
		Score:                  score,
		Valid:                  score >= ValidScore && q.moneyWithheld == "",
		MoneyWithheld:          q.moneyWithheld,
		ReplacedChars:          q.replacedChars,
		UnknownHoldPercentage:  float64(q.unknownHoldBP) / 100,
		Warnings:               q.warnings,
		UnknownMoneyTrackerIDs: q.unknownIDs,
		UnknownPoolTypes:       q.unknownPools,
		HoldPercentageSum:      float64(holdBP) / 100,
		BetPercentageSum:       float64(betBP) / 100,
	}
}
