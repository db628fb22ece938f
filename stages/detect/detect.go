// Package detect judges one stored poll of a race with the alert rules
// (stages/alerts) inside the caller's transaction: it reads the race's
// history around the poll (money flow, prices, scratchings), runs the
// rules, and stores the alerts the poll fires in the alerts table,
// idempotently by their natural key. The flow's detect stage and replay
// both call Poll, so the same stored polls always give the same table.
//
// Every read walks an index: the race's entrants (entrants_race_idx), each
// runner's money-flow rows by (race, runner, time) and its prices by
// (runner, type, time), within the few daily partitions of the span, all
// sent in one round trip.
package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/alerts"
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

// The reads of one poll, sent in one batch: $1 the race, $2 the poll, $3 the
// widest window in minutes, $4 the span's start. Each is gated on the poll
// being judged at all (alerts.Judged: taken while the race was open, within
// a window), a one-time filter of two key probes, so the polls the rules
// would skip read no history. History rows carry their poll's instant as
// the partition key, so the time bounds prune to the partitions of the
// span; a price as of the span's start is looked for at most historyWindow
// before it (the write stage's bound on neighbours).
const (
	sqlJudged = `
EXISTS (SELECT 1 FROM race_polls WHERE race_id = $1 AND observed_at = $2 AND status = 'open')
AND EXISTS (SELECT 1 FROM money_flow_history g
    WHERE g.race_id = $1 AND g.entrant_id = ANY (ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1))
      AND g.polling_timestamp = $2 AND g.event_timestamp = $2 AND g.time_to_start < $3)`

	sqlEntrants = `
SELECT entrant_id, runner_number, name, scratch_time
FROM entrants WHERE race_id = $1 AND ` + sqlJudged + `
ORDER BY runner_number, entrant_id`

	sqlPolls = `
SELECT observed_at, status = 'open'
FROM race_polls WHERE race_id = $1 AND observed_at >= $4 AND observed_at <= $2 AND ` + sqlJudged

	sqlMoney = `
SELECT entrant_id, polling_timestamp, time_to_start, time_interval, hold_percentage::float8, win_pool_amount
FROM money_flow_history
WHERE race_id = $1 AND entrant_id = ANY (ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1))
  AND polling_timestamp >= $4 AND polling_timestamp <= $2 AND event_timestamp >= $4 AND event_timestamp <= $2
  AND ` + sqlJudged + `
ORDER BY polling_timestamp, entrant_id`

	sqlPrices = `
SELECT o.entrant_id, o.type, o.event_timestamp, o.odds::float8
FROM unnest(ARRAY(SELECT entrant_id FROM entrants WHERE race_id = $1)) AS e(entrant_id)
CROSS JOIN (VALUES ('fixed_win'), ('pool_win')) AS k(type)
CROSS JOIN LATERAL (
    (SELECT h.entrant_id, h.type, h.event_timestamp, h.odds
     FROM odds_history h
     WHERE h.entrant_id = e.entrant_id AND h.type = k.type
       AND h.event_timestamp < $4 AND h.event_timestamp >= $4::timestamptz - ` + historyWindow + `
     ORDER BY h.event_timestamp DESC LIMIT 1)
    UNION ALL
    (SELECT h.entrant_id, h.type, h.event_timestamp, h.odds
     FROM odds_history h
     WHERE h.entrant_id = e.entrant_id AND h.type = k.type AND h.event_timestamp >= $4 AND h.event_timestamp <= $2
     ORDER BY h.event_timestamp)
) o
WHERE ` + sqlJudged
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
	var (
		order   []string           // the race's entrants by runner number
		index   = map[string]int{} // entrant → its place in order
		runners = map[string]runnerInfo{}
		open    = map[time.Time]bool{}
		polls   []alerts.Poll
		prices  = map[string][]price{} // entrant/type → oldest first
	)
	batch := &pgx.Batch{}
	batch.Queue(sqlPlannerOn)
	batch.Queue(sqlEntrants, raceID, at, window).Query(func(rows pgx.Rows) error {
		var id string
		var ri runnerInfo
		_, err := pgx.ForEachRow(rows, []any{&id, &ri.number, &ri.name, &ri.scratched}, func() error {
			index[id] = len(order)
			order = append(order, id)
			runners[id] = ri
			return nil
		})
		return err
	})
	batch.Queue(sqlPolls, raceID, at, window, from).Query(func(rows pgx.Rows) error {
		var t time.Time
		var isOpen bool
		_, err := pgx.ForEachRow(rows, []any{&t, &isOpen}, func() error {
			open[t.UTC()] = isOpen
			return nil
		})
		return err
	})
	batch.Queue(sqlMoney, raceID, at, window, from).Query(func(rows pgx.Rows) error {
		var (
			id       string
			t        time.Time
			mts, bkt int
			hold     float64
			cents    int64
		)
		_, err := pgx.ForEachRow(rows, []any{&id, &t, &mts, &bkt, &hold, &cents}, func() error {
			if n := len(polls); n == 0 || !polls[n-1].At.Equal(t) {
				p := alerts.Poll{At: t.UTC(), MinutesToStart: mts, Bucket: bkt, Runners: make([]alerts.Runner, len(order))}
				for i, e := range order {
					p.Runners[i].EntrantID = e
				}
				polls = append(polls, p)
			}
			if i, ok := index[id]; ok { // the entrants were read first, in the same snapshot
				r := &polls[len(polls)-1].Runners[i]
				r.HoldPct, r.WinCents = hold, cents
			}
			return nil
		})
		return err
	})
	batch.Queue(sqlPrices, raceID, at, window, from).Query(func(rows pgx.Rows) error {
		var id, typ string
		var p price
		_, err := pgx.ForEachRow(rows, []any{&id, &typ, &p.at, &p.odds}, func() error {
			prices[id+"/"+typ] = append(prices[id+"/"+typ], p)
			return nil
		})
		return err
	})
	batch.Queue(sqlPlannerRestore)
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return alerts.History{}, nil, &Error{Op: "read", Err: err}
	}
	for _, ps := range prices { // each runner's price before the span, then the span's in order
		if !slices.IsSortedFunc(ps, func(a, b price) int { return a.at.Compare(b.at) }) {
			slices.SortFunc(ps, func(a, b price) int { return a.at.Compare(b.at) })
		}
	}
	for i, id := range order {
		fixed, pool := prices[id+"/fixed_win"], prices[id+"/pool_win"]
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

// asOf moves a runner's price to instant t: the latest of ps at or before
// t, else the price it had (0: none yet). It returns the prices after t, so
// that called for instants in order it passes each price once.
func asOf(had float64, ps []price, t time.Time) (float64, []price) {
	for len(ps) > 0 && !ps[0].at.After(t) {
		had, ps = ps[0].odds, ps[1:]
	}
	return had, ps
}
