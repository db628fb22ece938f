package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// AlertRules are the thresholds of the late-money alert rules
// (stages/alerts), each set by a RACEFLOW_ALERT_* variable. This is the one
// place their defaults and bounds are decided; docs/ALERTS.md gives the
// maths of each rule and how the defaults were tuned against the simulator.
// Windows are whole minutes before the advertised start, like the stored
// time_to_start they are compared with.
type AlertRules struct {
	// PriceMinutes is the window of steamers and drifters
	// (RACEFLOW_ALERT_PRICE_MINUTES): polls fewer minutes than this before
	// the start.
	PriceMinutes int
	// PricePoints is how many percentage points a runner's implied win
	// probability must move (RACEFLOW_ALERT_PRICE_POINTS).
	PricePoints float64
	// PriceRelative is the relative move that fires as well, in percent:
	// the larger probability over the smaller, minus one
	// (RACEFLOW_ALERT_PRICE_RELATIVE).
	PriceRelative float64
	// PriceRelativeFloor is the implied probability, in percent, below which
	// the relative rule does not apply (RACEFLOW_ALERT_PRICE_RELATIVE_FLOOR):
	// a long shot's price moves by a quarter within one step of the price
	// ladder.
	PriceRelativeFloor float64
	// LateMinutes is the window of late money (RACEFLOW_ALERT_LATE_MINUTES).
	LateMinutes int
	// LateRatio is how many times its share of the pool before the bucket a
	// runner's share of the bucket's incremental win money must be
	// (RACEFLOW_ALERT_LATE_RATIO).
	LateRatio float64
	// LateMinCents is the least incremental win money, in cents, a runner
	// must take in the bucket (RACEFLOW_ALERT_LATE_MIN_CENTS), so a thin
	// pool does not fire.
	LateMinCents int
	// SurgeMinutes is the window of pool surges (RACEFLOW_ALERT_SURGE_MINUTES).
	SurgeMinutes int
	// SurgePercent is how many percent the win pool must grow within one
	// bucket (RACEFLOW_ALERT_SURGE_PERCENT).
	SurgePercent float64
	// SurgeMinCents is the least growth, in cents
	// (RACEFLOW_ALERT_SURGE_MIN_CENTS).
	SurgeMinCents int
}

// DefaultAlertRules are the rules' defaults.
func DefaultAlertRules() AlertRules {
	return AlertRules{
		PriceMinutes:       10,
		PricePoints:        30,
		PriceRelative:      200,
		PriceRelativeFloor: 10,
		LateMinutes:        5,
		LateRatio:          2,
		LateMinCents:       1_000_000,
		SurgeMinutes:       10,
		SurgePercent:       50,
		SurgeMinCents:      100_000,
	}
}

// Bounds of the alert rules' settings.
const (
	// MaxAlertMinutes bounds the windows: the rules read this much history
	// before a poll, and the timing buckets are 5 minutes wide up to 60.
	MaxAlertMinutes = 60
	// MaxAlertCents bounds the minimum amounts ($10M).
	MaxAlertCents = 1_000_000_000
)

// Validate checks the thresholds and names the variable of each bad one.
func (r AlertRules) Validate() error {
	var errs []error
	bad := func(name, value, reason string) {
		errs = append(errs, &FieldError{Var: name, Value: value, Reason: reason})
	}
	minutes := func(name string, v int) {
		if v < 1 || v > MaxAlertMinutes {
			bad(name, strconv.Itoa(v), fmt.Sprintf("must be between 1 and %d minutes", MaxAlertMinutes))
		}
	}
	positive := func(name string, v, most float64) {
		if !(v > 0 && v <= most) { // also refuses NaN
			bad(name, strconv.FormatFloat(v, 'g', -1, 64), fmt.Sprintf("must be above 0 and at most %g", most))
		}
	}
	cents := func(name string, v int) {
		if v < 0 || v > MaxAlertCents {
			bad(name, strconv.Itoa(v), fmt.Sprintf("must be between 0 and %d cents", MaxAlertCents))
		}
	}
	minutes("RACEFLOW_ALERT_PRICE_MINUTES", r.PriceMinutes)
	positive("RACEFLOW_ALERT_PRICE_POINTS", r.PricePoints, 100)
	positive("RACEFLOW_ALERT_PRICE_RELATIVE", r.PriceRelative, 10_000)
	if !(r.PriceRelativeFloor >= 0 && r.PriceRelativeFloor <= 100) {
		bad("RACEFLOW_ALERT_PRICE_RELATIVE_FLOOR", strconv.FormatFloat(r.PriceRelativeFloor, 'g', -1, 64), "must be between 0 and 100 percent")
	}
	minutes("RACEFLOW_ALERT_LATE_MINUTES", r.LateMinutes)
	positive("RACEFLOW_ALERT_LATE_RATIO", r.LateRatio, 1_000)
	cents("RACEFLOW_ALERT_LATE_MIN_CENTS", r.LateMinCents)
	minutes("RACEFLOW_ALERT_SURGE_MINUTES", r.SurgeMinutes)
	positive("RACEFLOW_ALERT_SURGE_PERCENT", r.SurgePercent, 10_000)
	cents("RACEFLOW_ALERT_SURGE_MIN_CENTS", r.SurgeMinCents)
	return errors.Join(errs...)
}

// loadAlerts reads the RACEFLOW_ALERT_* variables into c.
func (c *Config) loadAlerts(str func(string, *string), num func(string, *int), flt func(string, *float64)) {
	r := &c.Alerts
	num("RACEFLOW_ALERT_PRICE_MINUTES", &r.PriceMinutes)
	flt("RACEFLOW_ALERT_PRICE_POINTS", &r.PricePoints)
	flt("RACEFLOW_ALERT_PRICE_RELATIVE", &r.PriceRelative)
	flt("RACEFLOW_ALERT_PRICE_RELATIVE_FLOOR", &r.PriceRelativeFloor)
	num("RACEFLOW_ALERT_LATE_MINUTES", &r.LateMinutes)
	flt("RACEFLOW_ALERT_LATE_RATIO", &r.LateRatio)
	num("RACEFLOW_ALERT_LATE_MIN_CENTS", &r.LateMinCents)
	num("RACEFLOW_ALERT_SURGE_MINUTES", &r.SurgeMinutes)
	flt("RACEFLOW_ALERT_SURGE_PERCENT", &r.SurgePercent)
	num("RACEFLOW_ALERT_SURGE_MIN_CENTS", &r.SurgeMinCents)
	str("RACEFLOW_ALERT_WEBHOOK_URL", &c.AlertWebhookURL)
}

// CheckWebhookURL is the rule for RACEFLOW_ALERT_WEBHOOK_URL: empty (no
// webhook) or an absolute http(s) URL.
func CheckWebhookURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an absolute http(s) URL")
	}
	return nil
}

// RedactURL shows only the scheme and host of a URL: a webhook URL often
// carries its secret in the path (chat webhooks) or the query.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "xxxxx"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/xxxxx"
	}
	return out
}
