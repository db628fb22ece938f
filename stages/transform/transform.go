// Package transform turns one NZ TAB race-event payload, observed at a known
// instant, into a RaceSnapshot: the rows that poll contributes to the
// database, with money in integer cents. It is pure — no I/O, no clock, no
// shared state — so replaying a stored payload gives the identical snapshot.
//
// Oddities are reported in the snapshot's Quality and never block the poll,
// with one exception: money that cannot be true. When the money tracker's
// hold or bet shares, over all its ids, sum to more than 100 % plus
// PercentageTolerance, the snapshot carries no money-flow rows and no
// entrant money fields (so stored values stand), Quality.MoneyWithheld says
// why and Quality.Valid is false; the race, entrants, pools and odds still
// update. Hold on money-tracker ids that are not runners (8 % in the real
// sample) is real money of the pool: it counts towards the 100 % and is
// reported, not failed.
package transform

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // NZ dates must not depend on the host having zoneinfo

	"github.com/raceflow/raceflow/stages/nztab"
)

// Race statuses as stored (races.status CHECK).
const (
	StatusOpen      = "open"
	StatusClosed    = "closed"
	StatusInterim   = "interim"
	StatusFinal     = "final"
	StatusAbandoned = "abandoned"
)

// Meeting race types (meetings.race_type CHECK).
const (
	RaceTypeThoroughbred = "thoroughbred"
	RaceTypeHarness      = "harness"
	RaceTypeGreyhound    = "greyhound"
)

// Odds types in the fixed order odds rows are emitted in.
const (
	OddsFixedWin   = "fixed_win"
	OddsFixedPlace = "fixed_place"
	OddsPoolWin    = "pool_win"
	OddsPoolPlace  = "pool_place"
)

// Storage limits of the numeric columns (numeric(10,2) odds, numeric(5,2)
// percentages): values outside them would fail the whole write transaction,
// so the transform drops them with a warning instead.
const (
	maxOdds       = 99999999.99
	maxPercentBP  = 99999 // 999.99 % in hundredths
	maxTrackerRow = 1e9   // |row| in hundredths beyond which a tracker row is garbage
)

// nzZone is the zone the racing day is counted in.
const nzZone = "Pacific/Auckland"

// MapStatus maps an API race status to the stored lifecycle state, with
// the API package's rules (case-insensitive, legacy spellings); anything
// else matches ErrUnknownStatus.
func MapStatus(s string) (string, error) {
	st, err := nztab.ParseStatus(s)
	if err != nil {
		return "", err
	}
	return string(st), nil
}

// RaceType maps an API race type or meeting category (T, H, G; any case,
// surrounding space ignored) to meetings.race_type, and reports whether it
// is known. The event payload (race.type) and the meetings list (category)
// spell it alike; this is the one mapping both use.
func RaceType(t string) (string, bool) {
	switch strings.ToUpper(strings.TrimSpace(t)) {
	case "T":
		return RaceTypeThoroughbred, true
	case "H":
		return RaceTypeHarness, true
	case "G":
		return RaceTypeGreyhound, true
	}
	return "", false
}

// Transform builds the snapshot of one poll. observedAt is when the fetch
// happened; it times every history row and time_to_start, so the same
// payload and instant always give the same snapshot.
//
// It returns a *Error only when the payload cannot be keyed, timed or given
// a valid status; every other oddity is reported in Quality and the poll
// proceeds.
func Transform(ev *nztab.EventResponse, observedAt time.Time) (RaceSnapshot, error) {
	if ev == nil {
		return RaceSnapshot{}, &Error{Field: "data", Reason: "no payload", Err: ErrMissingField}
	}
	d := &ev.Data
	r := &d.Race
	raceID := r.RaceID()
	if raceID == "" {
		return RaceSnapshot{}, &Error{Field: "data.race.event_id", Reason: "no race id (event_id or id)", Err: ErrMissingField}
	}
	if r.MeetingID == "" {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "data.race.meeting_id",
			Reason: "no meeting id; a race row cannot exist without its meeting", Err: ErrMissingField}
	}
	if r.AdvertisedStart <= 0 {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "data.race.advertised_start",
			Reason: "advertised_start missing", Err: ErrMissingField}
	}
	if !plausibleUnix(r.AdvertisedStart) {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "data.race.advertised_start",
			Reason: fmt.Sprintf("advertised_start %d is not between 2000 and 2100", r.AdvertisedStart), Err: ErrInvalidField}
	}
	if !plausibleUnix(observedAt.Unix()) {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "observed_at",
			Reason: "observation time " + observedAt.UTC().Format(time.RFC3339) + " is not between 2000 and 2100", Err: ErrInvalidField}
	}
	status, err := MapStatus(r.Status)
	if err != nil {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "data.race.status",
			Reason: "status " + strconv.Quote(r.Status) + " is not a known race status", Err: err}
	}

	observedAt = observedAt.UTC()
	q := &qualityAcc{}
	if d.Error != "" {
		q.warnf("payload carries an API error: %s", d.Error)
	}
	if ev.ReplacedChars > 0 {
		q.replacedChars = ev.ReplacedChars
		q.warnf("%d NUL characters or invalid UTF-8 sequences, which the database cannot store, were replaced with U+FFFD", ev.ReplacedChars)
	}
	start := time.Unix(r.AdvertisedStart, 0).UTC()

	s := RaceSnapshot{RaceID: raceID, ObservedAt: observedAt}
	s.Race = buildRace(raceID, status, r, start, ev.Header.GeneratedTime, q)
	s.Meeting = buildMeeting(r, s.Race.RaceDateNZ, start, q)
	s.Entrants = buildEntrants(raceID, d.Runners, q)
	s.RacePools = extractPools(raceID, d, q)
	holdBP, betBP := applyMoney(&s, d.MoneyTracker, TimeToStart(start, observedAt), q)
	s.Odds = buildOdds(raceID, s.Entrants, observedAt)
	if s.Results, err = buildResults(raceID, status, r, d, s.Entrants, observedAt); err != nil {
		return RaceSnapshot{}, &Error{RaceID: raceID, Field: "data.results", Reason: err.Error(), Err: err}
	}
	s.Quality = buildQuality(&s, q, holdBP, betBP)
	return s, nil
}

func buildRace(raceID, status string, r *nztab.Race, start time.Time, generated string, q *qualityAcc) Race {
	race := Race{
		RaceID:         raceID,
		MeetingID:      r.MeetingID,
		Name:           r.RaceName(),
		RaceNumber:     r.RaceNumber,
		StartTime:      start,
		Status:         status,
		StartTimeNZ:    optString(r.StartTimeNZ),
		Distance:       clonePtr(r.Distance),
		TrackCondition: optString(r.TrackCondition),
		TrackSurface:   optString(r.TrackSurface),
		TrackDirection: optString(r.TrackDirection),
		RailPosition:   optString(r.RailPosition),
		Weather:        optString(r.Weather),
		Type:           optString(r.Type),
		EntrantCount:   clonePtr(r.EntrantCount),
		FieldSize:      clonePtr(r.FieldSize),
		PositionsPaid:  clonePtr(r.PositionsPaid),
		SilkURL:        optString(r.SilkURL),
		SilkBaseURL:    optString(r.SilkBaseURL),
	}
	race.ActualStart = unixTime(r.ActualStart, "race.actual_start", raceID, q)
	if r.RaceDateNZ != "" {
		if _, err := time.Parse(time.DateOnly, r.RaceDateNZ); err == nil {
			race.RaceDateNZ = optString(r.RaceDateNZ)
		} else {
			q.warnf("race_date_nz %q is not a YYYY-MM-DD date; ignored", r.RaceDateNZ)
		}
	}
	race.TotalPrizeMoney = prizeMoneyCents(r.PrizeMonies, q)
	race.VideoChannels = rawJSON(r.VideoChannels, '[', "race.video_channels", raceID, q)
	if generated != "" {
		if t, err := time.Parse(time.RFC3339Nano, generated); err == nil && plausibleUnix(t.Unix()) {
			t = t.UTC()
			race.APIGeneratedAt = &t
		} else {
			q.warnf("header.generated_time %q is not a plausible RFC3339 time; ignored", generated)
		}
	}
	return race
}

// prizeMoneyCents reads prize_monies.total_value (whole dollars). The field
// is decoded as map[string]any, so the number arrives as float64 — or as a
// string from a sloppy producer.
func prizeMoneyCents(pm map[string]any, q *qualityAcc) *int64 {
	v, ok := pm["total_value"]
	if !ok || v == nil {
		return nil
	}
	var dollars float64
	switch x := v.(type) {
	case float64:
		dollars = x
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			q.warnf("prize_monies.total_value %q is not a number; ignored", string(x))
			return nil
		}
		dollars = f
	default:
		q.warnf("prize_monies.total_value has type %T, want a number; ignored", v)
		return nil
	}
	c, ok := hundredths(dollars)
	if !ok || c < 0 {
		q.warnf("prize_monies.total_value %v is not a valid amount; ignored", dollars)
		return nil
	}
	return &c
}

func buildMeeting(r *nztab.Race, raceDateNZ *string, start time.Time, q *qualityAcc) *Meeting {
	rt, ok := RaceType(r.Type)
	if !ok {
		q.warnf("race type %q is not T, H or G; meeting not written", r.Type)
		return nil
	}
	m := &Meeting{
		MeetingID:      r.MeetingID,
		MeetingName:    cmp.Or(r.MeetingName, r.DisplayMeetingName),
		Country:        r.Country,
		State:          optString(r.State),
		RaceType:       rt,
		Category:       strings.ToUpper(strings.TrimSpace(r.Type)),
		TrackCondition: optString(r.TrackCondition),
	}
	if raceDateNZ != nil {
		m.Date = *raceDateNZ
	} else {
		m.Date = nzDate(start, q)
	}
	return m
}

// nzDate is the NZ racing day of an instant. With time/tzdata embedded the
// zone always loads; the fixed NZST fallback only guards a broken build.
func nzDate(t time.Time, q *qualityAcc) string {
	loc, err := time.LoadLocation(nzZone)
	if err != nil {
		q.warnf("cannot load %s (%v); NZ date computed at +12:00", nzZone, err)
		loc = time.FixedZone("NZST", 12*3600)
	}
	return t.In(loc).Format(time.DateOnly)
}

func buildEntrants(raceID string, runners []nztab.Runner, q *qualityAcc) []Entrant {
	// Visit runners in output order so that which duplicate survives, and the
	// order of warnings, do not depend on the API's ordering.
	order := make([]int, len(runners))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := &runners[a], &runners[b]
		return cmp.Or(cmp.Compare(ra.RunnerNumber, rb.RunnerNumber), strings.Compare(ra.EntrantID, rb.EntrantID))
	})
	out := make([]Entrant, 0, len(runners))
	seen := make(map[string]int, len(runners)) // entrant id → runner number kept
	for _, i := range order {
		rn := &runners[i]
		switch kept, dup := seen[rn.EntrantID]; {
		case rn.EntrantID == "":
			q.warnf("runner %d (%q) has no entrant_id; skipped", rn.RunnerNumber, rn.Name)
			continue
		case dup:
			q.warnf("entrant %s appears more than once; kept runner number %d", rn.EntrantID, kept)
			continue
		case rn.RunnerNumber <= 0:
			q.warnf("entrant %s has runner_number %d, want > 0; skipped", rn.EntrantID, rn.RunnerNumber)
			continue
		}
		seen[rn.EntrantID] = rn.RunnerNumber
		e := Entrant{
			EntrantID:       rn.EntrantID,
			RaceID:          raceID,
			Name:            rn.Name,
			RunnerNumber:    rn.RunnerNumber,
			Barrier:         barrier(rn.Barrier, rn.BarrierPosition),
			IsScratched:     rn.IsScratched,
			IsLateScratched: rn.IsLateScratched,
			IsEmergency:     rn.IsEmergency,
			FixedWinOdds:    oddsValue(rn.Odds.FixedWin, rn.EntrantID, OddsFixedWin, q),
			FixedPlaceOdds:  oddsValue(rn.Odds.FixedPlace, rn.EntrantID, OddsFixedPlace, q),
			PoolWinOdds:     oddsValue(rn.Odds.PoolWin, rn.EntrantID, OddsPoolWin, q),
			PoolPlaceOdds:   oddsValue(rn.Odds.PoolPlace, rn.EntrantID, OddsPoolPlace, q),
			Jockey:          optString(rn.Jockey),
			TrainerName:     optString(rn.TrainerName),
			SilkColours:     optString(rn.SilkColours),
			SilkURL64:       optString(rn.SilkURL64),
			SilkURL128:      optString(rn.SilkURL128),
			Favourite:       rn.Favourite,
			Mover:           rn.Mover,
			RunnerChange:    rawJSON(rn.RunnerChange, '{', "runner_change of entrant", rn.EntrantID, q),
		}
		e.ScratchTime = unixTime(rn.ScratchTime, "scratch_time of entrant", rn.EntrantID, q)
		out = append(out, e)
	}
	return out
}

// barrier prefers the numeric barrier; harness fields carry the draw in
// barrier_position ("Fr1", "Sr2") and sometimes barrier 0, so a positive
// barrier wins, then the first integer of barrier_position, then barrier 0.
func barrier(b *int, position string) *int {
	if b != nil && *b > 0 {
		v := *b
		return &v
	}
	n, found := 0, false
	for i := 0; i < len(position); i++ {
		c := position[i]
		if c >= '0' && c <= '9' {
			if n > 1e6 { // absurd draw; stop before overflowing
				break
			}
			n = n*10 + int(c-'0')
			found = true
		} else if found {
			break
		}
	}
	if found {
		return &n
	}
	return clonePtr(b)
}

// oddsValue keeps decimal odds the odds columns can hold. Non-positive odds
// mean "no price"; absurdly large ones would fail the write transaction.
func oddsValue(v *float64, entrantID, kind string, q *qualityAcc) *float64 {
	if v == nil {
		return nil
	}
	if !(*v > 0 && *v <= maxOdds) {
		q.warnf("entrant %s %s odds %v out of range; ignored", entrantID, kind, *v)
		return nil
	}
	x := *v
	return &x
}

// applyMoney sums the money tracker per runner (docs/DOMAIN.md §2.2: the sum of
// all rows, never the last row), sets the entrants' money fields and emits
// the money-flow rows. It returns the runners' hold and bet sums in
// hundredths of a percent.
//
// A tracker whose hold or bet shares, over all its ids, sum to more than
// 100 + PercentageTolerance is impossible: it would give the runners more
// than the whole pool. Such a poll contributes no money at all (no
// money-flow rows, entrants' money fields nil so stored values stand); the
// race row, entrants and odds still update, and Quality.MoneyWithheld says
// why.
func applyMoney(s *RaceSnapshot, mt *nztab.MoneyTracker, tts int, q *qualityAcc) (holdBP, betBP int64) {
	if mt == nil || len(mt.Entrants) == 0 {
		return 0, 0
	}
	index := make(map[string]int, len(s.Entrants))
	for i := range s.Entrants {
		index[s.Entrants[i].EntrantID] = i
	}
	hold := make([]int64, len(s.Entrants))
	bet := make([]int64, len(s.Entrants))
	has := make([]bool, len(s.Entrants))
	var unknown map[string]struct{}
	for _, row := range mt.Entrants {
		h, okH := hundredths(row.HoldPercentage)
		b, okB := hundredths(row.BetPercentage)
		if !okH || !okB || h > maxTrackerRow || h < -maxTrackerRow || b > maxTrackerRow || b < -maxTrackerRow {
			q.warnf("money-tracker row of %s has hold %v / bet %v out of range; skipped",
				row.EntrantID, row.HoldPercentage, row.BetPercentage)
			continue
		}
		i, ok := index[row.EntrantID]
		if !ok {
			if unknown == nil {
				unknown = make(map[string]struct{}, 4)
			}
			unknown[row.EntrantID] = struct{}{}
			q.unknownHoldBP += h
			q.unknownBetBP += b
			continue
		}
		hold[i] += h
		bet[i] += b
		has[i] = true
	}
	q.unknownIDs = len(unknown)

	// Impossible money (see the doc comment) is judged on every id, runner
	// or not: hold on ids that are not runners is real money of the pool.
	totalHold, totalBet := q.unknownHoldBP, q.unknownBetBP
	for i := range hold {
		totalHold += hold[i]
		totalBet += bet[i]
	}
	if limit := int64((100 + PercentageTolerance) * 100); totalHold > limit || totalBet > limit {
		q.moneyWithheld = fmt.Sprintf("money-tracker shares over all ids sum to %.2f%% hold / %.2f%% bet, more than %g%%: impossible, so no money data is written",
			float64(totalHold)/100, float64(totalBet)/100, 100+PercentageTolerance)
		q.warnings = append(q.warnings, q.moneyWithheld)
		return totalHold - q.unknownHoldBP, totalBet - q.unknownBetBP
	}

	var win, place int64
	if p := s.RacePools; p != nil {
		win, place = p.WinPoolTotal, p.PlacePoolTotal
	}
	interval, itype := TimeInterval(tts), IntervalType(tts)
	for i := range s.Entrants {
		if !has[i] {
			continue
		}
		e := &s.Entrants[i]
		h, b := hold[i], bet[i]
		if h > maxPercentBP || h < -maxPercentBP || b > maxPercentBP || b < -maxPercentBP {
			q.warnf("entrant %s money-tracker sums hold %.2f / bet %.2f exceed ±999.99; money data ignored",
				e.EntrantID, float64(h)/100, float64(b)/100)
			continue
		}
		holdBP += h
		betBP += b
		hp, bp := float64(h)/100, float64(b)/100
		e.HoldPercentage, e.BetPercentage = &hp, &bp
		if h <= 0 || (win <= 0 && place <= 0) {
			continue
		}
		winAmt, ok1 := poolAmount(win, h)
		placeAmt, ok2 := poolAmount(place, h)
		totalAmt, ok3 := poolAmount(addSat(win, place), h)
		if !ok1 || !ok2 || !ok3 {
			q.warnf("entrant %s pool amounts overflow; money flow skipped", e.EntrantID)
			continue
		}
		mf := MoneyFlow{
			RaceID:              s.RaceID,
			EntrantID:           e.EntrantID,
			PollingTimestamp:    s.ObservedAt,
			EventTimestamp:      s.ObservedAt,
			TimeToStart:         tts,
			TimeInterval:        interval,
			IntervalType:        itype,
			HoldPercentage:      hp,
			BetPercentage:       bp,
			WinPoolPercentage:   percentage(winAmt, win),
			PlacePoolPercentage: percentage(placeAmt, place),
			WinPoolAmount:       winAmt,
			PlacePoolAmount:     placeAmt,
			TotalPoolAmount:     totalAmt,
		}
		e.WinPoolAmount = &mf.WinPoolAmount
		e.PlacePoolAmount = &mf.PlacePoolAmount
		e.WinPoolPercentage = mf.WinPoolPercentage
		e.PlacePoolPercentage = mf.PlacePoolPercentage
		s.MoneyFlow = append(s.MoneyFlow, mf)
	}
	return holdBP, betBP
}

// percentage is amount/pool×100 to 2 decimals, nil for an empty pool or one
// the numeric(5,2) column could not hold.
func percentage(amount, pool int64) *float64 {
	p, ok := poolPercentage(amount, pool)
	if !ok || p > maxPercentBP {
		return nil
	}
	v := float64(p) / 100
	return &v
}

// buildOdds emits the candidate odds_history rows, runner by runner in the
// fixed type order. Scratched runners get none: their prices are stale
// leftovers and would pollute the odds timeline.
func buildOdds(raceID string, entrants []Entrant, at time.Time) []Odds {
	out := make([]Odds, 0, 4*len(entrants))
	for i := range entrants {
		e := &entrants[i]
		if e.IsScratched || e.IsLateScratched {
			continue
		}
		for _, o := range [...]struct {
			kind string
			v    *float64
		}{
			{OddsFixedWin, e.FixedWinOdds},
			{OddsFixedPlace, e.FixedPlaceOdds},
			{OddsPoolWin, e.PoolWinOdds},
			{OddsPoolPlace, e.PoolPlaceOdds},
		} {
			if o.v != nil {
				out = append(out, Odds{RaceID: raceID, EntrantID: e.EntrantID, Type: o.kind, Odds: *o.v, EventTimestamp: at})
			}
		}
	}
	return out
}

// rawJSON keeps a raw JSON value of the wanted kind ('[' array, '{' object),
// compacted and copied so the snapshot shares no memory with the payload.
// null or absent gives nil; another kind is reported and dropped.
func rawJSON(raw json.RawMessage, kind byte, field, id string, q *qualityAcc) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil
	}
	if t[0] != kind {
		want := "array"
		if kind == '{' {
			want = "object"
		}
		q.warnf("%s %s is not a JSON %s; ignored", field, id, want)
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(len(t))
	if err := json.Compact(&buf, t); err != nil {
		q.warnf("%s %s is not valid JSON; ignored", field, id)
		return nil
	}
	return buf.Bytes()
}

// Plausible instants: 2000-01-01 to 2100-01-01 UTC. Anything else is a
// corrupt field, and a year past 9999 cannot even be marshalled to JSON.
const (
	minUnix = 946684800
	maxUnix = 4102444800
)

func plausibleUnix(sec int64) bool { return sec >= minUnix && sec < maxUnix }

// unixTime converts an optional Unix-seconds field where 0 (or less) means
// "not set"; implausible values are reported and dropped.
func unixTime(sec int64, field, id string, q *qualityAcc) *time.Time {
	if sec <= 0 {
		return nil
	}
	if !plausibleUnix(sec) {
		q.warnf("%s %s is %d, not a plausible Unix time; ignored", field, id, sec)
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
