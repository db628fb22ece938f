package nztabsim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSameSeedServesByteIdenticalBodiesWhateverTheRequestOrder(t *testing.T) {
	t.Parallel()
	a, _ := newTestSim(t, 42, "13:10")
	b, _ := newTestSim(t, 42, "13:10")
	srvA, srvB := serve(t, a), serve(t, b)

	races := a.Races()
	require.Equal(t, races, b.Races(), "same seed, same plan")
	bodiesA := map[string][]byte{}
	for _, r := range races {
		_, _, bodiesA[r.ID] = get(t, eventURL(srvA.URL, r.ID), nil)
	}
	// B is asked in reverse, with meetings lists and repeated requests in
	// between: nothing a request does may change what another one sees.
	for i := len(races) - 1; i >= 0; i-- {
		if i%5 == 0 {
			get(t, srvB.URL+"/racing/meetings?date_from="+testDate+"&date_to="+testDate, nil)
			get(t, eventURL(srvB.URL, races[(i+7)%len(races)].ID), nil)
		}
		_, _, body := get(t, eventURL(srvB.URL, races[i].ID), nil)
		require.Equal(t, string(bodiesA[races[i].ID]), string(body), "race %s", races[i].ID)
	}
	_, _, ma := get(t, srvA.URL+"/affiliates/v1/racing/meetings?date_from="+testDate+"&date_to="+testDate, nil)
	_, _, mb := get(t, srvB.URL+"/affiliates/v1/racing/meetings?date_from="+testDate+"&date_to="+testDate, nil)
	require.Equal(t, string(ma), string(mb))

	c, _ := newTestSim(t, 43, "13:10")
	require.NotEqual(t, races[0].ID, c.Races()[0].ID, "another seed is another day")
}

func TestIDsAreUUIDShapedAndUnique(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 7, "11:30")
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	check := func(id string) {
		require.Regexp(t, uuid, id)
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}
	for _, m := range s.Meetings() {
		check(m.ID)
	}
	last := s.Races()[len(s.Races())-1]
	for _, r := range s.Races() {
		check(r.ID)
		ev := eventAt(t, s, r.ID, last.FinalAt)
		for _, rn := range ev.Data.Runners {
			check(rn.EntrantID)
		}
		for _, d := range ev.Data.Dividends {
			check(d.ID)
		}
	}
}

func TestValuesChangeBetweenInstantsButNotWithinAStep(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	r := openRace(t, s, "13:00")
	stepStart := r.StartTime.Add(-30 * time.Minute)

	early := eventAt(t, s, r.ID, stepStart)
	sameStep := eventAt(t, s, r.ID, stepStart.Add(Step-time.Nanosecond))
	require.NotEqual(t, early.Header.GeneratedTime, sameStep.Header.GeneratedTime)
	require.Equal(t, early.Data, sameStep.Data, "nothing moves inside one 15 s step")

	later := eventAt(t, s, r.ID, r.StartTime.Add(-5*time.Minute))
	require.NotEqual(t, early.Data.TotePools, later.Data.TotePools, "pools move")
	require.NotEqual(t, runnerOdds(early), runnerOdds(later), "prices move")
	require.NotEqual(t, early.Data.MoneyTracker, later.Data.MoneyTracker, "money moves")
}

func runnerOdds(ev event) []string {
	var out []string
	for _, r := range ev.Data.Runners {
		out = append(out, fmt.Sprintf("%d:%s", r.RunnerNumber, oddsString(r.Odds)))
	}
	return out
}

func oddsString(o odds) string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	return f(o.FixedWin) + "/" + f(o.FixedPlace) + "/" + f(o.PoolWin) + "/" + f(o.PoolPlace)
}

func TestRaceLifecycleOpenClosedInterimFinal(t *testing.T) {
	t.Parallel()
	s, clk := newTestSim(t, 1, "11:30")
	srv := serve(t, s)
	r := openRace(t, s, "12:00")
	require.True(t, r.ActualStart.After(r.StartTime))
	require.True(t, r.InterimAt.After(r.ActualStart))
	require.True(t, r.FinalAt.After(r.InterimAt))

	sec := time.Second
	tests := []struct {
		name            string
		at              time.Time
		status          string
		jumped          bool
		results         bool
		interimDivs     bool
		finalDivs       bool
		poolsClosed     bool
		meetingStatuses string
	}{
		{"an hour before the start", r.StartTime.Add(-time.Hour), StatusOpen, false, false, false, false, false, ""},
		{"a second before the start", r.StartTime.Add(-sec), StatusOpen, false, false, false, false, false, ""},
		{"at the advertised start", r.StartTime, StatusClosed, false, false, false, false, true, ""},
		{"after the jump", r.ActualStart, StatusClosed, true, false, false, false, true, ""},
		{"a second before the interim result", r.InterimAt.Add(-sec), StatusClosed, true, false, false, false, true, ""},
		{"at the interim result", r.InterimAt, StatusInterim, true, true, true, false, true, ""},
		{"a second before the final result", r.FinalAt.Add(-sec), StatusInterim, true, true, true, false, true, ""},
		{"at the final result", r.FinalAt, StatusFinal, true, true, true, true, true, ""},
		{"hours later", r.FinalAt.Add(5 * time.Hour), StatusFinal, true, true, true, true, true, ""},
	}
	for _, tt := range tests {
		clk.Set(tt.at)
		code, _, body := get(t, eventURL(srv.URL, r.ID), nil)
		require.Equal(t, http.StatusOK, code, tt.name)
		ev := decodeEvent(t, body)
		race := ev.Data.Race
		require.Equal(t, tt.status, race.Status, tt.name)
		require.Equal(t, tt.at.UTC().Format(time.RFC3339Nano), ev.Header.GeneratedTime, tt.name)
		if tt.jumped {
			require.Equal(t, r.ActualStart.Unix(), race.ActualStart, tt.name)
		} else {
			require.Zero(t, race.ActualStart, tt.name)
		}
		if tt.results {
			require.Len(t, ev.Data.Results, race.FieldSize, tt.name)
			require.Equal(t, 1, ev.Data.Results[0].Position)
			require.NotNil(t, ev.Data.Results[0].WinningTime)
		} else {
			require.Empty(t, ev.Data.Results, tt.name)
		}
		statuses := map[string]int{}
		products := map[string]bool{}
		for _, d := range ev.Data.Dividends {
			statuses[d.Status]++
			products[d.ProductName] = true
			require.Positive(t, d.PoolSize, tt.name)
			require.GreaterOrEqual(t, d.Dividend, 1.0, tt.name)
		}
		require.Equal(t, tt.interimDivs, statuses[StatusInterim] > 0, tt.name)
		require.Equal(t, tt.finalDivs, statuses[StatusFinal] > 0, tt.name)
		if tt.finalDivs {
			require.Equal(t, statuses[StatusInterim], statuses[StatusFinal], "final rows sit beside the interim ones")
		}
		if tt.interimDivs {
			for _, p := range []string{"Pool Win", "Pool Place", "Pool Quinella", "Pool Trifecta", "Pool First4"} {
				require.True(t, products[p], "%s: %s paid", tt.name, p)
			}
		}
		for _, p := range ev.Data.TotePools {
			if p.ProductType != "EarlyQuadrella" {
				require.Equal(t, tt.poolsClosed, p.IsFinal, tt.name)
				require.Equal(t, map[bool]string{true: "CLOSED", false: "OPEN"}[tt.poolsClosed], p.Status, tt.name)
			}
		}

		// The meetings list agrees with the event.
		_, _, mbody := get(t, srv.URL+"/racing/meetings?date_from="+testDate+"&date_to="+testDate, nil)
		var ml meetingsBody
		require.NoError(t, json.Unmarshal(mbody, &ml))
		found := false
		for _, m := range ml.Data.Meetings {
			for _, rs := range m.Races {
				if rs.ID == r.ID {
					found = true
					require.Equal(t, tt.status, rs.Status, tt.name)
				}
			}
		}
		require.True(t, found)
	}
}

func TestResultsAndDividendsAreConsistent(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 3, "11:30")
	for _, r := range s.Races() {
		if !r.AbandonedAt.IsZero() {
			continue
		}
		ev := eventAt(t, s, r.ID, r.FinalAt)
		byNumber := map[int]eventRunner{}
		for _, rn := range ev.Data.Runners {
			byNumber[rn.RunnerNumber] = rn
		}
		var order []int
		for i, res := range ev.Data.Results {
			require.Equal(t, i+1, res.Position)
			rn, ok := byNumber[res.RunnerNumber]
			require.True(t, ok)
			require.False(t, rn.IsScratched, "a scratched runner cannot finish")
			require.Equal(t, rn.EntrantID, res.EntrantID)
			if i > 0 {
				require.GreaterOrEqual(t, res.MarginLength, ev.Data.Results[i-1].MarginLength, "margins are cumulative")
			}
			order = append(order, res.RunnerNumber)
		}
		for _, d := range ev.Data.Dividends {
			switch d.ProductName {
			case "Pool Win":
				require.Equal(t, order[0], d.Positions[0].RunnerNumber)
			case "Pool Trifecta":
				require.Len(t, d.Positions, 3)
				for i, p := range d.Positions {
					require.Equal(t, order[i], p.RunnerNumber)
					require.Equal(t, i+1, p.Position)
				}
				require.Equal(t, fmt.Sprintf("%d:%d:%d", order[0], order[1], order[2]), d.Description)
			}
		}
	}
}

func TestMoneyTrackerSumsToAboutOneHundredAndShifts(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 5, "11:30")
	ghosts := 0
	for _, r := range s.Races() {
		var prev map[string]int
		shifted := false
		for _, before := range []time.Duration{90 * time.Minute, 20 * time.Minute, 2 * time.Minute} {
			at := r.StartTime.Add(-before)
			if !r.AbandonedAt.IsZero() && !at.Before(r.AbandonedAt) {
				continue
			}
			ev := eventAt(t, s, r.ID, at)
			require.NotNil(t, ev.Data.MoneyTracker)
			runners := map[string]bool{}
			for _, rn := range ev.Data.Runners {
				runners[rn.EntrantID] = true
			}
			hold, bet := map[string]int{}, map[string]int{}
			rows := map[string]int{}
			holdSum, betSum := 0, 0
			for _, e := range ev.Data.MoneyTracker.Entrants {
				require.GreaterOrEqual(t, e.HoldPercentage, 0)
				require.GreaterOrEqual(t, e.BetPercentage, 0)
				hold[e.EntrantID] += e.HoldPercentage
				bet[e.EntrantID] += e.BetPercentage
				rows[e.EntrantID]++
				holdSum += e.HoldPercentage
				betSum += e.BetPercentage
			}
			require.GreaterOrEqual(t, holdSum, 98, "race %s", r.ID)
			require.LessOrEqual(t, holdSum, 102, "race %s", r.ID)
			require.GreaterOrEqual(t, betSum, 98, "race %s", r.ID)
			require.LessOrEqual(t, betSum, 102, "race %s", r.ID)
			require.Greater(t, slices.Max(mapValues(rows)), 1, "several rows per entrant")
			for id := range hold {
				if !runners[id] {
					ghosts++
				}
			}
			if prev != nil && !mapsEqual(prev, hold) {
				shifted = true
			}
			prev = hold
		}
		if prev != nil && r.AbandonedAt.IsZero() {
			require.True(t, shifted, "race %s: money moves during the day", r.ID)
		}
	}
	require.Positive(t, ghosts, "some races carry a money-tracker id that is not a runner, like the real data")
}

func mapValues(m map[string]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMoneyTrackerIsOnlySentWhenAskedFor(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "12:00")
	srv := serve(t, s)
	id := s.Races()[0].ID
	_, _, body := get(t, srv.URL+"/racing/events/"+id, nil)
	require.NotContains(t, decodeAny(t, body)["data"], "money_tracker")
	_, _, body = get(t, srv.URL+"/racing/events/"+id+"?with_money_tracker=true", nil)
	require.Contains(t, decodeAny(t, body)["data"], "money_tracker")
}

func TestPoolsGrowBeforeTheStartAndFreezeAfterClose(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 9, "11:30")
	for _, r := range s.Races() {
		if !r.AbandonedAt.IsZero() {
			continue
		}
		totals := func(at time.Time) map[string]float64 {
			out := map[string]float64{}
			for _, p := range eventAt(t, s, r.ID, at).Data.TotePools {
				require.Equal(t, p.Total, math.Round(p.Total*100)/100, "dollars with cents")
				out[p.ProductType] = p.Total
			}
			return out
		}
		var prev map[string]float64
		for _, before := range []time.Duration{3 * time.Hour, time.Hour, 30 * time.Minute, 10 * time.Minute, time.Minute, 15 * time.Second} {
			cur := totals(r.StartTime.Add(-before))
			require.Contains(t, cur, "Win")
			if prev != nil {
				for k, v := range cur {
					if k == "EarlyQuadrella" {
						require.GreaterOrEqual(t, v, prev[k])
						continue
					}
					require.Greater(t, v, prev[k], "race %s pool %s grows", r.ID, k)
				}
			}
			prev = cur
		}
		atClose := totals(r.StartTime)
		require.Equal(t, atClose, totals(r.StartTime.Add(time.Minute)), "race %s: frozen after close", r.ID)
		require.Equal(t, atClose, totals(r.FinalAt.Add(time.Hour)), "race %s: frozen after close", r.ID)
	}
}

func TestOddsFreezeAtCloseAndNameOneFavourite(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 11, "11:30")
	r := openRace(t, s, "12:00")
	atClose := eventAt(t, s, r.ID, r.StartTime)
	require.Equal(t, runnerOdds(atClose), runnerOdds(eventAt(t, s, r.ID, r.FinalAt)))

	favs := 0
	for _, rn := range atClose.Data.Runners {
		if rn.IsScratched {
			require.Nil(t, rn.Odds.FixedWin, "a scratched runner has no price")
			continue
		}
		require.NotNil(t, rn.Odds.FixedWin)
		require.GreaterOrEqual(t, *rn.Odds.FixedWin, 1.01)
		require.GreaterOrEqual(t, *rn.Odds.FixedWin, *rn.Odds.FixedPlace)
		require.GreaterOrEqual(t, *rn.Odds.PoolWin, *rn.Odds.PoolPlace)
		if rn.Favourite {
			favs++
			require.NotNil(t, atClose.Data.Favourite)
			require.Equal(t, rn.EntrantID, atClose.Data.Favourite.EntrantID)
		}
	}
	require.Equal(t, 1, favs)
}

func TestScratchingsHappenDuringTheDay(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	checked := 0
	for _, r := range s.Races() {
		if r.Scratchings == 0 || !r.AbandonedAt.IsZero() {
			continue
		}
		start := eventAt(t, s, r.ID, r.StartTime.Add(-5*time.Hour))
		end := eventAt(t, s, r.ID, r.StartTime)
		require.Equal(t, len(end.Data.Runners), end.Data.Race.EntrantCount)
		require.Equal(t, end.Data.Race.EntrantCount-r.Scratchings, end.Data.Race.FieldSize)
		require.Equal(t, start.Data.Race.EntrantCount, start.Data.Race.FieldSize, "nobody is scratched five hours out")
		for i, rn := range end.Data.Runners {
			if !rn.IsScratched {
				continue
			}
			require.False(t, start.Data.Runners[i].IsScratched)
			require.NotNil(t, start.Data.Runners[i].Odds.FixedWin)
			require.Positive(t, rn.ScratchTime)
			require.Less(t, rn.ScratchTime, r.StartTime.Unix())
			at := time.Unix(rn.ScratchTime, 0)
			require.False(t, eventAt(t, s, r.ID, at.Add(-time.Second)).Data.Runners[i].IsScratched)
			require.True(t, eventAt(t, s, r.ID, at).Data.Runners[i].IsScratched)
			require.Equal(t, r.StartTime.Sub(at) <= time.Hour, rn.IsLateScratched)
			checked++
		}
	}
	require.Positive(t, checked)
}

func TestAbandonedRacesAreRareAndEndInAbandoned(t *testing.T) {
	t.Parallel()
	total, abandoned := 0, 0
	for seed := int64(1); seed <= 20; seed++ {
		s, _ := newTestSim(t, seed, "11:30")
		for _, r := range s.Races() {
			total++
			if r.AbandonedAt.IsZero() {
				continue
			}
			abandoned++
			before := eventAt(t, s, r.ID, r.AbandonedAt.Add(-time.Second))
			require.NotEqual(t, StatusAbandoned, before.Data.Race.Status)
			for _, at := range []time.Time{r.AbandonedAt, r.FinalAt.Add(time.Hour)} {
				ev := eventAt(t, s, r.ID, at)
				require.Equal(t, StatusAbandoned, ev.Data.Race.Status)
				require.Empty(t, ev.Data.Results)
				require.Empty(t, ev.Data.Dividends)
			}
		}
	}
	rate := float64(abandoned) / float64(total)
	require.Greater(t, rate, 0.01, "%d of %d", abandoned, total)
	require.Less(t, rate, 0.07, "about one race in thirty: %d of %d", abandoned, total)
}

func TestRunnerCountsStayWithinSixToSixteen(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 10; seed++ {
		s, _ := newTestSim(t, seed, "11:30")
		for _, r := range s.Races() {
			require.GreaterOrEqual(t, r.Runners, 6)
			require.LessOrEqual(t, r.Runners, 16)
			ev := eventAt(t, s, r.ID, r.StartTime.Add(-time.Hour))
			require.Len(t, ev.Data.Runners, r.Runners)
			for i, rn := range ev.Data.Runners {
				require.Equal(t, i+1, rn.RunnerNumber)
				if r.Category == "H" {
					require.Regexp(t, `^(Fr|Sr)\d+$`, rn.BarrierPosition)
				} else {
					require.Empty(t, rn.BarrierPosition)
					require.Positive(t, rn.Barrier)
				}
			}
		}
	}
}

func TestMeetingsListIncludesTheMeetingsABaselineMustFilterOut(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	srv := serve(t, s)
	code, _, body := get(t, srv.URL+"/affiliates/v1/racing/meetings?date_from="+testDate+"&date_to="+testDate, nil)
	require.Equal(t, http.StatusOK, code)
	var ml meetingsBody
	require.NoError(t, json.Unmarshal(body, &ml))
	require.Len(t, ml.Data.Meetings, DefaultMeetings+DefaultExtraMeetings)

	kept, dropped := 0, 0
	kinds := map[string]bool{}
	for _, m := range ml.Data.Meetings {
		require.Equal(t, testDate+"T00:00:00Z", m.Date)
		require.Equal(t, categoryName(m.Category), m.CategoryName)
		require.Len(t, m.Races, DefaultRacesPerMeeting)
		if (m.Country == "NZ" || m.Country == "AUS") && (m.Category == "T" || m.Category == "H") {
			kept++
			kinds[m.Country+m.Category] = true
		} else {
			dropped++
		}
		for _, r := range m.Races {
			st, err := time.Parse(time.RFC3339, r.StartTime)
			require.NoError(t, err)
			require.True(t, strings.HasSuffix(r.StartTime, "Z"), "start_time is UTC")
			if m.Country == "NZ" || m.Country == "AUS" {
				// Overseas meetings keep their local date and may run past NZ
				// midnight, as in the real list.
				require.Equal(t, testDate, st.In(s.loc).Format(time.DateOnly), "raced on the NZ day")
			}
			require.Contains(t, []string{StatusOpen, StatusClosed, StatusInterim, StatusFinal, StatusAbandoned}, r.Status)
		}
	}
	require.Equal(t, DefaultMeetings, kept)
	require.Equal(t, DefaultExtraMeetings, dropped)
	require.Len(t, kinds, 4, "NZ and AUS, thoroughbred and harness")
	for _, m := range ml.Data.Meetings {
		if m.Category == "G" {
			return
		}
	}
	t.Fatal("no greyhound meeting to filter out")
}

func TestMeetingsListFiltersAndPages(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	srv := serve(t, s)
	list := func(query string) (int, meetingsBody) {
		code, _, body := get(t, srv.URL+"/racing/meetings?"+query, nil)
		var ml meetingsBody
		if code == http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &ml))
		} else {
			require.True(t, json.Valid(body), "errors are JSON too")
		}
		return code, ml
	}
	all := len(s.Meetings())

	tests := []struct {
		name  string
		query string
		code  int
		count int
	}{
		{"the day", "date_from=" + testDate + "&date_to=" + testDate, 200, all},
		{"today by the clock", "", 200, all},
		{"today by name", "date_from=today&date_to=today", 200, all},
		{"another day", "date_from=2025-07-18&date_to=2025-07-18", 200, 0},
		{"a range around the day", "date_from=2025-07-01&date_to=2025-07-31", 200, all},
		{"NZ only", "date_from=today&date_to=today&country=NZ", 200, countMeetings(s, func(m MeetingInfo) bool { return m.Country == "NZ" })},
		{"greyhounds only", "date_from=today&date_to=today&category=g", 200, countMeetings(s, func(m MeetingInfo) bool { return m.Category == "G" })},
		{"one id", "ids=" + s.Meetings()[2].ID, 200, 1},
		{"a bad date", "date_from=17-07-2025", 400, 0},
		{"a bad limit", "limit=-1", 400, 0},
		{"a bad offset", "offset=x", 400, 0},
	}
	for _, tt := range tests {
		code, ml := list(tt.query)
		require.Equal(t, tt.code, code, tt.name)
		require.Len(t, ml.Data.Meetings, tt.count, tt.name)
	}

	seen := map[string]bool{}
	for offset := 0; offset < all+3; offset += 4 {
		code, ml := list(fmt.Sprintf("limit=4&offset=%d", offset))
		require.Equal(t, 200, code)
		require.LessOrEqual(t, len(ml.Data.Meetings), 4)
		for _, m := range ml.Data.Meetings {
			require.False(t, seen[m.Meeting], "page overlap")
			seen[m.Meeting] = true
		}
	}
	require.Len(t, seen, all, "pages cover every meeting once")
}

func countMeetings(s *Sim, keep func(MeetingInfo) bool) int {
	n := 0
	for _, m := range s.Meetings() {
		if keep(m) {
			n++
		}
	}
	return n
}

func TestMeetingByIDAndUnknownPaths(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	srv := serve(t, s)
	m := s.Meetings()[0]
	tests := []struct {
		name string
		path string
		code int
	}{
		{"meeting by id", "/racing/meetings/" + m.ID, 200},
		{"meeting by id with prefix", "/affiliates/v1/racing/meetings/" + m.ID, 200},
		{"unknown meeting", "/racing/meetings/nope", 404},
		{"unknown race", "/racing/events/00000000-0000-4000-8000-000000000000", 404},
		{"unknown race with prefix", "/affiliates/v1/racing/events/nope", 404},
		{"unknown path", "/racing/futures", 404},
		{"root", "/", 404},
		{"known race without prefix", "/racing/events/" + m.RaceIDs[0], 200},
	}
	for _, tt := range tests {
		code, hdr, body := get(t, srv.URL+tt.path, nil)
		require.Equal(t, tt.code, code, tt.name)
		require.Equal(t, "application/json", hdr.Get("Content-Type"), tt.name)
		v := decodeAny(t, body)
		h, ok := v["header"].(map[string]any)
		require.True(t, ok, tt.name)
		require.NotEmpty(t, h["generated_time"], tt.name)
		if tt.code == 404 {
			require.NotEmpty(t, h["error"], "%s: the error is named", tt.name)
		}
	}
}

func TestEventShapesMatchTheRealAPI(t *testing.T) {
	t.Parallel()
	real := decodeAny(t, fixture(t, "race-event-full-response.json"))
	s, _ := newTestSim(t, 1, "11:30")
	var sim map[string]any
	for _, r := range s.Races() {
		if r.Scratchings == 0 && r.AbandonedAt.IsZero() && r.Country == "NZ" && r.Category == "T" {
			body, err := s.EventJSON(r.ID, r.FinalAt)
			require.NoError(t, err)
			sim = decodeAny(t, body)
			break
		}
	}
	require.NotNil(t, sim)

	// The keys the pipeline reads must exist in both with the same JSON
	// kind (integer, decimal, string, bool, object, array).
	paths := map[string][]string{
		"header": {"title", "generated_time", "url"},
		"data": {"race", "runners", "results", "dividends", "substitutions", "money_tracker", "tote_pools",
			"error", "favourite", "mover"},
		"data.race": {"event_id", "meeting_id", "meeting_name", "description", "race_number", "status",
			"advertised_start", "actual_start", "race_date_nz", "start_time_nz", "type", "country", "state",
			"distance", "weather", "track_condition", "track_surface", "track_direction", "rail_position",
			"entrant_count", "field_size", "positions_paid", "prize_monies", "silk_url", "silk_base_url",
			"video_channels", "class", "gait", "start_type"},
		"data.runners.0": {"entrant_id", "name", "runner_number", "barrier", "is_scratched", "is_late_scratched",
			"is_emergency", "scratch_time", "odds", "favourite", "mover", "jockey", "trainer_name",
			"silk_colours", "silk_url_64x64", "silk_url_128x128"},
		"data.runners.0.odds":           {"fixed_win", "fixed_place", "pool_win", "pool_place"},
		"data.results.0":                {"position", "name", "barrier", "runner_number", "entrant_id", "margin_length", "winning_time", "time_ran"},
		"data.dividends.0":              {"id", "tote", "product_name", "status", "dividend", "pool_size", "jackpot_size", "positions", "description"},
		"data.dividends.0.positions.0":  {"runner_number", "position"},
		"data.money_tracker.entrants.0": {"entrant_id", "hold_percentage", "bet_percentage"},
		"data.tote_pools.0":             {"product_type", "total", "status", "is_final"},
		"data.race.prize_monies":        {"1st", "2nd", "3rd", "total_value"},
		"params":                        {"enc", "id", "with_money_tracker", "with_tote_trends_data"},
		"data.substitutions":            nil,
		"data.money_tracker.entrants":   nil,
	}
	for path, keys := range paths {
		rv, sv := walk(t, real, path), walk(t, sim, path)
		require.Equal(t, kindOf(rv), kindOf(sv), path)
		for _, k := range keys {
			ro, so := rv.(map[string]any), sv.(map[string]any)
			require.Contains(t, ro, k, "fixture %s", path)
			require.Contains(t, so, k, "simulator %s", path)
			require.Equal(t, kindOf(ro[k]), kindOf(so[k]), "%s.%s", path, k)
		}
	}

	race := walk(t, sim, "data.race").(map[string]any)
	require.Regexp(t, `^\d{2}:\d{2}:\d{2} NZ(ST|DT)$`, race["start_time_nz"])
	require.Equal(t, testDate, race["race_date_nz"])
	require.Regexp(t, `^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0000 UTC$`, race["advertised_start_string"])
}

// walk follows a dotted path of object keys and array indices.
func walk(t *testing.T, v any, path string) any {
	t.Helper()
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			v, ok = x[p]
			require.True(t, ok, "no %q in %s", p, path)
		case []any:
			var i int
			_, err := fmt.Sscan(p, &i)
			require.NoError(t, err, path)
			require.Greater(t, len(x), i, path)
			v = x[i]
		default:
			t.Fatalf("cannot descend into %T at %q of %s", v, p, path)
		}
	}
	return v
}

// kindOf names a decoded JSON value's kind. Numbers are one kind: the API
// writes 5 and 5.6 alike; TestIntegerFieldsAreIntegers pins the integers.
func kindOf(v any) string {
	switch v.(type) {
	case json.Number:
		return "number"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func TestIntegerFieldsAreIntegers(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, 1, "11:30")
	r := openRace(t, s, "12:00")
	body, err := s.EventJSON(r.ID, r.FinalAt)
	require.NoError(t, err)
	v := decodeAny(t, body)
	isInt := func(x any) bool {
		n, ok := x.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	}
	race := walk(t, v, "data.race").(map[string]any)
	for _, k := range []string{"advertised_start", "actual_start", "race_number", "distance", "entrant_count", "field_size", "positions_paid"} {
		require.True(t, isInt(race[k]), "data.race.%s = %v", k, race[k])
	}
	for _, e := range walk(t, v, "data.money_tracker.entrants").([]any) {
		row := e.(map[string]any)
		require.True(t, isInt(row["hold_percentage"]) && isInt(row["bet_percentage"]), "money tracker percentages are integers: %v", row)
	}
	for _, x := range walk(t, v, "data.race.prize_monies").(map[string]any) {
		require.True(t, isInt(x), "prize money is whole dollars")
	}
}

func TestStartTimeNZFollowsDaylightSaving(t *testing.T) {
	t.Parallel()
	tests := []struct {
		date, zone string
	}{
		{"2025-07-17", "NZST"},
		{"2025-12-01", "NZDT"},
	}
	for _, tt := range tests {
		s, err := New(Config{Seed: 1, Date: tt.date, Clock: NewManualClock(time.Unix(0, 0))})
		require.NoError(t, err)
		r := s.Races()[0]
		ev := eventAt(t, s, r.ID, r.StartTime)
		require.True(t, strings.HasSuffix(ev.Data.Race.StartTimeNZ, tt.zone), "%s: %s", tt.date, ev.Data.Race.StartTimeNZ)
		require.Equal(t, tt.date, ev.Data.Race.RaceDateNZ)
		require.Equal(t, r.StartTime.In(s.loc).Format("15:04:05"), ev.Data.Race.StartTimeNZ[:8])
	}
}

func TestEventJSONMatchesTheServedBody(t *testing.T) {
	t.Parallel()
	s, clk := newTestSim(t, 2, "13:37")
	srv := serve(t, s)
	id := s.Races()[10].ID
	want, err := s.EventJSON(id, clk.Now())
	require.NoError(t, err)
	_, _, got := get(t, srv.URL+"/racing/events/"+id+"?with_will_pays=true&with_money_tracker=true&with_tote_trends_data=true", nil)
	require.Equal(t, string(want), string(got))

	_, err = s.EventJSON("nope", clk.Now())
	require.ErrorIs(t, err, ErrUnknownRace)
}
