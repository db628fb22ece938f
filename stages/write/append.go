package write

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/transform"
)

// A replay writes each race's polls in order into history that ends before
// them, so most history rows of a batch just extend their series: no stored
// row is at or after them, so no successor needs correcting, and the
// predecessor of each is the previous row of the batch or, for the first,
// the latest stored one. A live poll's rows do the same. appendHistory finds
// such series with one lookup per series for the whole batch (or none, for
// the series Ends remembers), derives their rows in Go (money-flow
// increments, odds change detection) and inserts them with plain INSERTs:
// no per-row neighbour probes, no speculative ON CONFLICT insertion. Every
// other series goes through the general statements (sqlMoneyFlow, sqlOdds).
// The result is the one those statements would give, row for row.

// sqlAppendMoney inserts money-flow rows whose increments are known.
var sqlAppendMoney = `
WITH ins AS (
    INSERT INTO money_flow_history (race_id, entrant_id, polling_timestamp, event_timestamp, time_to_start,
        time_interval, interval_type, hold_percentage, bet_percentage, win_pool_percentage, place_pool_percentage,
        win_pool_amount, place_pool_amount, total_pool_amount, incremental_win_amount, incremental_place_amount)
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::int[], $7::text[],
        $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[], $13::bigint[], $14::bigint[],
        $15::bigint[], $16::bigint[])
    RETURNING race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM ins
)` + countsTail

// sqlAppendOdds inserts the odds rows change detection kept.
var sqlAppendOdds = `
WITH ins AS (
    INSERT INTO odds_history (race_id, entrant_id, type, odds, event_timestamp)
    SELECT u.race_id, u.entrant_id, u.type, u.odds::numeric(10,2), u.event_timestamp
    FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])
        AS u(race_id, entrant_id, type, odds, event_timestamp)
    RETURNING race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM ins
)` + countsTail

// entry is one history row of a batch and the poll it belongs to.
type entry[T any] struct {
	p   *pending
	row T
}

// bySeries groups a batch's rows by series key, each series in the order
// writing the polls one by one would process them: batch order, and within
// a poll by time (as layers does). The rows' instants are already as
// PostgreSQL stores them (newPending), so every comparison with a stored
// row, and between rows, is the one the database would make.
func bySeries[T any, K comparable](ps []*pending, rows func(*pending) []T, key func(T) K, byTime func(a, b T) int) ([]K, map[K][]entry[T]) {
	var order []K
	out := make(map[K][]entry[T])
	for _, p := range ps {
		mine := rows(p)
		if !slices.IsSortedFunc(mine, byTime) { // a poll's rows usually share one instant
			mine = slices.Clone(mine)
			slices.SortStableFunc(mine, byTime)
		}
		for _, r := range mine {
			k := key(r)
			if _, ok := out[k]; !ok {
				order = append(order, k)
			}
			out[k] = append(out[k], entry[T]{p, r})
		}
	}
	return order, out
}

type moneyKey struct{ race, entrant string }
type oddsKey struct{ entrant, typ string }

// appended is what appendHistory prepared.
type appended struct {
	// stmts insert the appended series' rows, their counts already added
	// to the polls' Rows.
	stmts []stmt
	// switched: the lookup switched the planner settings for the rest of
	// the write (see sqlPlannerOn).
	switched bool
	// remembered counts the series whose end came from Ends.
	remembered int
	// update is what to remember once the statements succeeded (nil
	// without Ends).
	update *endsUpdate
}

// marksAfter are the races whose ledger marks the write reads after its
// statements, for remember (nil without Ends).
func (a appended) marksAfter() []string {
	if a.update == nil {
		return nil
	}
	return a.update.races
}

// remember remembers what the write left at its series' ends (WithEnds),
// under the ledger marks read after its statements.
func (a appended) remember(marks map[string]ledgerMark) { a.update.apply(marks) }

// appendHistory takes the appendable series out of the polls' money and odds
// rows and returns the statements that insert them. It finds the stored
// series ends (findEnds) in a round trip of its own.
func appendHistory(ctx context.Context, tx pgx.Tx, sess session, ps []*pending) (appended, error) {
	mTime := func(a, b transform.MoneyFlow) int {
		return cmp.Or(a.PollingTimestamp.Compare(b.PollingTimestamp), a.EventTimestamp.Compare(b.EventTimestamp))
	}
	mAll, mSeries := bySeries(ps, func(p *pending) []transform.MoneyFlow { return p.money },
		func(m transform.MoneyFlow) moneyKey { return moneyKey{m.RaceID, m.EntrantID} }, mTime)
	oTime := func(a, b transform.Odds) int { return a.EventTimestamp.Compare(b.EventTimestamp) }
	oAll, oSeries := bySeries(ps, func(p *pending) []transform.Odds { return p.odds },
		func(o transform.Odds) oddsKey { return oddsKey{o.EntrantID, o.Type} }, oTime)

	// Only series whose batch rows strictly increase can be appended.
	mKeys := slices.DeleteFunc(slices.Clone(mAll), func(k moneyKey) bool {
		s := mSeries[k]
		for i := 1; i < len(s); i++ {
			if !s[i-1].row.PollingTimestamp.Before(s[i].row.PollingTimestamp) {
				return true
			}
		}
		return false
	})
	oKeys := slices.DeleteFunc(slices.Clone(oAll), func(k oddsKey) bool {
		s := oSeries[k]
		for i := 1; i < len(s); i++ {
			if !s[i-1].row.EventTimestamp.Before(s[i].row.EventTimestamp) {
				return true
			}
		}
		return false
	})
	if len(mKeys) == 0 && len(oKeys) == 0 {
		if sess.ends != nil {
			sess.ends.forget(racesOf(ps))
		}
		return appended{}, nil
	}

	cents := make([][]int64, len(oKeys))
	for i, k := range oKeys {
		for _, e := range oSeries[k] {
			c, err := oddsCents(e.row.Odds)
			if err != nil {
				return appended{}, newDBError(TableOdds, err)
			}
			cents[i] = append(cents[i], c)
		}
	}
	ends, err := findEnds(ctx, tx, sess, ps, mKeys, mSeries, oKeys, oSeries)
	if err != nil {
		return appended{}, err
	}

	// A series is appended whole, so the keys of the appended ones say
	// which rows the general statements are left with.
	var money []moneyRow
	doneMoney := make(map[moneyKey]bool, len(mKeys))
	for i, k := range mKeys {
		s := mSeries[k]
		rows, ok := appendMoney(s, ends.money[i])
		if !ok {
			continue
		}
		doneMoney[k] = true
		last := s[len(s)-1].row
		ends.update.setMoney(k, endMoney{storedMoney{ok: true, polling: last.PollingTimestamp, event: last.EventTimestamp,
			win: last.WinPoolAmount, place: last.PlacePoolAmount}, ends.moneyWin[i]}, true)
		money = append(money, rows...)
		for _, e := range s {
			e.p.rows.MoneyFlow++
		}
	}
	var odds []transform.Odds
	doneOdds := make(map[oddsKey]bool, len(oKeys))
	for i, k := range oKeys {
		s := oSeries[k]
		kept, ok := appendOdds(s, ends.odds[i], cents[i])
		if !ok {
			continue
		}
		doneOdds[k] = true
		end := ends.odds[i]
		for j, e := range s {
			if kept[j] {
				odds = append(odds, e.row)
				e.p.rows.Odds++
				end = storedOdds{ok: true, at: e.row.EventTimestamp, cents: cents[i][j]}
			}
		}
		ends.update.setOdds(s[0].row.RaceID, k, endOdds{end, ends.oddsWin[i]}, end.ok)
	}
	// The series left to the general statements: their ends are not known.
	for _, k := range mAll {
		if !doneMoney[k] {
			ends.update.setMoney(k, endMoney{}, false)
		}
	}
	for _, k := range oAll {
		if !doneOdds[k] {
			ends.update.setOdds(oSeries[k][0].row.RaceID, k, endOdds{}, false)
		}
	}
	for _, p := range ps {
		p.money = slices.DeleteFunc(p.money, func(r transform.MoneyFlow) bool { return doneMoney[moneyKey{r.RaceID, r.EntrantID}] })
		p.odds = slices.DeleteFunc(p.odds, func(r transform.Odds) bool { return doneOdds[oddsKey{r.EntrantID, r.Type}] })
	}
	out := appended{switched: true, remembered: ends.remembered, update: ends.update}
	if len(money) > 0 {
		out.stmts = append(out.stmts, stmt{table: TableMoneyFlow, sql: sqlAppendMoney, args: appendMoneyArgs(money), expect: len(money)})
	}
	if len(odds) > 0 {
		out.stmts = append(out.stmts, stmt{table: TableOdds, sql: sqlAppendOdds, args: oddsArgs(odds), expect: len(odds)})
	}
	return out, nil
}

// storedMoney is the latest stored row of a money series (ok false: none).
type storedMoney struct {
	ok             bool
	polling, event time.Time
	win, place     int64
}

// storedOdds is the latest stored row of an odds series (ok false: none).
type storedOdds struct {
	ok    bool
	at    time.Time
	cents int64
}

// moneyRow is a money-flow row with its increments.
type moneyRow struct {
	transform.MoneyFlow
	incWin, incPlace int64
}

// within says whether b is within historySpan of a, either way, as the SQL
// window bounds are inclusive.
func within(a, b time.Time) bool {
	d := a.Sub(b)
	return d <= historySpan && d >= -historySpan
}

// appendMoney derives a series' rows if it only extends the stored series:
// the latest stored row in the window is before the first batch row, and
// each row's predecessor (the stored one, then the previous batch row) is
// within its window, as sqlMoneyFlow's lookup requires; otherwise ok is
// false and the series goes through sqlMoneyFlow.
func appendMoney(s []entry[transform.MoneyFlow], last storedMoney) (rows []moneyRow, ok bool) {
	first := s[0].row
	var prevWin, prevPlace int64
	if last.ok {
		if !last.polling.Before(first.PollingTimestamp) || !within(last.event, first.EventTimestamp) {
			return nil, false
		}
		prevWin, prevPlace = last.win, last.place
	}
	rows = make([]moneyRow, len(s))
	for i, e := range s {
		if i > 0 && !within(s[i-1].row.EventTimestamp, e.row.EventTimestamp) {
			return nil, false
		}
		rows[i] = moneyRow{e.row, e.row.WinPoolAmount - prevWin, e.row.PlacePoolAmount - prevPlace}
		prevWin, prevPlace = e.row.WinPoolAmount, e.row.PlacePoolAmount
	}
	return rows, true
}

// appendOdds decides which of a series' rows to keep if the series only
// extends the stored one (its latest row in the window is before the first
// batch row): a row is kept when the latest earlier kept or stored row
// within historySpan before it is absent or more than a cent away, as
// sqlOdds decides. cents are the rows' odds as stored.
func appendOdds(s []entry[transform.Odds], last storedOdds, cents []int64) (kept []bool, ok bool) {
	if last.ok && !last.at.Before(s[0].row.EventTimestamp) {
		return nil, false
	}
	prev := last
	kept = make([]bool, len(s))
	for i, e := range s {
		at := e.row.EventTimestamp
		near := prev.ok && !prev.at.Before(at.Add(-historySpan))
		if near && abs(prev.cents-cents[i]) <= 1 {
			continue
		}
		kept[i] = true
		prev = storedOdds{ok: true, at: at, cents: cents[i]}
	}
	return kept, true
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// parseCents reads a numeric(10,2) as text ("-12.30") into hundredths.
func parseCents(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	whole, frac, found := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if !found || len(frac) != 2 {
		return 0, fmt.Errorf("odds %q: want two decimals", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("odds %q: %w", s, err)
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("odds %q: %w", s, err)
	}
	c := w*100 + f
	if neg {
		c = -c
	}
	return c, nil
}

// appendMoneyArgs are sqlAppendMoney's parameters, in its column order.
func appendMoneyArgs(ms []moneyRow) []any {
	plain := make([]transform.MoneyFlow, len(ms))
	for i := range ms {
		plain[i] = ms[i].MoneyFlow
	}
	return append(moneyFlowArgs(plain),
		column(ms, func(m moneyRow) int64 { return m.incWin }),
		column(ms, func(m moneyRow) int64 { return m.incPlace }))
}
