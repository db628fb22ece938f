package write

import (
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// Ends remembers where the history series of recently written races end,
// as this process's own appends left them, so that the next poll of a race
// can append to its series without reading their ends back (appendHistory).
// That lookup is one index probe per runner and odds type, five per runner,
// and it was the largest single cost of a live poll's write in PostgreSQL.
//
// What Ends remembers of a race is only used while the race's race_polls
// ledger is as this process left it: its latest row, by written_seq (the
// order rows were inserted in), is the one this process's last write of the
// race left there. Every writer of a poll adds a ledger row in the
// transaction that writes the poll's history, whatever its version or
// process, and a rebuild deletes and rewrites them, so a write of the race
// anywhere else (another instance, a replay, a rebuild), or a transaction
// of this process that did not commit, leaves another latest row and the
// series are looked up again. Changing a race's history by hand, leaving
// its ledger as it is, is not seen: clear the process's memory by
// restarting it.
//
// An Ends is safe for concurrent use. It holds at most the races it was
// made for, forgetting the least recently written first.
type Ends struct {
	mu    sync.Mutex
	races map[string]*raceEnds
	max   int
	clock uint64

	remembered, lookedUp atomic.Uint64
}

// EndsStats counts where the ends of the series an Ends' writes appended to
// came from.
type EndsStats struct {
	// Remembered counts series whose end the Ends answered for.
	Remembered uint64
	// LookedUp counts series looked up instead: the race's first poll in
	// this process, a race written elsewhere since, or a write more than a
	// day after the lookup that found the end.
	LookedUp uint64
}

// Stats reports the counts since e was made.
func (e *Ends) Stats() EndsStats {
	return EndsStats{Remembered: e.remembered.Load(), LookedUp: e.lookedUp.Load()}
}

// DefaultEndsRaces is how many races an Ends remembers by default: more
// than a busy day's races in flight at once.
const DefaultEndsRaces = 1024

// NewEnds returns an Ends that remembers up to maxRaces races (at least 1).
func NewEnds(maxRaces int) *Ends {
	return &Ends{races: make(map[string]*raceEnds), max: max(maxRaces, 1)}
}

// WithEnds makes the write remember its series' ends in e, and take the ends
// it remembers instead of looking them up.
func WithEnds(e *Ends) Option { return func(s *session) { s.ends = e } }

// ledgerMark is the written_seq of a race's latest ledger row (0: none).
type ledgerMark int64

// raceEnds is what Ends knows of one race's series, valid while the ledger
// shows mark. It is read and changed under Ends' lock only.
type raceEnds struct {
	mark  ledgerMark
	money map[string]endMoney // by entrant
	odds  map[oddsKey]endOdds
	used  uint64
}

// endMoney is a money series' latest stored row by polling then event time
// among its rows whose event time is within win: what sqlLatestMoney
// returns for any window within win that the row is in. A write that
// appends to the series leaves its last row the latest within win.
type endMoney struct {
	storedMoney
	win window
}

// endOdds is endMoney for an odds series, by event time.
type endOdds struct {
	storedOdds
	win window
}

// recall copies what e remembers of the series at mKeys and oKeys (of race
// oddsRace(i)) into money and odds, setting okM and okO where it remembers
// one, and returns the ledger mark of each race it remembers.
func (e *Ends) recall(races []string, mKeys []moneyKey, money []endMoney, okM []bool,
	oKeys []oddsKey, oddsRace func(int) string, odds []endOdds, okO []bool) map[string]ledgerMark {
	e.mu.Lock()
	defer e.mu.Unlock()
	marks := make(map[string]ledgerMark, len(races))
	for _, r := range races {
		if re := e.races[r]; re != nil {
			marks[r] = re.mark
		}
	}
	for i, k := range mKeys {
		if re := e.races[k.race]; re != nil {
			money[i], okM[i] = re.money[k.entrant]
		}
	}
	for i, k := range oKeys {
		if re := e.races[oddsRace(i)]; re != nil {
			odds[i], okO[i] = re.odds[k]
		}
	}
	return marks
}

// forget drops what e remembers of races.
func (e *Ends) forget(races []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range races {
		delete(e.races, r)
	}
}

// evict forgets the least recently written races beyond e's bound. The
// caller holds the lock.
func (e *Ends) evict() {
	for len(e.races) > e.max {
		var oldest string
		var at uint64
		for r, re := range e.races {
			if oldest == "" || re.used < at {
				oldest, at = r, re.used
			}
		}
		delete(e.races, oldest)
	}
}

// sqlLedgerMarks reads each race's ledger mark: one probe of the
// (race_id, written_seq) index per race.
const sqlLedgerMarks = `
SELECT u.race_id, coalesce((SELECT p.written_seq FROM race_polls p WHERE p.race_id = u.race_id
    ORDER BY p.written_seq DESC LIMIT 1), 0)
FROM unnest($1::text[]) AS u(race_id)`

// readLedgerMarks reads the result of sqlLedgerMarks.
func readLedgerMarks(br pgx.BatchResults) (map[string]ledgerMark, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	marks := make(map[string]ledgerMark)
	var race string
	var m ledgerMark
	_, err = pgx.ForEachRow(rows, []any{&race, &m}, func() error {
		marks[race] = m
		return nil
	})
	return marks, err
}

// endsUpdate is what a write leaves at the end of its races' series, to be
// remembered once its statements succeeded (apply).
type endsUpdate struct {
	ends  *Ends
	races []string              // the write's races
	known map[string]ledgerMark // the mark of each race e remembered when the write began
	stale map[string]bool       // races whose ledger changed since e remembered them
	money []moneyEnd
	odds  []oddsEnd
}

// moneyEnd is where a money series of the write ends; ok false: the write
// took the general statements for it, so its end is not known.
type moneyEnd struct {
	key moneyKey
	end endMoney
	ok  bool
}

// oddsEnd is moneyEnd for an odds series of race.
type oddsEnd struct {
	race string
	key  oddsKey
	end  endOdds
	ok   bool
}

// setMoney records where a money series of the write ends (see moneyEnd).
func (u *endsUpdate) setMoney(k moneyKey, end endMoney, ok bool) {
	if u != nil {
		u.money = append(u.money, moneyEnd{k, end, ok})
	}
}

// setOdds records where an odds series of race ends (see oddsEnd).
func (u *endsUpdate) setOdds(race string, k oddsKey, end endOdds, ok bool) {
	if u != nil {
		u.odds = append(u.odds, oddsEnd{race, k, end, ok})
	}
}

// apply remembers the update, each race under the mark its ledger shows
// after the write's statements (marks, read in its transaction): what the
// ledger shows once the transaction commits. Should it not commit, the
// ledger shows another mark and nothing of the update is used. What was
// remembered of a stale race goes; the rest of a race's series, which the
// write did not touch, stay as they were.
func (u *endsUpdate) apply(marks map[string]ledgerMark) {
	if u == nil {
		return
	}
	e := u.ends
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range u.races {
		re := e.races[r]
		if was, ok := u.known[r]; re == nil || u.stale[r] || !ok || re.mark != was {
			// Start afresh from this write's series: what was remembered
			// is stale, or another write of the race changed it meanwhile.
			re = &raceEnds{money: make(map[string]endMoney), odds: make(map[oddsKey]endOdds)}
			e.races[r] = re
		}
		re.mark = marks[r]
		e.clock++
		re.used = e.clock
	}
	for _, c := range u.money {
		if re := e.races[c.key.race]; re != nil {
			if c.ok {
				re.money[c.key.entrant] = c.end
			} else {
				delete(re.money, c.key.entrant)
			}
		}
	}
	for _, c := range u.odds {
		if re := e.races[c.race]; re != nil {
			if c.ok {
				re.odds[c.key] = c.end
			} else {
				delete(re.odds, c.key)
			}
		}
	}
	e.evict()
}
