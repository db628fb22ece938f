package write_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/transform"
)

// raceGen builds hand-made snapshots of one race of 16 runners. Poll k
// (1, 2, 3, ...) is a deterministic function of k and the instant, so tests
// can predict every stored value:
//   - win amount of runner r is (r+1)·10000·k² cents and place amount
//     (r+1)·5000·k, so in-order increments are (r+1)·10000·(2k−1) and
//     (r+1)·5000;
//   - even runners' fixed win odds move by 0.05 per poll, odd runners' odds
//     never move;
//   - the race closes and results appear from poll 3 on.
type raceGen struct {
	raceID    string
	meetingID string
	start     time.Time
	runners   int
}

func newRaceGen(raceID string, start time.Time) raceGen {
	return raceGen{raceID: raceID, meetingID: "M-" + raceID, start: start, runners: 16}
}

func ptr[T any](v T) *T { return &v }

func (g raceGen) entrantID(r int) string { return fmt.Sprintf("%s-E%02d", g.raceID, r+1) }

func winAmount(r, k int) int64   { return int64(r+1) * 10000 * int64(k) * int64(k) }
func placeAmount(r, k int) int64 { return int64(r+1) * 5000 * int64(k) }

func fixedWin(r, k int) float64 {
	base := 2.0 + float64(r)*0.5
	if r%2 == 0 {
		return base + 0.05*float64(k)
	}
	return base
}

func (g raceGen) poll(k int, at time.Time) transform.RaceSnapshot {
	status := transform.StatusOpen
	if k >= 3 {
		status = transform.StatusClosed
	}
	day := nzday.Of(g.start).String()
	s := transform.RaceSnapshot{
		RaceID:     g.raceID,
		ObservedAt: at,
		Meeting: &transform.Meeting{
			MeetingID: g.meetingID, MeetingName: "Te Rapa", Country: "NZ", State: ptr("Waikato"),
			RaceType: transform.RaceTypeThoroughbred, Category: "T", Date: day,
			TrackCondition: ptr(fmt.Sprintf("Good %d", 3+k%2)), ToteStatus: ptr("open"),
		},
		Race: transform.Race{
			RaceID: g.raceID, MeetingID: g.meetingID, Name: "Maiden 1400", RaceNumber: 3, StartTime: g.start,
			Status: status, RaceDateNZ: ptr(day), StartTimeNZ: ptr("12:50:00 NZST"), Distance: ptr(1400),
			TrackCondition: ptr("Good 4"), Weather: ptr("Fine"), Type: ptr("T"), TotalPrizeMoney: ptr(int64(2500000)),
			EntrantCount: ptr(g.runners), FieldSize: ptr(g.runners), PositionsPaid: ptr(3),
			VideoChannels: json.RawMessage(`["tab1"]`), APIGeneratedAt: ptr(at.Add(-time.Second)),
		},
		Quality: transform.Quality{Score: 100, Valid: true, HoldPercentageSum: 100, BetPercentageSum: 100},
	}
	var winTotal, placeTotal int64
	for r := range g.runners {
		winTotal += winAmount(r, k)
		placeTotal += placeAmount(r, k)
	}
	for r := range g.runners {
		id := g.entrantID(r)
		hold := float64(winAmount(r, k)) * 100 / float64(winTotal)
		bet := float64(placeAmount(r, k)) * 100 / float64(placeTotal)
		e := transform.Entrant{
			EntrantID: id, RaceID: g.raceID, Name: fmt.Sprintf("Runner %d", r+1), RunnerNumber: r + 1,
			Barrier: ptr(g.runners - r), FixedWinOdds: ptr(fixedWin(r, k)), FixedPlaceOdds: ptr(1.5 + float64(r)*0.1),
			PoolWinOdds: ptr(3.0 + float64(r)), PoolPlaceOdds: ptr(1.2 + float64(r)*0.2),
			HoldPercentage: ptr(hold), BetPercentage: ptr(bet), WinPoolPercentage: ptr(hold),
			PlacePoolPercentage: ptr(bet), WinPoolAmount: ptr(winAmount(r, k)), PlacePoolAmount: ptr(placeAmount(r, k)),
			Jockey: ptr(fmt.Sprintf("J. Rider %d", r+1)), TrainerName: ptr("T. Trainer"), SilkColours: ptr("Red"),
			Favourite: r == 0, RunnerChange: json.RawMessage(`{"note":"none"}`),
		}
		s.Entrants = append(s.Entrants, e)
		s.MoneyFlow = append(s.MoneyFlow, transform.MoneyFlow{
			RaceID: g.raceID, EntrantID: id, PollingTimestamp: at, EventTimestamp: at,
			TimeToStart: int(g.start.Sub(at).Minutes()), TimeInterval: 5, IntervalType: "5m",
			HoldPercentage: hold, BetPercentage: bet, WinPoolPercentage: ptr(hold), PlacePoolPercentage: ptr(bet),
			WinPoolAmount: winAmount(r, k), PlacePoolAmount: placeAmount(r, k),
			TotalPoolAmount: winAmount(r, k) + placeAmount(r, k),
		})
		for _, o := range []struct {
			typ string
			v   *float64
		}{
			{transform.OddsFixedWin, e.FixedWinOdds}, {transform.OddsFixedPlace, e.FixedPlaceOdds},
			{transform.OddsPoolWin, e.PoolWinOdds}, {transform.OddsPoolPlace, e.PoolPlaceOdds},
		} {
			s.Odds = append(s.Odds, transform.Odds{RaceID: g.raceID, EntrantID: id, Type: o.typ, Odds: *o.v, EventTimestamp: at})
		}
	}
	s.RacePools = &transform.RacePools{
		RaceID: g.raceID, WinPoolTotal: winTotal, PlacePoolTotal: placeTotal, QuinellaPoolTotal: 1000 * int64(k),
		TotalRacePool: winTotal + placeTotal + 1000*int64(k), Currency: "$", DataQualityScore: 100,
		ExtractedPools: 3, Source: "tote_pools",
	}
	if k >= 3 {
		s.Results = &transform.RaceResults{
			RaceID: g.raceID, ResultsAvailable: true, ResultsData: json.RawMessage(`[{"position":1,"runner_number":1}]`),
			DividendsData: json.RawMessage(`[]`), ResultStatus: "interim", ResultTime: at,
		}
	}
	return s
}

// pollTimes returns three instants a minute apart around now, truncated to
// the microsecond PostgreSQL stores.
func pollTimes() [3]time.Time {
	t1 := time.Now().Add(-90 * time.Second).Truncate(time.Microsecond)
	return [3]time.Time{t1, t1.Add(time.Minute), t1.Add(2 * time.Minute)}
}
