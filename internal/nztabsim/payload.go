package nztabsim

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

func (s *Sim) eventData(rc *race, t time.Time, withMoney bool) eventData {
	st := s.state(rc, t)
	m := rc.meeting
	nz := rc.adv.In(s.loc)
	d := eventData{
		Race: eventRace{
			EventID:               rc.id,
			MeetingName:           m.name,
			DisplayMeetingName:    m.name,
			MeetingID:             m.id,
			Status:                st.status,
			Description:           rc.name,
			AdvertisedStart:       rc.adv.Unix(),
			AdvertisedStartString: rc.adv.UTC().Format("2006-01-02 15:04:05 -0700 MST"),
			RaceDateNZ:            s.date,
			StartTimeNZ:           nz.Format("15:04:05 MST"),
			RaceNumber:            rc.number,
			Type:                  m.kind.category,
			StartType:             rc.startType,
			Country:               m.kind.country,
			State:                 m.venue.state,
			Distance:              rc.distance,
			Weather:               m.weather,
			SilkBaseURL:           "silks.example.com",
			TrackCondition:        m.trackCondition(t),
			TrackDirection:        m.venue.direction,
			TrackSurface:          surface(m),
			TrackCircumference:    rc.trackCirc,
			SilkURL:               rc.silkURL,
			EntrantCount:          len(rc.runners),
			FieldSize:             st.field,
			PositionsPaid:         st.placesPaid,
			VideoChannels:         nonNil(m.video),
			Tips:                  rc.tips,
			RailPosition:          rc.rail,
			Class:                 rc.class,
			PrizeMonies:           rc.prize,
			Gait:                  rc.gait,
			TrackHomeStraight:     rc.straight,
		},
		Results:       []result{},
		Dividends:     []dividend{},
		Substitutions: []substitution{},
		Derivatives:   json.RawMessage("null"),
		BigBets:       json.RawMessage("null"),
		LiveBets:      json.RawMessage("null"),
		BiggestBet:    json.RawMessage("null"),
	}
	if st.jumped {
		d.Race.ActualStart = rc.actual.Unix()
		d.Race.ActualStartString = rc.actual.UTC().Format("2006-01-02 15:04:05 -0700 MST")
	}

	d.Runners = make([]eventRunner, len(rc.runners))
	for i, rn := range rc.runners {
		d.Runners[i] = s.runnerJSON(rc, rn, st.runners[i])
		if st.runners[i].fav {
			fr := d.Runners[i]
			d.Favourite = &fr
		}
		if st.runners[i].mover {
			mr := d.Runners[i]
			d.Mover = &mr
		}
	}

	if withMoney {
		mt := &moneyTracker{Entrants: make([]mtEntry, len(st.money))}
		for i, row := range st.money {
			mt.Entrants[i] = mtEntry{EntrantID: row.id, HoldPercentage: row.hold, BetPercentage: row.bet}
		}
		d.MoneyTracker = mt
	}

	d.TotePools = make([]totePool, len(st.pools))
	for i, p := range st.pools {
		tp := totePool{
			ProductType:    p.product,
			Total:          p.total,
			Status:         "OPEN",
			IsCommingled:   !p.early,
			CommingledInfo: !p.early,
			IsFinal:        p.closed,
			WinInvestment:  strconv.FormatInt(int64(math.Round(p.total*7.85/100))*100, 10),
		}
		if p.closed {
			tp.Status = "CLOSED"
		}
		if p.early {
			tp.EarlyQuaddie = m.early
			tp.IsFinal = false
		}
		d.TotePools[i] = tp
	}

	if st.status == StatusInterim || st.status == StatusFinal {
		d.Results = s.results(rc)
		d.Dividends = s.dividends(rc, st)
		d.Substitutions = s.substitutions(rc, st)
	}
	return d
}

// surface is the track surface the API reports for a meeting.
func surface(m *meeting) string {
	switch {
	case m.kind.category == "G":
		return "Sand"
	case m.kind.category == "H":
		return "All Weather"
	case m.venue.synthetic:
		return "Synthetic"
	default:
		return "Turf"
	}
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

func (s *Sim) runnerJSON(rc *race, rn *runner, rs runnerState) eventRunner {
	er := eventRunner{
		EntrantID:       rn.id,
		MarketName:      "Final Field",
		PrimaryMarket:   true,
		Name:            rn.name,
		IsScratched:     rs.scratched,
		IsLateScratched: rs.scratched && rn.late,
		RunnerChange:    rn.change,
		Barrier:         rn.barrier,
		BarrierPosition: rn.barrierPos,
		RunnerNumber:    rn.number,
		Age:             rn.age,
		Sex:             rn.sex,
		Colour:          rn.colour,
		SilkColours:     rn.silkColours,
		SilkURL64:       rn.silk64,
		SilkURL128:      rn.silk128,
		Jockey:          rn.jockey,
		Owners:          rn.owners,
		TrainerName:     rn.trainer,
		TrainerLocation: rn.trainerLoc,
		Favourite:       rs.fav,
		Mover:           rs.mover,
	}
	if rs.scratched {
		er.ScratchTime = rn.scratchAt.Unix()
	}
	if rs.hasOdds {
		fw, fp, pw, pp := rs.fixedWin, rs.fixedPl, rs.poolWin, rs.poolPl
		er.Odds = odds{FixedWin: &fw, FixedPlace: &fp, PoolWin: &pw, PoolPlace: &pp}
	}
	if rn.weight != "" {
		er.Weight = &weight{Allocated: rn.weight, Total: rn.weight}
	}
	return er
}

// results lists every finisher; only the winner carries the race time.
func (s *Sim) results(rc *race) []result {
	out := make([]result, len(rc.order))
	for pos, i := range rc.order {
		rn := rc.runners[i]
		out[pos] = result{
			Position:         pos + 1,
			Name:             rn.name,
			Barrier:          rn.barrier,
			RunnerNumber:     rn.number,
			MarginLength:     rc.margins[pos],
			PositionalMargin: rc.marginText[pos],
			EntrantID:        rn.id,
		}
		if pos == 0 {
			wt := rc.winningTime
			out[pos].WinningTime, out[pos].TimeRan = &wt, &wt
		}
	}
	return out
}

// dividends pays the tote pools on the result. Interim rows appear with the
// interim result; the final rows are added beside them, as the real API does.
func (s *Sim) dividends(rc *race, st raceState) []dividend {
	poolSize := map[string]float64{}
	for _, p := range st.pools {
		poolSize[p.product] = p.total
	}
	q := st.tote
	ord := rc.order
	placeDiv := 3.5
	if st.placesPaid >= 3 {
		placeDiv = 5
	}
	// Harville: the chance of an exact order from win probabilities.
	harville := func(idx ...int) float64 {
		p, left := 1.0, 1.0
		for _, i := range idx {
			p *= q[i] / max(left, 1e-9)
			left -= q[i]
		}
		return p
	}
	type row struct {
		product string
		div     float64
		pos     []int // indices into rc.runners, in finishing order
		place   bool
	}
	var rows []row
	rows = append(rows, row{"Pool Win", max(1.1, round1(0.85/q[ord[0]])), ord[:1], false})
	for j := 0; j < min(st.placesPaid, len(ord)); j++ {
		rows = append(rows, row{"Pool Place", max(1, round1(1+(0.85/q[ord[j]]-1)/(placeDiv+1.5))), ord[j : j+1], true})
	}
	if len(ord) >= 2 {
		pq := harville(ord[0], ord[1]) + harville(ord[1], ord[0])
		rows = append(rows, row{"Pool Quinella", max(1, round1(0.8/pq)), ord[:2], false})
	}
	if len(ord) >= 3 {
		rows = append(rows, row{"Pool Trifecta", max(1, round1(0.78/harville(ord[:3]...))), ord[:3], false})
	}
	if len(ord) >= 4 {
		rows = append(rows, row{"Pool First4", max(1, round1(0.75/harville(ord[:4]...))), ord[:4], false})
	}
	pools := map[string]string{
		"Pool Win": "Win", "Pool Place": "Place", "Pool Quinella": "Quinella",
		"Pool Trifecta": "Trifecta", "Pool First4": "FirstFour",
	}
	statuses := []string{StatusInterim}
	if st.status == StatusFinal {
		statuses = append(statuses, StatusFinal)
	}
	var out []dividend
	for si, status := range statuses {
		for ri, rw := range rows {
			dv := dividend{
				ID:          keyedUUID(5, s.seed, s.dayKey, purposeDividendID, uint64(rc.idx), uint64(si), uint64(ri)),
				Tote:        "NZ",
				ProductName: rw.product,
				Status:      status,
				Dividend:    min(rw.div, 99999),
				PoolSize:    poolSize[pools[rw.product]],
			}
			desc := ""
			for p, i := range rw.pos {
				pos := p + 1
				if rw.place {
					pos = 1 // the real API gives each place row its runner at position 1
				}
				dv.Positions = append(dv.Positions, dividendPosition{RunnerNumber: rc.runners[i].number, Position: pos})
				if desc != "" {
					desc += ":"
				}
				desc += strconv.Itoa(rc.runners[i].number)
			}
			dv.Description = desc
			out = append(out, dv)
		}
	}
	return out
}

// substitutions names the tote favourite as the substitute for exotic bets
// on late scratchings.
func (s *Sim) substitutions(rc *race, st raceState) []substitution {
	late := false
	for i, rn := range rc.runners {
		if st.runners[i].scratched && rn.late {
			late = true
		}
	}
	if !late {
		return []substitution{}
	}
	best := -1
	for i := range rc.runners {
		if !st.runners[i].scratched && (best < 0 || st.tote[i] > st.tote[best]) {
			best = i
		}
	}
	return []substitution{{EntrantID: rc.runners[best].id, Tote: "NZ", ProductName: "Pool Win"}}
}

// meetingJSON renders a meeting and its race summaries at instant t.
func (s *Sim) meetingJSON(m *meeting, t time.Time) meetingJSON {
	mj := meetingJSON{
		Meeting:        m.id,
		Name:           m.name,
		Date:           s.date + "T00:00:00Z",
		TrackCondition: m.trackCondition(t),
		Category:       m.kind.category,
		CategoryName:   categoryName(m.kind.category),
		Country:        m.kind.country,
		State:          m.venue.state,
		VideoChannels:  m.video,
		Quaddie:        m.quaddie,
		EarlyQuaddie:   m.early,
		Races:          make([]raceSummary, len(m.races)),
	}
	if m.tote {
		mj.ToteMeetingNumber = m.toteNo
		mj.ToteRacedayDate = s.date
		mj.ToteStatus = m.toteStatus(t)
	}
	for i, rc := range m.races {
		rs := raceSummary{
			ID:             rc.id,
			RaceNumber:     rc.number,
			Name:           rc.name,
			StartTime:      rc.adv.UTC().Format(time.RFC3339),
			TrackCondition: m.trackCondition(t),
			Distance:       rc.distance,
			Weather:        m.weather,
			Country:        m.kind.country,
			State:          m.venue.state,
			Status:         rc.status(t),
		}
		if m.tote {
			rs.ToteStartTime = rc.adv.In(s.loc).Format("15:04:05")
		}
		mj.Races[i] = rs
	}
	return mj
}

// errorJSON is the real API's error envelope: a header carrying the error.
func errorJSON(title, url, msg, code string, at time.Time) errorBody {
	return errorBody{Header: header{
		Title:         title,
		GeneratedTime: at.UTC().Format(time.RFC3339Nano),
		URL:           url,
		Error:         msg,
		ErrorCode:     code,
	}}
}

// eventTitle is the header title of an event response.
func eventTitle(id string) string { return fmt.Sprintf("Event Details: %s", id) }
