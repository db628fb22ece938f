package write

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/transform"
)

// endsHorizon is how far past the window its rows need (historySpan after
// the last) a series' lookup also looks for stored rows. A row there only
// makes the series take the general statements, which do not need it; in
// exchange, the end found holds for the series' next polls of the coming
// day, and Ends can answer for them without a lookup (see endMoney).
const endsHorizon = 24 * time.Hour

// sqlLatestMoney returns, per series i, the latest stored row (by polling
// then event time) among those whose event time is within [lo, hi]: the
// series' rows less historySpan, to the rows plus historySpan and
// endsHorizon.
var sqlLatestMoney = `
SELECT u.i, p.polling_timestamp, p.event_timestamp, p.win_pool_amount, p.place_pool_amount
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY AS u(race_id, entrant_id, lo, hi, i)
CROSS JOIN LATERAL (
    SELECT h.polling_timestamp, h.event_timestamp, h.win_pool_amount, h.place_pool_amount
    FROM money_flow_history h
    WHERE h.race_id = u.race_id AND h.entrant_id = u.entrant_id AND h.event_timestamp >= u.lo AND h.event_timestamp <= u.hi
    ORDER BY h.polling_timestamp DESC, h.event_timestamp DESC
    LIMIT 1
) p`

// sqlLatestOdds is sqlLatestMoney for odds series (runner and type), by
// event time; the odds are returned as stored, numeric(10,2) text.
var sqlLatestOdds = `
SELECT u.i, p.event_timestamp, p.odds::text
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY AS u(entrant_id, type, lo, hi, i)
CROSS JOIN LATERAL (
    SELECT h.event_timestamp, h.odds
    FROM odds_history h
    WHERE h.entrant_id = u.entrant_id AND h.type = u.type AND h.event_timestamp >= u.lo AND h.event_timestamp <= u.hi
    ORDER BY h.event_timestamp DESC
    LIMIT 1
) p`

// window is a span of event times, bounds included.
type window struct{ from, to time.Time }

// covers says whether w holds all of v.
func (w window) covers(v window) bool { return !v.from.Before(w.from) && !v.to.After(w.to) }

// has says whether t is within w.
func (w window) has(t time.Time) bool { return !t.Before(w.from) && !t.After(w.to) }

// seriesEnds are the stored ends of a batch's appendable series, in the
// order of their keys, and the window each end is the latest stored row of.
type seriesEnds struct {
	money    []storedMoney
	moneyWin []window
	odds     []storedOdds
	oddsWin  []window
	// remembered counts the series whose end came from Ends.
	remembered int
	// update is what to remember after the write (nil without Ends),
	// starting from what is still valid of each race.
	update *endsUpdate
}

// findEnds finds where the candidate series end: from Ends for a series it
// remembers over a window covering the one the series needs, in one
// pipelined round trip for the rest, together with the ledger marks that
// say whether what Ends remembers still holds; a second round trip looks up
// the series of the races whose ledger changed meanwhile. The first round
// trip switches the planner settings for the rest of the write (see
// sqlPlannerOn).
func findEnds(ctx context.Context, tx pgx.Tx, sess session, ps []*pending,
	mKeys []moneyKey, mSeries map[moneyKey][]entry[transform.MoneyFlow],
	oKeys []oddsKey, oSeries map[oddsKey][]entry[transform.Odds]) (seriesEnds, error) {
	out := seriesEnds{
		money: make([]storedMoney, len(mKeys)), moneyWin: make([]window, len(mKeys)),
		odds: make([]storedOdds, len(oKeys)), oddsWin: make([]window, len(oKeys)),
	}
	// What each series needs to know (its rows' windows), and what a
	// lookup looks at: endsHorizon more.
	needM, needO := make([]window, len(mKeys)), make([]window, len(oKeys))
	for i, k := range mKeys {
		s := mSeries[k]
		lo, hi := s[0].row.EventTimestamp, s[0].row.EventTimestamp
		for _, e := range s {
			lo, hi = minTime(lo, e.row.EventTimestamp), maxTime(hi, e.row.EventTimestamp)
		}
		needM[i] = window{lo.Add(-historySpan), hi.Add(historySpan)}
		out.moneyWin[i] = window{needM[i].from, needM[i].to.Add(endsHorizon)}
	}
	for i, k := range oKeys {
		s := oSeries[k]
		needO[i] = window{s[0].row.EventTimestamp.Add(-historySpan), s[len(s)-1].row.EventTimestamp.Add(historySpan)}
		out.oddsWin[i] = window{needO[i].from, needO[i].to.Add(endsHorizon)}
	}
	oddsRace := func(i int) string { return oSeries[oKeys[i]][0].row.RaceID }

	// The series Ends answers for, provided their race's ledger holds.
	var races []string
	var known map[string]ledgerMark
	hitM, hitO := make([]endMoney, len(mKeys)), make([]endOdds, len(oKeys))
	okM, okO := make([]bool, len(mKeys)), make([]bool, len(oKeys))
	if sess.ends != nil {
		races = racesOf(ps)
		known = sess.ends.recall(races, mKeys, hitM, okM, oKeys, oddsRace, hitO, okO)
		for i := range mKeys {
			okM[i] = okM[i] && hitM[i].win.covers(needM[i]) && needM[i].has(hitM[i].event)
		}
		for i := range oKeys {
			okO[i] = okO[i] && hitO[i].win.covers(needO[i]) && needO[i].has(hitO[i].at)
		}
	}

	batch := &pgx.Batch{}
	sess.queueOn(batch)
	if races != nil {
		batch.Queue(sqlLedgerMarks, races)
	}
	look := newLookups(&out, mKeys, oKeys, oddsRace, func(i int) bool { return !okM[i] }, func(i int) bool { return !okO[i] })
	look.queue(batch)
	br := tx.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return seriesEnds{}, newDBError("batch", err)
	}
	var marks map[string]ledgerMark
	if races != nil {
		var err error
		if marks, err = readLedgerMarks(br); err != nil {
			_ = br.Close()
			return seriesEnds{}, newDBError(TableRacePolls, err)
		}
	}
	if err := look.read(br); err != nil {
		_ = br.Close()
		return seriesEnds{}, err
	}
	if err := br.Close(); err != nil {
		return seriesEnds{}, newDBError("batch", err)
	}
	if races == nil {
		return out, nil
	}

	// Another write of a race since this process's: its series are looked
	// up after all, and what was remembered of it is dropped.
	stale := make(map[string]bool)
	for r, mark := range known {
		if mark != marks[r] {
			stale[r] = true
		}
	}
	again := newLookups(&out, mKeys, oKeys, oddsRace,
		func(i int) bool { return okM[i] && stale[mKeys[i].race] }, func(i int) bool { return okO[i] && stale[oddsRace(i)] })
	if again.any() {
		batch := &pgx.Batch{}
		again.queue(batch)
		br := tx.SendBatch(ctx, batch)
		if err := again.read(br); err != nil {
			_ = br.Close()
			return seriesEnds{}, err
		}
		if err := br.Close(); err != nil {
			return seriesEnds{}, newDBError("batch", err)
		}
	}
	for i, end := range hitM {
		if okM[i] && !stale[mKeys[i].race] {
			out.money[i], out.moneyWin[i] = end.storedMoney, end.win
			out.remembered++
		}
	}
	for i, end := range hitO {
		if okO[i] && !stale[oddsRace(i)] {
			out.odds[i], out.oddsWin[i] = end.storedOdds, end.win
			out.remembered++
		}
	}
	sess.ends.remembered.Add(uint64(out.remembered))
	sess.ends.lookedUp.Add(uint64(len(look.m) + len(look.o) + len(again.m) + len(again.o)))
	out.update = &endsUpdate{ends: sess.ends, races: races, known: known, stale: stale,
		money: make([]moneyEnd, 0, len(mKeys)), odds: make([]oddsEnd, 0, len(oKeys))}
	return out, nil
}

// racesOf returns the races of ps, each once, in order.
func racesOf(ps []*pending) []string {
	seen := make(map[string]bool, len(ps))
	var out []string
	for _, p := range ps {
		if !seen[p.snap.RaceID] {
			seen[p.snap.RaceID] = true
			out = append(out, p.snap.RaceID)
		}
	}
	return out
}

// lookups reads the stored ends of some of a batch's series (those at
// positions m and o of the keys) into out.
type lookups struct {
	out  *seriesEnds
	m, o []int
	// The statements' arguments, in the order of m and o.
	races, entrants, oEntrants, types []string
	mLo, mHi, oLo, oHi                []time.Time
}

func newLookups(out *seriesEnds, mKeys []moneyKey, oKeys []oddsKey, oddsRace func(int) string,
	wantM, wantO func(int) bool) *lookups {
	l := &lookups{out: out}
	for i, k := range mKeys {
		if wantM(i) {
			l.m = append(l.m, i)
			l.races, l.entrants = append(l.races, k.race), append(l.entrants, k.entrant)
			l.mLo, l.mHi = append(l.mLo, out.moneyWin[i].from), append(l.mHi, out.moneyWin[i].to)
		}
	}
	for i, k := range oKeys {
		if wantO(i) {
			l.o = append(l.o, i)
			l.oEntrants, l.types = append(l.oEntrants, k.entrant), append(l.types, k.typ)
			l.oLo, l.oHi = append(l.oLo, out.oddsWin[i].from), append(l.oHi, out.oddsWin[i].to)
		}
	}
	return l
}

func (l *lookups) any() bool { return len(l.m)+len(l.o) > 0 }

// queue queues the statements, none for a kind with nothing to look up.
func (l *lookups) queue(b *pgx.Batch) {
	if len(l.m) > 0 {
		b.Queue(sqlLatestMoney, l.races, l.entrants, l.mLo, l.mHi)
	}
	if len(l.o) > 0 {
		b.Queue(sqlLatestOdds, l.oEntrants, l.types, l.oLo, l.oHi)
	}
}

// read reads what queue queued; a series with no stored row in its window
// is left not ok (none).
func (l *lookups) read(br pgx.BatchResults) error {
	if len(l.m) > 0 {
		for _, i := range l.m {
			l.out.money[i] = storedMoney{}
		}
		rows, err := br.Query()
		if err != nil {
			return newDBError(TableMoneyFlow, err)
		}
		var i int
		var m storedMoney
		if _, err := pgx.ForEachRow(rows, []any{&i, &m.polling, &m.event, &m.win, &m.place}, func() error {
			m.ok = true
			l.out.money[l.m[i-1]] = m
			return nil
		}); err != nil {
			return newDBError(TableMoneyFlow, err)
		}
	}
	if len(l.o) > 0 {
		for _, i := range l.o {
			l.out.odds[i] = storedOdds{}
		}
		rows, err := br.Query()
		if err != nil {
			return newDBError(TableOdds, err)
		}
		var i int
		var at time.Time
		var text string
		if _, err := pgx.ForEachRow(rows, []any{&i, &at, &text}, func() error {
			c, err := parseCents(text)
			if err != nil {
				return err
			}
			l.out.odds[l.o[i-1]] = storedOdds{ok: true, at: at, cents: c}
			return nil
		}); err != nil {
			return newDBError(TableOdds, err)
		}
	}
	return nil
}
