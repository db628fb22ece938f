package transform

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nztab"
)

// randomEvent builds a plausible, valid race payload: unique runners and
// pool types, money-tracker rows (some for ids that are not runners) with
// integer or 2-decimal percentages, and dollar amounts with cents. The
// tracker's shares sum to at most 100 %, except in one payload of eight,
// whose tracker is left unbounded (impossible money).
func randomEvent(r *rand.Rand) (*nztab.EventResponse, time.Time) {
	statuses := []string{"Open", "Closed", "Interim", "Final", "Abandoned", "paying", "FINALIZED"}
	ev := &nztab.EventResponse{Data: nztab.EventData{Race: nztab.Race{
		EventID: fmt.Sprintf("race-%d", r.IntN(1000)), MeetingID: "m", Description: "R",
		RaceNumber: 1 + r.IntN(12), Status: statuses[r.IntN(len(statuses))],
		AdvertisedStart: testStart.Unix() + r.Int64N(86400) - 43200,
		Type:            []string{"T", "H", "G", "?"}[r.IntN(4)], Country: "NZ",
	}}}
	price := func() *float64 {
		if r.IntN(5) == 0 {
			return nil
		}
		v := float64(101+r.IntN(20000)) / 100
		return &v
	}
	n := r.IntN(25)
	for _, num := range r.Perm(n + r.IntN(5))[:n] {
		ev.Data.Runners = append(ev.Data.Runners, nztab.Runner{
			EntrantID: fmt.Sprintf("e-%d", num), Name: fmt.Sprintf("Runner %d", num), RunnerNumber: num + 1,
			IsScratched: r.IntN(10) == 0, Barrier: ptr(1 + r.IntN(n+1)),
			Odds: nztab.Odds{FixedWin: price(), FixedPlace: price(), PoolWin: price(), PoolPlace: price()},
		})
	}
	if r.IntN(6) != 0 {
		mt := &nztab.MoneyTracker{}
		bounded := r.IntN(8) != 0
		holdLeft, betLeft := 100.0, 100.0
		for range r.IntN(100) {
			id := fmt.Sprintf("e-%d", r.IntN(n+3))
			if r.IntN(15) == 0 {
				id = fmt.Sprintf("ghost-%d", r.IntN(3))
			}
			pct := func() float64 {
				if r.IntN(3) == 0 {
					return float64(r.IntN(1000)) / 100
				}
				return float64(r.IntN(15))
			}
			hold, bet := pct(), pct()
			if bounded {
				hold, bet = min(hold, holdLeft), min(bet, betLeft)
				holdLeft, betLeft = holdLeft-hold, betLeft-bet
			}
			mt.Entrants = append(mt.Entrants, nztab.MoneyTrackerEntry{EntrantID: id, HoldPercentage: hold, BetPercentage: bet})
		}
		ev.Data.MoneyTracker = mt
	}
	dollars := func() float64 { return float64(r.Int64N(500_000_000)) / 100 }
	types := []string{"Win", "Place", "Quinella", "Trifecta", "Exacta", "First Four", "EarlyQuadrella"}
	switch r.IntN(4) {
	case 0: // no tote pools; maybe dividends
	default:
		for _, i := range r.Perm(len(types))[:r.IntN(len(types)+1)] {
			ev.Data.TotePools = append(ev.Data.TotePools, nztab.TotePool{ProductType: types[i], Total: dollars()})
		}
	}
	if r.IntN(2) == 0 {
		for i := range r.IntN(10) {
			ev.Data.Dividends = append(ev.Data.Dividends, nztab.Dividend{
				ID: fmt.Sprintf("d-%d", i), ProductName: []string{"Pool Win", "Pool Place", "Pool Quinella"}[r.IntN(3)],
				Status: []string{"Interim", "Final"}[r.IntN(2)], PoolSize: dollars(), Dividend: float64(r.IntN(5000)) / 100,
			})
		}
	}
	if r.IntN(2) == 0 {
		for i, rn := range r.Perm(len(ev.Data.Runners)) {
			ev.Data.Results = append(ev.Data.Results, nztab.Result{Position: i + 1,
				RunnerNumber: ev.Data.Runners[rn].RunnerNumber, EntrantID: ev.Data.Runners[rn].EntrantID})
		}
	}
	at := time.Unix(ev.Data.Race.AdvertisedStart, 0).Add(time.Duration(r.Int64N(int64(4*time.Hour))) - 2*time.Hour)
	return ev, at
}

// roundHalfUpRat is an independent big-number reference for
// round_half_up(a × b / d).
func roundHalfUpRat(a, b, d int64) int64 {
	n := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	n.Add(n, big.NewInt(d/2))
	return n.Quo(n, big.NewInt(d)).Int64()
}

func TestPropertyRunnerAmountsAddUpToTheirShareOfThePool(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	withFlow, withheld := 0, 0
	for i := range 3000 {
		ev, at := randomEvent(r)
		s, err := Transform(ev, at)
		require.NoError(t, err, "case %d", i)
		if s.Quality.MoneyWithheld != "" {
			withheld++
			require.Empty(t, s.MoneyFlow, "case %d: impossible money writes no rows", i)
			require.False(t, s.Quality.Valid, "case %d", i)
			for _, e := range s.Entrants {
				require.Nil(t, e.HoldPercentage, "case %d", i)
				require.Nil(t, e.WinPoolAmount, "case %d", i)
			}
		}
		if len(s.MoneyFlow) == 0 {
			continue
		}
		withFlow++
		var holdBP, sumWin, sumPlace int64
		for _, mf := range s.MoneyFlow {
			holdBP += int64(mf.HoldPercentage*100 + 0.5)
			sumWin += mf.WinPoolAmount
			sumPlace += mf.PlacePoolAmount
			require.InDelta(t, mf.WinPoolAmount+mf.PlacePoolAmount, mf.TotalPoolAmount, 1, "case %d", i)
			require.Positive(t, mf.HoldPercentage)
		}
		n := float64(len(s.MoneyFlow))
		p := s.RacePools
		require.InDelta(t, roundHalfUpRat(p.WinPoolTotal, holdBP, 10000), sumWin, n, "case %d win", i)
		require.InDelta(t, roundHalfUpRat(p.PlacePoolTotal, holdBP, 10000), sumPlace, n, "case %d place", i)
	}
	require.Greater(t, withFlow, 1000, "generator must exercise money flow")
	require.Greater(t, withheld, 100, "generator must exercise impossible money")
}

func TestPropertyTransformIsDeterministicAndOrderIndependent(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 1000 {
		ev, at := randomEvent(r)
		a, errA := Transform(ev, at)
		b, errB := Transform(ev, at)
		require.Equal(t, errA, errB)
		require.Equal(t, a, b, "case %d", i)
		ja, err := json.Marshal(a)
		require.NoError(t, err)
		jb, err := json.Marshal(b)
		require.NoError(t, err)
		require.Equal(t, string(ja), string(jb), "case %d", i)

		// The API's ordering of runners, tracker rows, pools, dividends and
		// results carries no meaning, so it must not change the snapshot.
		d := &ev.Data
		r.Shuffle(len(d.Runners), func(i, j int) { d.Runners[i], d.Runners[j] = d.Runners[j], d.Runners[i] })
		r.Shuffle(len(d.TotePools), func(i, j int) { d.TotePools[i], d.TotePools[j] = d.TotePools[j], d.TotePools[i] })
		r.Shuffle(len(d.Dividends), func(i, j int) { d.Dividends[i], d.Dividends[j] = d.Dividends[j], d.Dividends[i] })
		r.Shuffle(len(d.Results), func(i, j int) { d.Results[i], d.Results[j] = d.Results[j], d.Results[i] })
		if d.MoneyTracker != nil {
			e := d.MoneyTracker.Entrants
			r.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
		}
		c, err := Transform(ev, at)
		require.NoError(t, err)
		jc, err := json.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, string(ja), string(jc), "case %d shuffled", i)
	}
}

func TestPropertyRowsAreOrderedByRunnerNumberAndType(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	typeRank := map[string]int{OddsFixedWin: 0, OddsFixedPlace: 1, OddsPoolWin: 2, OddsPoolPlace: 3}
	for i := range 500 {
		ev, at := randomEvent(r)
		s, err := Transform(ev, at)
		require.NoError(t, err)
		number := make(map[string]int, len(s.Entrants))
		for j, e := range s.Entrants {
			number[e.EntrantID] = e.RunnerNumber
			if j > 0 {
				require.Less(t, s.Entrants[j-1].RunnerNumber, e.RunnerNumber, "case %d", i)
			}
		}
		for j := 1; j < len(s.MoneyFlow); j++ {
			require.Less(t, number[s.MoneyFlow[j-1].EntrantID], number[s.MoneyFlow[j].EntrantID], "case %d", i)
		}
		for j := 1; j < len(s.Odds); j++ {
			prev, cur := s.Odds[j-1], s.Odds[j]
			if prev.EntrantID == cur.EntrantID {
				require.Less(t, typeRank[prev.Type], typeRank[cur.Type], "case %d", i)
			} else {
				require.Less(t, number[prev.EntrantID], number[cur.EntrantID], "case %d", i)
			}
		}
	}
}
