package write

import (
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ends remembers where the history series of recently written races end,
// as this process's own appends left them, so that the next poll of a race
// can append to its series without reading their ends back (appendHistory).
// That lookup is one index probe per runner and odds type, five per runner,
// and it was the largest single cost of a live poll's write in PostgreSQL.
//
// What Ends remembers of a race is only used while the race's race_polls
// ledger is as this process left it: the same number of polls, the newest
// written_at the same. Every writer of a poll adds a ledger row
// in the transaction that writes the poll's history, whatever its version or
// process, and a rebuild deletes and rewrites them, so a write of the race
// anywhere else (another instance, a replay, a rebuild), or a transaction of
// this process that did not commit, makes the ledger differ and the series
// are looked up again. Changing a race's history by hand, leaving its ledger
// as it is, is not seen: clear the process's memory by restarting it.
//
// An Ends is safe for concurrent use. It holds at most the races it was
// made for, forgetting the least recently written first.
type Ends struct {
	mu    sync.Mutex
	races map[string]*raceEnds
	max   int
	clock uint64
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

// ledgerMark is what a race's race_polls ledger looked like: how many polls
// it held and when the transaction that wrote the latest began (written_at).
type ledgerMark struct {
	polls int64
	last  time.Time // zero: no polls
}

func (m ledgerMark) equal(o ledgerMark) bool { return m.polls == o.polls && m.last.Equal(o.last) }

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

// sqlLedgerMarks reads each race's ledger mark, and the transaction's start,
// which becomes written_at of the ledger rows it inserts. The lateral count
// walks the race's primary key entries, so it stays a per-race probe.
const sqlLedgerMarks = `
SELECT u.race_id, l.n, l.last, now()
FROM unnest($1::text[]) AS u(race_id)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, max(p.written_at) AS last FROM race_polls p WHERE p.race_id = u.race_id
) l`

// readLedgerMarks reads the result of sqlLedgerMarks: each race's mark and
// the transaction's start.
func readLedgerMarks(br pgx.BatchResults) (map[string]ledgerMark, time.Time, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, time.Time{}, err
	}
	defer rows.Close()
	marks := make(map[string]ledgerMark)
	var now time.Time
	for rows.Next() {
		var race string
		var m ledgerMark
		var last *time.Time
		if err := rows.Scan(&race, &m.polls, &last, &now); err != nil {
			return nil, time.Time{}, err
		}
		if last != nil {
			m.last = *last
		}
		marks[race] = m
	}
	return marks, now, rows.Err()
}

// endsUpdate is what a write leaves at the end of its races' series, to be
// remembered once its statements succeeded (apply).
type endsUpdate struct {
	ends  *Ends
	marks map[string]ledgerMark // each race's ledger before the write
	now   time.Time             // the transaction's start: written_at of the ledger rows it adds
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

// apply remembers the update, each race under the ledger mark the write
// leaves once it commits: its polls that were new to the ledger added, the
// latest written now. Should the transaction not commit, the ledger does
// not show that mark and nothing of the update is used. What was
// remembered of a stale race goes; the rest of a race's series, which the
// write did not touch, stay as they were.
func (u *endsUpdate) apply(ps []*pending) {
	if u == nil {
		return
	}
	added := make(map[string]int64, len(u.marks))
	for _, p := range ps {
		added[p.snap.RaceID] += int64(p.rows.Polls)
	}
	e := u.ends
	e.mu.Lock()
	defer e.mu.Unlock()
	for r, m := range u.marks {
		if n := added[r]; n > 0 {
			m.polls += n
			m.last = maxTime(m.last, u.now)
		}
		re := e.races[r]
		if was, ok := u.known[r]; re == nil || u.stale[r] || !ok || !re.mark.equal(was) {
			// Start afresh from this write's series: what was remembered
			// is stale, or another write of the race changed it meanwhile.
			re = &raceEnds{money: make(map[string]endMoney), odds: make(map[oddsKey]endOdds)}
			e.races[r] = re
		}
		re.mark = m
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
