package write

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/raceflow/raceflow/stages/transform"
)

// pending is one validated poll on its way to the database.
type pending struct {
	snap   transform.RaceSnapshot
	pollID string
	rows   *Rows
	// money and odds are the history rows the round statements write: all
	// of the snapshot's, less those a batch appends directly (appender).
	money []transform.MoneyFlow
	odds  []transform.Odds
}

// newPending takes the history rows at the precision PostgreSQL stores
// (microseconds, truncated as pgx sends them), so that deciding in Go
// whether a row comes after a stored one (appendHistory) compares what the
// database compares: a poll observed at .526289501 s is stored at .526289.
func newPending(p Poll, rows *Rows) *pending {
	s := p.Snapshot
	money := make([]transform.MoneyFlow, len(s.MoneyFlow))
	for i, m := range s.MoneyFlow {
		m.PollingTimestamp, m.EventTimestamp = stored(m.PollingTimestamp), stored(m.EventTimestamp)
		money[i] = m
	}
	odds := make([]transform.Odds, len(s.Odds))
	for i, o := range s.Odds {
		o.EventTimestamp = stored(o.EventTimestamp)
		odds[i] = o
	}
	return &pending{snap: s, pollID: p.id(), rows: rows, money: money, odds: odds}
}

// stored is t as a timestamptz column holds it.
func stored(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// stmt is one statement of the batch and where its counters go: each result
// key (a race id, or a meeting id for meetings) belongs to one poll, whose
// Rows field a (and b, when set) the key's counters add to. A statement
// without owner has counted its rows beforehand: its counter a must add up
// to expect.
type stmt struct {
	table  string
	sql    string
	args   []any
	owner  map[string]*Rows
	a, b   func(*Rows) *int
	expect int
}

// roundStatements builds the statements of one round: polls that share no
// race, meeting or runner, so every statement can carry the rows of all of
// them at once and the result is that of writing them one by one. The order
// matters: a meeting before its races, races before the rows that reference
// them, and every state table before the ledger rows, whose presence the
// state guards read as "this poll was written before".
func roundStatements(ps []*pending) ([]stmt, error) {
	byRace := make(map[string]*Rows, len(ps))
	byMeeting := make(map[string]*Rows, len(ps))
	var (
		meetings []transform.Meeting
		mObs     []*time.Time
		mRace    []*string
		races    []transform.Race
		rObs     []time.Time
		entrants []transform.Entrant
		eObs     []time.Time
		pools    []transform.RacePools
		pObs     []time.Time
		results  []transform.RaceResults
		xObs     []time.Time
		money    []transform.MoneyFlow
		odds     []transform.Odds
	)
	ledger := make([]ledgerRow, 0, len(ps))
	for _, p := range ps {
		s, obs := p.snap, p.snap.ObservedAt
		byRace[s.RaceID] = p.rows
		if m := s.Meeting; m != nil {
			byMeeting[m.MeetingID] = p.rows
			meetings, mObs, mRace = append(meetings, *m), append(mObs, &obs), append(mRace, &s.RaceID)
		}
		races, rObs = append(races, s.Race), append(rObs, obs)
		for _, e := range s.Entrants {
			entrants, eObs = append(entrants, e), append(eObs, obs)
		}
		if s.RacePools != nil {
			pools, pObs = append(pools, *s.RacePools), append(pObs, obs)
		}
		if s.Results != nil {
			results, xObs = append(results, *s.Results), append(xObs, obs)
		}
		money = append(money, p.money...)
		odds = append(odds, p.odds...)
		quality, err := json.Marshal(s.Quality)
		if err != nil {
			return nil, fmt.Errorf("quality of %s: %w", s.RaceID, err)
		}
		ledger = append(ledger, ledgerRow{s.RaceID, obs, p.pollID, s.Race.Status, s.Race.APIGeneratedAt,
			s.Quality.Score, string(quality)})
	}

	var out []stmt
	add := func(table, sql string, args []any, owner map[string]*Rows, a, b func(*Rows) *int) {
		out = append(out, stmt{table: table, sql: sql, args: args, owner: owner, a: a, b: b})
	}
	meetingsCount := func(r *Rows) *int { return &r.Meetings }
	if len(meetings) > 0 {
		add(TableMeetings, sqlMeetings, meetingArgs(meetings, mObs, mRace), byMeeting, meetingsCount, meetingsCount)
	}
	add(TableRaces, sqlRaces, raceArgs(races, rObs), byRace, func(r *Rows) *int { return &r.Races }, nil)
	if len(entrants) > 0 {
		add(TableEntrants, sqlEntrants, entrantArgs(entrants, eObs), byRace,
			func(r *Rows) *int { return &r.Entrants }, nil)
	}
	if len(pools) > 0 {
		add(TableRacePools, sqlRacePools, poolArgs(pools, pObs), byRace,
			func(r *Rows) *int { return &r.RacePools }, nil)
	}
	if len(results) > 0 {
		add(TableRaceResults, sqlRaceResults, resultArgs(results, xObs), byRace,
			func(r *Rows) *int { return &r.Results }, nil)
	}
	add(TableRacePolls, sqlRacePolls, ledgerArgs(ledger), byRace, func(r *Rows) *int { return &r.Polls }, nil)

	mfSeries := func(m transform.MoneyFlow) [2]string { return [2]string{m.RaceID, m.EntrantID} }
	mfTime := func(a, b transform.MoneyFlow) int {
		return cmp.Or(a.PollingTimestamp.Compare(b.PollingTimestamp), a.EventTimestamp.Compare(b.EventTimestamp))
	}
	for _, l := range layers(money, mfSeries, mfTime) {
		add(TableMoneyFlow, sqlMoneyFlow, moneyFlowArgs(l), byRace,
			func(r *Rows) *int { return &r.MoneyFlow }, func(r *Rows) *int { return &r.MoneyFlowCorrected })
	}
	oddsSeries := func(o transform.Odds) [2]string { return [2]string{o.EntrantID, o.Type} }
	oddsTime := func(a, b transform.Odds) int { return a.EventTimestamp.Compare(b.EventTimestamp) }
	for _, l := range layers(odds, oddsSeries, oddsTime) {
		add(TableOdds, sqlOdds, oddsArgs(l), byRace,
			func(r *Rows) *int { return &r.Odds }, func(r *Rows) *int { return &r.OddsDeleted })
	}
	return out, nil
}

// ledgerRow is one race_polls row.
type ledgerRow struct {
	raceID       string
	observedAt   time.Time
	pollID       string
	status       string
	apiGenerated *time.Time
	score        int
	quality      string
}

// ledgerArgs are sqlRacePolls' parameters, in its column order.
func ledgerArgs(ls []ledgerRow) []any {
	type L = ledgerRow
	return []any{
		column(ls, func(l L) string { return l.raceID }),
		column(ls, func(l L) time.Time { return l.observedAt }),
		column(ls, func(l L) string { return l.pollID }),
		column(ls, func(l L) string { return l.status }),
		column(ls, func(l L) *time.Time { return l.apiGenerated }),
		column(ls, func(l L) int { return l.score }),
		column(ls, func(l L) string { return l.quality }),
	}
}

// jsonArg sends a JSON document as text (cast to jsonb in SQL), and an absent
// one as NULL rather than the JSON literal null.
func jsonArg(raw json.RawMessage) *string {
	if len(raw) == 0 {
		return nil
	}
	s := string(raw)
	return &s
}

// column is one unnest() array: field f of every row.
func column[R, T any](rows []R, f func(R) T) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = f(r)
	}
	return out
}

// meetingArgs are sqlMeetings' parameters: one array per column, then each
// row's observation instant (nil: unknown) and the race whose poll it comes
// from (nil for the meetings list).
func meetingArgs(ms []transform.Meeting, obs []*time.Time, race []*string) []any {
	type M = transform.Meeting
	return []any{
		column(ms, func(m M) string { return m.MeetingID }),
		column(ms, func(m M) string { return m.MeetingName }),
		column(ms, func(m M) string { return m.Country }),
		column(ms, func(m M) *string { return m.State }),
		column(ms, func(m M) string { return m.RaceType }),
		column(ms, func(m M) string { return m.Category }),
		column(ms, func(m M) string { return m.Date }),
		column(ms, func(m M) *string { return m.TrackCondition }),
		column(ms, func(m M) *string { return m.ToteStatus }),
		obs,
		race,
	}
}

// raceArgs are sqlRaces' parameters, in its column order.
func raceArgs(rs []transform.Race, obs []time.Time) []any {
	type R = transform.Race
	return []any{
		column(rs, func(r R) string { return r.RaceID }),
		column(rs, func(r R) string { return r.MeetingID }),
		column(rs, func(r R) string { return r.Name }),
		column(rs, func(r R) int { return r.RaceNumber }),
		column(rs, func(r R) time.Time { return r.StartTime }),
		column(rs, func(r R) string { return r.Status }),
		column(rs, func(r R) *time.Time { return r.ActualStart }),
		column(rs, func(r R) *string { return r.RaceDateNZ }),
		column(rs, func(r R) *string { return r.StartTimeNZ }),
		column(rs, func(r R) *int { return r.Distance }),
		column(rs, func(r R) *string { return r.TrackCondition }),
		column(rs, func(r R) *string { return r.TrackSurface }),
		column(rs, func(r R) *string { return r.TrackDirection }),
		column(rs, func(r R) *string { return r.RailPosition }),
		column(rs, func(r R) *string { return r.Weather }),
		column(rs, func(r R) *string { return r.Type }),
		column(rs, func(r R) *int64 { return r.TotalPrizeMoney }),
		column(rs, func(r R) *int { return r.EntrantCount }),
		column(rs, func(r R) *int { return r.FieldSize }),
		column(rs, func(r R) *int { return r.PositionsPaid }),
		column(rs, func(r R) *string { return r.SilkURL }),
		column(rs, func(r R) *string { return r.SilkBaseURL }),
		column(rs, func(r R) *string { return jsonArg(r.VideoChannels) }),
		column(rs, func(r R) *time.Time { return r.APIGeneratedAt }),
		obs,
	}
}

// entrantArgs are sqlEntrants' parameters, in its column order.
func entrantArgs(es []transform.Entrant, obs []time.Time) []any {
	type E = transform.Entrant
	return []any{
		column(es, func(e E) string { return e.EntrantID }),
		column(es, func(e E) string { return e.RaceID }),
		column(es, func(e E) string { return e.Name }),
		column(es, func(e E) int { return e.RunnerNumber }),
		column(es, func(e E) *int { return e.Barrier }),
		column(es, func(e E) bool { return e.IsScratched }),
		column(es, func(e E) bool { return e.IsLateScratched }),
		column(es, func(e E) bool { return e.IsEmergency }),
		column(es, func(e E) *time.Time { return e.ScratchTime }),
		column(es, func(e E) *float64 { return e.FixedWinOdds }),
		column(es, func(e E) *float64 { return e.FixedPlaceOdds }),
		column(es, func(e E) *float64 { return e.PoolWinOdds }),
		column(es, func(e E) *float64 { return e.PoolPlaceOdds }),
		column(es, func(e E) *float64 { return e.HoldPercentage }),
		column(es, func(e E) *float64 { return e.BetPercentage }),
		column(es, func(e E) *float64 { return e.WinPoolPercentage }),
		column(es, func(e E) *float64 { return e.PlacePoolPercentage }),
		column(es, func(e E) *int64 { return e.WinPoolAmount }),
		column(es, func(e E) *int64 { return e.PlacePoolAmount }),
		column(es, func(e E) *string { return e.Jockey }),
		column(es, func(e E) *string { return e.TrainerName }),
		column(es, func(e E) *string { return e.SilkColours }),
		column(es, func(e E) *string { return e.SilkURL64 }),
		column(es, func(e E) *string { return e.SilkURL128 }),
		column(es, func(e E) bool { return e.Favourite }),
		column(es, func(e E) bool { return e.Mover }),
		column(es, func(e E) *string { return jsonArg(e.RunnerChange) }),
		obs,
	}
}

// poolArgs are sqlRacePools' parameters, in its column order.
func poolArgs(ps []transform.RacePools, obs []time.Time) []any {
	type P = transform.RacePools
	return []any{
		column(ps, func(p P) string { return p.RaceID }),
		column(ps, func(p P) int64 { return p.WinPoolTotal }),
		column(ps, func(p P) int64 { return p.PlacePoolTotal }),
		column(ps, func(p P) int64 { return p.QuinellaPoolTotal }),
		column(ps, func(p P) int64 { return p.TrifectaPoolTotal }),
		column(ps, func(p P) int64 { return p.ExactaPoolTotal }),
		column(ps, func(p P) int64 { return p.First4PoolTotal }),
		column(ps, func(p P) int64 { return p.TotalRacePool }),
		column(ps, func(p P) string { return p.Currency }),
		column(ps, func(p P) int { return p.DataQualityScore }),
		column(ps, func(p P) int { return p.ExtractedPools }),
		column(ps, func(p P) string { return p.Source }),
		obs,
	}
}

// resultArgs are sqlRaceResults' parameters, in its column order. An empty
// status and a zero time are NULL: the poll does not know them.
func resultArgs(rs []transform.RaceResults, obs []time.Time) []any {
	type X = transform.RaceResults
	return []any{
		column(rs, func(r X) string { return r.RaceID }),
		column(rs, func(r X) bool { return r.ResultsAvailable }),
		column(rs, func(r X) *string { return jsonArg(r.ResultsData) }),
		column(rs, func(r X) *string { return jsonArg(r.DividendsData) }),
		column(rs, func(r X) *string { return jsonArg(r.FixedOddsData) }),
		column(rs, func(r X) *string {
			if r.ResultStatus == "" {
				return nil
			}
			return &r.ResultStatus
		}),
		column(rs, func(r X) bool { return r.PhotoFinish }),
		column(rs, func(r X) bool { return r.StewardsInquiry }),
		column(rs, func(r X) bool { return r.ProtestLodged }),
		column(rs, func(r X) *time.Time {
			if r.ResultTime.IsZero() {
				return nil
			}
			return &r.ResultTime
		}),
		obs,
	}
}

// moneyFlowArgs are sqlMoneyFlow's parameters, in its column order.
func moneyFlowArgs(ms []transform.MoneyFlow) []any {
	type M = transform.MoneyFlow
	return []any{
		column(ms, func(m M) string { return m.RaceID }),
		column(ms, func(m M) string { return m.EntrantID }),
		column(ms, func(m M) time.Time { return m.PollingTimestamp }),
		column(ms, func(m M) time.Time { return m.EventTimestamp }),
		column(ms, func(m M) int { return m.TimeToStart }),
		column(ms, func(m M) int { return m.TimeInterval }),
		column(ms, func(m M) string { return m.IntervalType }),
		column(ms, func(m M) float64 { return m.HoldPercentage }),
		column(ms, func(m M) float64 { return m.BetPercentage }),
		column(ms, func(m M) *float64 { return m.WinPoolPercentage }),
		column(ms, func(m M) *float64 { return m.PlacePoolPercentage }),
		column(ms, func(m M) int64 { return m.WinPoolAmount }),
		column(ms, func(m M) int64 { return m.PlacePoolAmount }),
		column(ms, func(m M) int64 { return m.TotalPoolAmount }),
	}
}

// oddsArgs are sqlOdds' parameters, in its column order.
func oddsArgs(in []transform.Odds) []any {
	type O = transform.Odds
	return []any{
		column(in, func(o O) string { return o.RaceID }),
		column(in, func(o O) string { return o.EntrantID }),
		column(in, func(o O) string { return o.Type }),
		column(in, func(o O) float64 { return o.Odds }),
		column(in, func(o O) time.Time { return o.EventTimestamp }),
	}
}

// layers splits history rows so that each layer holds at most one row per
// series (key) and layer k holds every series' k-th row by time. Written
// layer by layer, a series' rows are processed oldest first and each
// statement sees the rows of the layers before it, which a single statement
// cannot (it does not see its own inserts). A poll normally has one row per
// series, so this returns the rows unchanged as one layer.
func layers[T any, K comparable](rows []T, key func(T) K, byTime func(a, b T) int) [][]T {
	if len(rows) == 0 {
		return nil
	}
	series := make(map[K][]T, len(rows))
	order := make([]K, 0, len(rows))
	for _, r := range rows {
		k := key(r)
		if _, ok := series[k]; !ok {
			order = append(order, k)
		}
		series[k] = append(series[k], r)
	}
	if len(order) == len(rows) {
		return [][]T{rows}
	}
	var out [][]T
	for _, k := range order {
		s := series[k]
		slices.SortStableFunc(s, byTime)
		for i, r := range s {
			if i == len(out) {
				out = append(out, nil)
			}
			out[i] = append(out[i], r)
		}
	}
	return out
}
