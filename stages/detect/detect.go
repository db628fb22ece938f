// Package detect judges one stored poll of a race with the alert rules
// (stages/alerts) inside the caller's transaction: it reads the race's
// history around the poll (money flow, prices, scratchings), runs the
// rules, and stores the alerts the poll fires in the alerts table,
// idempotently by their natural key. The flow's detect stage and replay
// both call Poll, so the same stored polls always give the same table.
//
// Every read walks an index: the race's entrants (entrants_race_idx), the
// poll ledger by (race, time), each runner's money-flow rows by (race,
// runner, time) and its prices by (runner, type, time), within the few
// daily partitions of the span. A poll costs two round trips: whether the
// rules judge it at all and where its history starts, then (only for a
// judged poll) the history.
package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/transform"
)

// DB is where a poll is judged: the caller's transaction (pgx.Tx), or a
// pool for reads outside one.
type DB interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Fired is an alert the poll fired, with the names a reader needs to
// place it.
type Fired struct {
	alerts.Alert
	// ID is the alert's idempotency key (alerts.Alert.ID).
	ID string `json:"id"`
	// Meeting, RaceNumber and RaceName describe the race.
	Meeting    string `json:"meeting,omitempty"`
	RaceNumber int    `json:"race_number,omitempty"`
	RaceName   string `json:"race_name,omitempty"`
	// RunnerNumber and RunnerName describe the runner (none for a pool
	// surge).
	RunnerNumber int    `json:"runner_number,omitempty"`
	RunnerName   string `json:"runner_name,omitempty"`
	// Summary says it in one line, for a chat channel.
	Summary string `json:"summary"`
}

// Result is what judging a poll did.
type Result struct {
	// Fired are the alerts this poll fires, whether this call stored them or
	// an earlier delivery of the poll did: a redelivered poll fires the same
	// alerts again, so whoever publishes them publishes every one at least
	// once.
	Fired []Fired
	// Inserted counts the alerts this call stored.
	Inserted int
}

// Error is a failed detection; the caller's transaction is then unusable.
type Error struct {
	Op  string // read or store
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("detect: %s: %v", e.Op, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// ErrNoRace: the race is not stored (judging a poll that was never written).
var ErrNoRace = errors.New("detect: race not stored")

// Poll judges the poll of raceID observed at `at`, which must be written in
// db already, and stores the alerts it fires.
func Poll(ctx context.Context, db DB, cfg alerts.Config, raceID string, at time.Time) (Result, error) {
	// The poll is stored to the microsecond, as PostgreSQL keeps time
	// (pgx truncates): judge that instant, or the poll is not found.
	at = at.UTC().Truncate(time.Microsecond)
	h, runners, err := read(ctx, db, cfg, raceID, at)
	if err != nil {
		return Result{}, err
	}
	if n := len(h.Polls); n == 0 || !h.Polls[n-1].At.Equal(at) {
		return Result{}, nil // the poll carried no money: nothing to judge
	}
	fired := alerts.Detect(cfg, h)
	if len(fired) == 0 {
		return Result{}, nil
	}
	return store(ctx, db, raceID, fired, runners)
}

// runnerInfo names a runner.
type runnerInfo struct {
	number    int
	name      string
	scratched *time.Time
}

// A poll is read in two round trips. The first (sqlPlan) asks whether the
// rules judge it at all (alerts.Judged: taken while the race was open,
// within a window; two key probes), so a poll they skip reads nothing more,
// and, for one they judge, where its history starts: the last poll before
// the widest window within the span. Every rule measures from that poll or
// a later one (the price rule from the last poll before its window, the
// money rules from the poll before the poll's bucket, within the window),
// so judging with the polls from it gives what judging with the whole span
// gives. The second reads the history from there. $1 is the race, $2 the
// poll, $3 the widest window in minutes, $4 the span's start (then the
// history's). History rows carry their poll's instant as the partition key,
// so the time bounds prune to the partitions of the span; a price as of the
// history's start is looked for at most historyWindow before it (the write
// stage's bound on neighbours).
const (
	sqlPlan = `
SELECT j.judged, CASE WHEN j.judged THEN (
    SELECT max(b.polling_timestamp)
    FROM unnest(ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1)) AS e(entrant_id)
    CROSS JOIN LATERAL (
        SELECT g.polling_timestamp FROM money_flow_history g
        WHERE g.race_id = $1 AND g.entrant_id = e.entrant_id AND g.time_to_start >= $3
          AND g.polling_timestamp >= $4 AND g.polling_timestamp < $2 AND g.event_timestamp >= $4 AND g.event_timestamp < $2
        ORDER BY g.polling_timestamp DESC LIMIT 1) b) END
FROM (SELECT EXISTS (SELECT 1 FROM race_polls WHERE race_id = $1 AND observed_at = $2 AND status = 'open')
         AND EXISTS (SELECT 1 FROM money_flow_history g
             WHERE g.race_id = $1 AND g.entrant_id = ANY (ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1))
               AND g.polling_timestamp = $2 AND g.event_timestamp = $2 AND g.time_to_start < $3) AS judged) j`

	sqlEntrants = `
SELECT entrant_id, runner_number, name, scratch_time
FROM entrants WHERE race_id = $1
ORDER BY runner_number, entrant_id`

	sqlPolls = `
SELECT observed_at, status = 'open'
FROM race_polls WHERE race_id = $1 AND observed_at >= $3 AND observed_at <= $2`

	// The race's entrants, numbered as sqlEntrants orders them: the money
	// and price rows name a runner by its number in this list.
	sqlNumbered = `unnest(ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1 ORDER BY runner_number, entrant_id))
    WITH ORDINALITY AS e(entrant_id, n)`

	sqlMoney = `
SELECT e.n, h.polling_timestamp, h.time_to_start, h.time_interval, h.hold_percentage::float8, h.win_pool_amount
FROM ` + sqlNumbered + `
CROSS JOIN LATERAL (
    SELECT h.polling_timestamp, h.time_to_start, h.time_interval, h.hold_percentage, h.win_pool_amount
    FROM money_flow_history h
    WHERE h.race_id = $1 AND h.entrant_id = e.entrant_id
      AND h.polling_timestamp >= $3 AND h.polling_timestamp <= $2 AND h.event_timestamp >= $3 AND h.event_timestamp <= $2
) h
ORDER BY h.polling_timestamp, e.n`

	sqlPrices = `
SELECT e.n, k.t, o.event_timestamp, o.odds::float8
FROM ` + sqlNumbered + `
CROSS JOIN (VALUES (0, 'fixed_win'), (1, 'pool_win')) AS k(t, type)
CROSS JOIN LATERAL (
    (SELECT h.event_timestamp, h.odds
     FROM odds_history h
     WHERE h.entrant_id = e.entrant_id AND h.type = k.type
       AND h.event_timestamp < $3 AND h.event_timestamp >= $3::timestamptz - ` + historyWindow + `
     ORDER BY h.event_timestamp DESC LIMIT 1)
    UNION ALL
    (SELECT h.event_timestamp, h.odds
     FROM odds_history h
     WHERE h.entrant_id = e.entrant_id AND h.type = k.type AND h.event_timestamp >= $3 AND h.event_timestamp <= $2
     ORDER BY h.event_timestamp)
) o`
)

// historyWindow is how far back the price before the span is looked for:
// the write stage's bound on a row's neighbours.
const historyWindow = `interval '72 hours'`

// The reads run on generic plans, with the caller's setting restored after
// them: given the values, the planner would plan every execution again
// (about as long as executing these reads), and the plans do not depend on
// the values (the write stage does the same for its statements).
const (
	sqlPlannerOn = `SELECT set_config('raceflow.detect_plan_cache_mode', current_setting('plan_cache_mode'), true),
       set_config('plan_cache_mode', 'force_generic_plan', true)`
	sqlPlannerRestore = `SELECT set_config('plan_cache_mode', current_setting('raceflow.detect_plan_cache_mode'), true)`
)

// price is one stored price of a runner.
type price struct {
	at   time.Time
	odds float64
}

// read loads the race's history over the span before `at` as the rules see
// it: every runner at every poll with money, its money, its prices as of
// the poll, whether it was scratched by then, and whether the race was open.
// Nothing for a poll the rules do not judge.
func read(ctx context.Context, db DB, cfg alerts.Config, raceID string, at time.Time) (alerts.History, map[string]runnerInfo, error) {
	from := at.Add(-alerts.Span(cfg))
	window := max(cfg.PriceMinutes, cfg.LateMinutes, cfg.SurgeMinutes)
	var judged bool
	var since *time.Time
	if err := db.SendBatch(ctx, planBatch(raceID, at, window, from, &judged, &since)).Close(); err != nil {
		return alerts.History{}, nil, &Error{Op: "read", Err: err}
	}
	if !judged {
		return alerts.History{RaceID: raceID}, nil, nil
	}
	if since != nil {
		from = since.UTC()
	}
	var (
		order   []string // the race's entrants by runner number
		runners = map[string]runnerInfo{}
		open    = map[time.Time]bool{}
		polls   []alerts.Poll
		prices  [][2][]price // by entrant number − 1, then fixed, tote; oldest first
	)
	batch := &pgx.Batch{}
	batch.Queue(sqlPlannerOn)
	batch.Queue(sqlEntrants, raceID).Query(func(rows pgx.Rows) error {
		var id string
		var ri runnerInfo
		_, err := pgx.ForEachRow(rows, []any{&id, &ri.number, &ri.name, &ri.scratched}, func() error {
			order = append(order, id)
			runners[id] = ri
			return nil
		})
		prices = make([][2][]price, len(order))
		return err
	})
	batch.Queue(sqlPolls, raceID, at, from).Query(func(rows pgx.Rows) error {
		var t time.Time
		var isOpen bool
		_, err := pgx.ForEachRow(rows, []any{&t, &isOpen}, func() error {
			open[t.UTC()] = isOpen
			return nil
		})
		return err
	})
	// A runner's number beyond the entrants read (one added meanwhile) is
	// left out: it has no history before this poll anyway.
	batch.Queue(sqlMoney, raceID, at, from).Query(func(rows pgx.Rows) error {
		var (
			n, mts, bkt int
			t           time.Time
			hold        float64
			cents       int64
		)
		_, err := pgx.ForEachRow(rows, []any{&n, &t, &mts, &bkt, &hold, &cents}, func() error {
			if k := len(polls); k == 0 || !polls[k-1].At.Equal(t) {
				p := alerts.Poll{At: t.UTC(), MinutesToStart: mts, Bucket: bkt, Runners: make([]alerts.Runner, len(order))}
				for i, e := range order {
					p.Runners[i].EntrantID = e
				}
				polls = append(polls, p)
			}
			if n >= 1 && n <= len(order) {
				r := &polls[len(polls)-1].Runners[n-1]
				r.HoldPct, r.WinCents = hold, cents
			}
			return nil
		})
		return err
	})
	batch.Queue(sqlPrices, raceID, at, from).Query(func(rows pgx.Rows) error {
		var n, typ int
		var p price
		_, err := pgx.ForEachRow(rows, []any{&n, &typ, &p.at, &p.odds}, func() error {
			if n >= 1 && n <= len(prices) && (typ == 0 || typ == 1) {
				prices[n-1][typ] = append(prices[n-1][typ], p)
			}
			return nil
		})
		return err
	})
	batch.Queue(sqlPlannerRestore)
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return alerts.History{}, nil, &Error{Op: "read", Err: err}
	}
	byTime := func(a, b price) int { return a.at.Compare(b.at) }
	for i, id := range order {
		fixed, pool := prices[i][0], prices[i][1] // the price before the span, then the span's in order
		if !slices.IsSortedFunc(fixed, byTime) {
			slices.SortFunc(fixed, byTime)
		}
		if !slices.IsSortedFunc(pool, byTime) {
			slices.SortFunc(pool, byTime)
		}
		var fixedWin, poolWin float64
		scratched := runners[id].scratched
		for k := range polls { // polls and prices both oldest first
			p := &polls[k]
			fixedWin, fixed = asOf(fixedWin, fixed, p.At)
			poolWin, pool = asOf(poolWin, pool, p.At)
			r := &p.Runners[i]
			r.FixedWin, r.PoolWin = fixedWin, poolWin
			r.Scratched = scratched != nil && !scratched.After(p.At)
		}
	}
	for k := range polls {
		polls[k].Open = open[polls[k].At]
	}
	return alerts.History{RaceID: raceID, Polls: polls}, runners, nil
}

// planBatch is the first round trip of read: whether the poll is judged,
// and the last poll before the widest window (nil: none in the span).
func planBatch(raceID string, at time.Time, window int, from time.Time, judged *bool, since **time.Time) *pgx.Batch {
	batch := &pgx.Batch{}
	batch.Queue(sqlPlannerOn)
	batch.Queue(sqlPlan, raceID, at, window, from).QueryRow(func(row pgx.Row) error {
		return row.Scan(judged, since)
	})
	batch.Queue(sqlPlannerRestore)
	return batch
}

// asOf moves a runner's price to instant t: the latest of ps at or before
// t, else the price it had (0: none yet). It returns the prices after t, so
// that called for instants in order it passes each price once.
func asOf(had float64, ps []price, t time.Time) (float64, []price) {
	for len(ps) > 0 && !ps[0].at.After(t) {
		had, ps = ps[0].odds, ps[1:]
	}
	return had, ps
}

// Judged reports whether Poll could judge the poll snap, written as it is:
// false when the rules skip it for sure (alerts.Judged: the race was not
// open, or none of its money rows is within a rule's window), so a caller
// holding the snapshot (replay) spares the round trip that would find so.
func Judged(cfg alerts.Config, snap transform.RaceSnapshot) bool {
	open := snap.Race.Status == transform.StatusOpen
	for _, m := range snap.MoneyFlow {
		if alerts.Judged(cfg, alerts.Poll{Open: open, MinutesToStart: m.TimeToStart}) {
			return true
		}
	}
	return false
}
