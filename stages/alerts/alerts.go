// Package alerts holds the late-money alert rules: a pure function from a
// race's stored polls (each runner's money and prices at each poll) to the
// alerts they fire. It knows no database and no messages; stages/detect
// reads the history and stores the alerts, handlers publish them.
//
// Three rules, each over a window of the last minutes before the advertised
// start (docs/ALERTS.md gives the maths, the defaults and how they were
// tuned):
//
//   - steamer / drifter: a runner's implied win probability (100 / odds, for
//     the fixed and the pool price) moves from its value before the window
//     by at least PricePoints percentage points, or by PriceRelative percent
//     of itself for a runner above PriceRelativeFloor;
//   - late money: within one timing bucket, a runner takes a share of the
//     win money that came in of at least LateRatio times its share of the
//     pool before the bucket, and at least LateMinCents;
//   - pool surge: the race's win pool grows by SurgePercent within one
//     bucket, and by at least SurgeMinCents.
//
// An alert is keyed by race, runner, kind and timing bucket, and fires at
// the first poll, taken while the race takes bets, whose data meet its rule: a price move when it first
// crosses its threshold, money within a bucket at the first poll of the
// bucket that shows it. The result depends only on the polls up to the one
// judged, so the same stored polls always give the same alerts.
package alerts

import (
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/raceflow/raceflow/config"
)

// Config is the rules' thresholds. config.AlertRules defines them, their
// defaults (RACEFLOW_ALERT_*) and their checks, in one place.
type Config = config.AlertRules

// DefaultConfig is the rules' defaults.
func DefaultConfig() Config { return config.DefaultAlertRules() }

// Kind is what an alert says happened.
type Kind string

// The kinds of alert.
const (
	// KindSteamer: a runner's implied win probability rose (its odds
	// shortened).
	KindSteamer Kind = "steamer"
	// KindDrifter: a runner's implied win probability fell (its odds
	// lengthened).
	KindDrifter Kind = "drifter"
	// KindLateMoney: a runner took far more than its share of the money
	// that came in within one timing bucket.
	KindLateMoney Kind = "late_money"
	// KindPoolSurge: the race's win pool grew sharply within one bucket.
	KindPoolSurge Kind = "pool_surge"
)

// Kinds lists every kind.
func Kinds() []Kind { return []Kind{KindSteamer, KindDrifter, KindLateMoney, KindPoolSurge} }

// Price sources of steamers and drifters: the odds_history types.
const (
	SourceFixedWin = "fixed_win"
	SourcePoolWin  = "pool_win"
)

// Runner is one runner at one poll: its money-flow row (zero without one)
// and its prices as of the poll (the latest stored at or before it).
type Runner struct {
	EntrantID string
	// HoldPct is the runner's hold percentage.
	HoldPct float64
	// WinCents is the runner's win pool amount.
	WinCents int64
	// FixedWin and PoolWin are the decimal win odds; 0 when unknown.
	FixedWin, PoolWin float64
	// Scratched: the runner was scratched at or before the poll. A
	// scratching reprices the whole field and moves its money, so no rule
	// measures across one.
	Scratched bool
}

// Poll is one stored poll of a race.
type Poll struct {
	// At is the observation instant (the history rows' timestamps).
	At time.Time
	// MinutesToStart and Bucket are the rows' time_to_start and
	// time_interval.
	MinutesToStart int
	Bucket         int
	// Open: the race took bets at the poll (status open). Only such a poll
	// fires: an alert after betting has closed tells nobody anything they
	// can act on, and the money no longer moves.
	Open bool
	// Runners are the race's runners at the poll: money where the poll has
	// a money-flow row, prices as of the poll.
	Runners []Runner
}

// WinPool is the race's win pool at the poll, in cents, recovered from the
// runners' rows: each row's amount is round(W × hold / 100), so
// W = Σ amount × 100 / Σ hold, exact to half a cent per runner. 0 when the
// poll has no hold.
func (p Poll) WinPool() int64 {
	var cents int64
	var hold float64
	for _, r := range p.Runners {
		cents += r.WinCents
		hold += r.HoldPct
	}
	if hold <= 0 {
		return 0
	}
	return int64(math.Round(float64(cents) * 100 / hold))
}

// History is the stored polls of one race, oldest first.
type History struct {
	RaceID string
	Polls  []Poll
}

// Alert is one alert and the numbers that fired it. Which figures are set
// depends on the kind (docs/ALERTS.md); money is in cents, percentages and
// ratios have two decimals.
type Alert struct {
	RaceID string `json:"race_id"`
	// EntrantID is the runner; empty for a race's pool surge.
	EntrantID string `json:"entrant_id"`
	Kind      Kind   `json:"kind"`
	// Bucket is the timing bucket (time_interval) of the poll that fired.
	Bucket int `json:"bucket"`
	// FiredAt is the observation instant of the poll that fired, and
	// MinutesToStart its time_to_start.
	FiredAt        time.Time `json:"fired_at"`
	MinutesToStart int       `json:"minutes_to_start"`
	// ReferenceAt is the poll the move is measured from: the last poll
	// before the window (prices) or before the bucket (money).
	ReferenceAt time.Time `json:"reference_at"`
	// Source is the price that moved: fixed_win or pool_win (steamers and
	// drifters only).
	Source string `json:"source,omitempty"`
	// BeforeOdds and AfterOdds are that price at ReferenceAt and FiredAt.
	BeforeOdds *float64 `json:"before_odds,omitempty"`
	AfterOdds  *float64 `json:"after_odds,omitempty"`
	// BeforeCents and AfterCents are the runner's win money (late money)
	// or the race's win pool (pool surge) at ReferenceAt and FiredAt.
	BeforeCents *int64 `json:"before_cents,omitempty"`
	AfterCents  *int64 `json:"after_cents,omitempty"`
	// WindowCents is the win money that came in within the bucket: every
	// runner's (late money), the pool's growth (pool surge).
	WindowCents *int64 `json:"window_cents,omitempty"`
	// BeforePct and AfterPct are the implied win probability (prices) or
	// the runner's share of the pool before the bucket and of the bucket's
	// money (late money), in percent.
	BeforePct *float64 `json:"before_pct,omitempty"`
	AfterPct  *float64 `json:"after_pct,omitempty"`
	// ChangePct is the move: percentage points of probability (prices), the
	// pool's growth in percent (pool surge).
	ChangePct *float64 `json:"change_pct,omitempty"`
	// Ratio is after over before: of the probability (prices), of the
	// shares (late money), of the pool (pool surge); absent when before is 0.
	Ratio *float64 `json:"ratio,omitempty"`
}

// Key is an alert's natural key: at most one alert of a kind per runner
// and timing bucket.
type Key struct {
	RaceID, EntrantID string
	Kind              Kind
	Bucket            int
}

// Key is the alert's natural key.
func (a Alert) Key() Key {
	return Key{RaceID: a.RaceID, EntrantID: a.EntrantID, Kind: a.Kind, Bucket: a.Bucket}
}

// ID is the alert's idempotency key, derived from its natural key: the
// same alert has the same id however often it is derived or delivered.
func (a Alert) ID() string { return a.Key().ID() }

// ID is the id of the alert with this key.
func (k Key) ID() string {
	name := "raceflow:alert:" + k.RaceID + "/" + k.EntrantID + "/" + string(k.Kind) + "/" + strconv.Itoa(k.Bucket)
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)).String()
}

// round2 rounds to two decimals, as the figures are stored.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

func ptr[T any](v T) *T { return &v }
