package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Flags selects the configuration flags a command takes, so that each
// command's help lists only what it uses.
type Flags uint

// The configuration flags, by what they configure.
const (
	// FlagDatabase is --database-url.
	FlagDatabase Flags = 1 << iota
	// FlagAPI is --api-url.
	FlagAPI
	// FlagBackend is --backend and --nats-url.
	FlagBackend
	// FlagNamespace is --namespace.
	FlagNamespace
	// FlagShards is --shards.
	FlagShards
	// FlagHTTP is --http-addr.
	FlagHTTP
	// FlagLog is --log-level and --log-format.
	FlagLog
	// FlagAlertRules is the alert rules' thresholds (--alert-*).
	FlagAlertRules
	// FlagAlertWebhook is --alert-webhook-url.
	FlagAlertWebhook
)

// FlagAlerts is the alert rules and the webhook.
const FlagAlerts = FlagAlertRules | FlagAlertWebhook

// flagSpec is one configuration flag: the variable it overrides and the
// field it sets.
type flagSpec struct {
	group  Flags
	name   string
	env    string
	usage  string
	redact func(string) string // shows its default without secrets; nil: as it is
	str    func(*Config) *string
	num    func(*Config) *int
	flt    func(*Config) *float64
}

// flagSpecs is the one table of configuration flags.
func flagSpecs() []flagSpec {
	return []flagSpec{
		{group: FlagDatabase, name: "database-url", env: "DATABASE_URL", redact: RedactDSN,
			usage: "PostgreSQL URL or key=value DSN", str: func(c *Config) *string { return &c.DatabaseURL }},
		{group: FlagAPI, name: "api-url", env: "NZTAB_API_URL",
			usage: "NZ TAB API base URL, including /affiliates/v1", str: func(c *Config) *string { return &c.APIURL }},
		{group: FlagBackend, name: "backend", env: "RACEFLOW_PUBSUB",
			usage: "message backend: " + strings.Join(Backends(), " | "), str: func(c *Config) *string { return &c.Backend }},
		{group: FlagBackend, name: "nats-url", env: "NATS_URL", redact: RedactDSN,
			usage: "NATS server for --backend nats", str: func(c *Config) *string { return &c.NATSURL }},
		{group: FlagNamespace, name: "namespace", env: "RACEFLOW_NAMESPACE",
			usage: "the flow's topic namespace: run, process, replay and poison share it", str: func(c *Config) *string { return &c.Namespace }},
		{group: FlagShards, name: "shards", env: "RACEFLOW_SHARDS",
			usage: "topic shards per stage", num: func(c *Config) *int { return &c.Shards }},
		{group: FlagHTTP, name: "http-addr", env: "RACEFLOW_HTTP_ADDR",
			usage: "metrics and health listen address", str: func(c *Config) *string { return &c.HTTPAddr }},
		{group: FlagLog, name: "log-level", env: "LOG_LEVEL",
			usage: "trace | debug | info | warn | error", str: func(c *Config) *string { return &c.LogLevel }},
		{group: FlagLog, name: "log-format", env: "LOG_FORMAT",
			usage: "auto | text | json", str: func(c *Config) *string { return &c.LogFormat }},
		{group: FlagAlertWebhook, name: "alert-webhook-url", env: "RACEFLOW_ALERT_WEBHOOK_URL", redact: RedactURL,
			usage: "where alerts are posted as JSON (empty: nowhere)", str: func(c *Config) *string { return &c.AlertWebhookURL }},
		{group: FlagAlertRules, name: "alert-price-minutes", env: "RACEFLOW_ALERT_PRICE_MINUTES",
			usage: "steamers and drifters: window before the start, minutes", num: func(c *Config) *int { return &c.Alerts.PriceMinutes }},
		{group: FlagAlertRules, name: "alert-price-points", env: "RACEFLOW_ALERT_PRICE_POINTS",
			usage: "steamers and drifters: move of the implied win probability, percentage points", flt: func(c *Config) *float64 { return &c.Alerts.PricePoints }},
		{group: FlagAlertRules, name: "alert-price-relative", env: "RACEFLOW_ALERT_PRICE_RELATIVE",
			usage: "steamers and drifters: or relative move, percent", flt: func(c *Config) *float64 { return &c.Alerts.PriceRelative }},
		{group: FlagAlertRules, name: "alert-price-relative-floor", env: "RACEFLOW_ALERT_PRICE_RELATIVE_FLOOR",
			usage: "steamers and drifters: least probability for the relative move, percent", flt: func(c *Config) *float64 { return &c.Alerts.PriceRelativeFloor }},
		{group: FlagAlertRules, name: "alert-late-minutes", env: "RACEFLOW_ALERT_LATE_MINUTES",
			usage: "late money: window before the start, minutes", num: func(c *Config) *int { return &c.Alerts.LateMinutes }},
		{group: FlagAlertRules, name: "alert-late-ratio", env: "RACEFLOW_ALERT_LATE_RATIO",
			usage: "late money: share of a bucket's money over the share of the pool before", flt: func(c *Config) *float64 { return &c.Alerts.LateRatio }},
		{group: FlagAlertRules, name: "alert-late-min-cents", env: "RACEFLOW_ALERT_LATE_MIN_CENTS",
			usage: "late money: least money taken in the bucket, cents", num: func(c *Config) *int { return &c.Alerts.LateMinCents }},
		{group: FlagAlertRules, name: "alert-surge-minutes", env: "RACEFLOW_ALERT_SURGE_MINUTES",
			usage: "pool surge: window before the start, minutes", num: func(c *Config) *int { return &c.Alerts.SurgeMinutes }},
		{group: FlagAlertRules, name: "alert-surge-percent", env: "RACEFLOW_ALERT_SURGE_PERCENT",
			usage: "pool surge: growth of the win pool within a bucket, percent", flt: func(c *Config) *float64 { return &c.Alerts.SurgePercent }},
		{group: FlagAlertRules, name: "alert-surge-min-cents", env: "RACEFLOW_ALERT_SURGE_MIN_CENTS",
			usage: "pool surge: least growth, cents", num: func(c *Config) *int { return &c.Alerts.SurgeMinCents }},
	}
}

// BindFlags binds the selected configuration flags to c on fs. Call it on a
// Config from Load, so each flag's default is what the environment says;
// a flag given on the command line overrides its variable. Defaults that may
// hold a password are shown redacted.
func (c *Config) BindFlags(fs *pflag.FlagSet, which Flags) {
	for _, f := range flagSpecs() {
		if which&f.group == 0 {
			continue
		}
		usage := fmt.Sprintf("%s (env %s)", f.usage, f.env)
		switch {
		case f.num != nil:
			p := f.num(c)
			fs.IntVar(p, f.name, *p, usage)
		case f.flt != nil:
			p := f.flt(c)
			fs.Float64Var(p, f.name, *p, usage)
		default:
			p := f.str(c)
			fs.StringVar(p, f.name, *p, usage)
			if f.redact != nil {
				fs.Lookup(f.name).DefValue = f.redact(*p)
			}
		}
	}
}

// CheckFlags validates c after fs was parsed. A FieldError about a value
// that a flag given on the command line set names that flag (Flag), so a
// caller can tell a usage error from a bad environment.
func (c Config) CheckFlags(fs *pflag.FlagSet) error {
	err := c.Validate()
	if err == nil {
		return nil
	}
	byVar := make(map[string]string)
	for _, f := range flagSpecs() {
		if fl := fs.Lookup(f.name); fl != nil && fl.Changed {
			byVar[f.env] = "--" + f.name
		}
	}
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			fe.Flag = byVar[fe.Var]
		}
	}
	return err
}

// FromFlag reports whether err holds a FieldError about a value given on the
// command line (see CheckFlags).
func FromFlag(err error) bool {
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Flag != "" {
			return true
		}
	}
	return false
}

// unjoin lists the errors errors.Join joined, or err itself.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
