// Package config holds raceflow's typed configuration: defaults, loading from
// environment variables, flag overrides and validation. The same variable
// names are used by every command.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/mail"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Message backends (RACEFLOW_PUBSUB): the names the driver registry maps to
// a driver.
const (
	BackendPostgres = "postgres"
	BackendMemory   = "memory"
	BackendNATS     = "nats"
)

// Backends lists every backend name.
func Backends() []string { return []string{BackendPostgres, BackendNATS, BackendMemory} }

// Defaults every package shares: the one place each is decided.
const (
	// DefaultNamespace prefixes the topics of the flow that run, process,
	// replay and poison share unless told otherwise.
	DefaultNamespace = "race"
	// DefaultShards is how many topics each stage is split into.
	DefaultShards = 4
	// DefaultRetention is how long raw fetches are kept for replay.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultHistoryRetention is how long daily history partitions are kept.
	DefaultHistoryRetention = 30 * 24 * time.Hour
	// DefaultFallbackPoll is how often an idle postgres subscription looks
	// for work it was not woken for.
	DefaultFallbackPoll = time.Second
	// DefaultFetchConcurrency is how many fetches run at once.
	DefaultFetchConcurrency = 64
	// DefaultWriteConcurrency is how many polls of different races one
	// shard writes at once.
	DefaultWriteConcurrency = 4
	// MaxWriteConcurrency bounds WriteConcurrency: each write holds a
	// database connection.
	MaxWriteConcurrency = 64
	// DefaultWriteGroup is how many polls written at the same time may
	// share one transaction (group commit).
	DefaultWriteGroup = 16
	// MaxWriteGroup bounds WriteGroup.
	MaxWriteGroup = 256
	// DefaultWriteGroupsInFlight is how many of those transactions write
	// at once: one lets the next group gather while one writes, and gave
	// the least database CPU per poll (docs/BENCHMARKS.md).
	DefaultWriteGroupsInFlight = 1
	// DefaultWriteGroupWait bounds how long a poll waits for a write
	// transaction in flight before it writes alone: far above a group's
	// write (milliseconds), far below a write stuck on a lock.
	DefaultWriteGroupWait = 100 * time.Millisecond
	// DefaultWriteGroupLockWait bounds how long a group's write waits on
	// a row lock before its polls write alone: far above the
	// waits of concurrent writes (milliseconds), far below a transaction
	// holding a race's rows (a replay, an operator's session).
	DefaultWriteGroupLockWait = 100 * time.Millisecond
)

// ValidNamespace is the rule for a flow's namespace: it becomes part of
// table and stream names, so only lower-case letters, digits, _ and -.
func ValidNamespace(ns string) error {
	if ns == "" || len(ns) > 32 || strings.ContainsFunc(ns, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("namespace %q must be 1 to 32 lower-case letters, digits, _ or -", ns)
	}
	return nil
}

// DefaultAPIURL is the NZ TAB Affiliates API; request paths are relative to it,
// so it must include /affiliates/v1.
const DefaultAPIURL = "https://api.tab.co.nz/affiliates/v1"

// Config is everything a raceflow process can be told. Zero values are never
// used directly: start from Default() or Load().
type Config struct {
	DatabaseURL      string        // DATABASE_URL; empty means "start a private server" where a command supports it
	APIURL           string        // NZTAB_API_URL
	FromEmail        string        // NZTAB_FROM_EMAIL, sent as the From header
	PartnerName      string        // NZTAB_PARTNER_NAME, sent as X-Partner
	PartnerID        string        // NZTAB_PARTNER_ID, sent as X-Partner-ID
	FetchTimeout     time.Duration // NZTAB_TIMEOUT, per HTTP attempt
	Backend          string        // RACEFLOW_PUBSUB: the message backend, postgres | memory | nats
	NATSURL          string        // NATS_URL
	NATSAckWait      time.Duration // RACEFLOW_NATS_ACK_WAIT, how long a dead instance's message waits before another instance gets it
	FallbackPoll     time.Duration // RACEFLOW_FALLBACK_POLL, how often an idle postgres subscription looks for work it was not woken for
	ListenURL        string        // RACEFLOW_LISTEN_DATABASE_URL, a direct connection for LISTEN when DATABASE_URL goes through a pooler
	FetchConcurrency int           // RACEFLOW_FETCH_CONCURRENCY, fetches at once across the shards
	WriteConcurrency int           // RACEFLOW_WRITE_CONCURRENCY, polls of different races a shard writes at once
	WriteGroup       int           // RACEFLOW_WRITE_GROUP, polls written at once that may share a transaction (1: none)
	Namespace        string        // RACEFLOW_NAMESPACE, the topic prefix of the flow run, process, replay and poison share; separate flows on one database or NATS server need distinct ones
	HTTPAddr         string        // RACEFLOW_HTTP_ADDR, metrics and health
	Shards           int           // RACEFLOW_SHARDS, topic shards per stage
	DBMaxConns       int           // RACEFLOW_DB_MAX_CONNS, pgx pool size
	Retention        time.Duration // RACEFLOW_RETENTION, how long race.fetched is kept
	HistoryRetention time.Duration // RACEFLOW_HISTORY_RETENTION, how long history partitions are kept
	LogLevel         string        // LOG_LEVEL: trace | debug | info | warn | error
	LogFormat        string        // LOG_FORMAT: auto | text | json
	Alerts           AlertRules    // RACEFLOW_ALERT_*: the late-money alert rules' thresholds
	AlertWebhookURL  string        // RACEFLOW_ALERT_WEBHOOK_URL, where alerts are posted; empty: nowhere
}

// DefaultDBMaxConns is the pool size when none is set: four connections
// per CPU this process may use, at least 8. More connections than the
// database server has cores to run them do not add throughput but contend:
// at 50 polls in flight on 2 cores, a pool of 8 did 1.4 times the polls per
// second of a pool of 40, each poll costing PostgreSQL 40 % less CPU
// (docs/BENCHMARKS.md). It assumes the server is about this machine's
// size; set RACEFLOW_DB_MAX_CONNS for one that is not.
func DefaultDBMaxConns() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		APIURL:           DefaultAPIURL,
		FromEmail:        "raceflow@example.invalid",
		PartnerName:      "raceflow",
		PartnerID:        "raceflow",
		FetchTimeout:     5 * time.Second,
		Backend:          BackendPostgres,
		NATSURL:          "nats://127.0.0.1:4222",
		NATSAckWait:      5 * time.Second,
		FallbackPoll:     DefaultFallbackPoll,
		FetchConcurrency: DefaultFetchConcurrency,
		WriteConcurrency: DefaultWriteConcurrency,
		WriteGroup:       DefaultWriteGroup,
		Namespace:        DefaultNamespace,
		HTTPAddr:         ":9090",
		Shards:           DefaultShards,
		DBMaxConns:       DefaultDBMaxConns(),
		Retention:        DefaultRetention,
		HistoryRetention: DefaultHistoryRetention,
		LogLevel:         "info",
		LogFormat:        "auto",
		Alerts:           DefaultAlertRules(),
	}
}

// FieldError says which variable is wrong and why.
type FieldError struct {
	Var    string
	Value  string // already redacted where secret
	Reason string
	// Flag is the flag (--shards) that set the value, when it came from the
	// command line rather than the environment: a usage error.
	Flag string
}

func (e *FieldError) Error() string {
	name := e.Var
	if e.Flag != "" {
		name = e.Flag
	}
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", name, e.Reason)
	}
	return fmt.Sprintf("%s=%q: %s", name, e.Value, e.Reason)
}

// Load reads the environment through getenv over the defaults. It reports
// unparsable values; call Validate for the semantic checks.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	var errs []error
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		d, err := ParseDuration(v)
		if err != nil {
			errs = append(errs, &FieldError{Var: name, Value: v, Reason: "not a duration (e.g. 5s, 30m, 7d): " + err.Error()})
			return
		}
		*dst = d
	}
	num := func(name string, dst *int) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, &FieldError{Var: name, Value: v, Reason: "not an integer"})
			return
		}
		*dst = n
	}
	flt := func(name string, dst *float64) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, &FieldError{Var: name, Value: v, Reason: "not a number"})
			return
		}
		*dst = f
	}
	str("DATABASE_URL", &c.DatabaseURL)
	str("NZTAB_API_URL", &c.APIURL)
	str("NZTAB_FROM_EMAIL", &c.FromEmail)
	str("NZTAB_PARTNER_NAME", &c.PartnerName)
	str("NZTAB_PARTNER_ID", &c.PartnerID)
	dur("NZTAB_TIMEOUT", &c.FetchTimeout)
	str("RACEFLOW_PUBSUB", &c.Backend)
	str("NATS_URL", &c.NATSURL)
	dur("RACEFLOW_NATS_ACK_WAIT", &c.NATSAckWait)
	dur("RACEFLOW_FALLBACK_POLL", &c.FallbackPoll)
	str("RACEFLOW_LISTEN_DATABASE_URL", &c.ListenURL)
	num("RACEFLOW_FETCH_CONCURRENCY", &c.FetchConcurrency)
	num("RACEFLOW_WRITE_CONCURRENCY", &c.WriteConcurrency)
	num("RACEFLOW_WRITE_GROUP", &c.WriteGroup)
	str("RACEFLOW_NAMESPACE", &c.Namespace)
	str("RACEFLOW_HTTP_ADDR", &c.HTTPAddr)
	num("RACEFLOW_SHARDS", &c.Shards)
	num("RACEFLOW_DB_MAX_CONNS", &c.DBMaxConns)
	dur("RACEFLOW_RETENTION", &c.Retention)
	dur("RACEFLOW_HISTORY_RETENTION", &c.HistoryRetention)
	str("LOG_LEVEL", &c.LogLevel)
	str("LOG_FORMAT", &c.LogFormat)
	c.loadAlerts(str, num, flt)
	return c, errors.Join(errs...)
}

// Validate checks every value and names the variable of each one that is bad.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, value, reason string) {
		errs = append(errs, &FieldError{Var: name, Value: value, Reason: reason})
	}
	if c.DatabaseURL != "" {
		if err := checkDatabaseURL(c.DatabaseURL); err != nil {
			bad("DATABASE_URL", RedactDSN(c.DatabaseURL), err.Error())
		}
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("NZTAB_API_URL", c.APIURL, "must be an absolute http(s) URL such as "+DefaultAPIURL)
	}
	if _, err := mail.ParseAddress(c.FromEmail); err != nil {
		bad("NZTAB_FROM_EMAIL", c.FromEmail, "must be an email address (TAB asks callers to identify themselves)")
	}
	if strings.TrimSpace(c.PartnerName) == "" {
		bad("NZTAB_PARTNER_NAME", "", "must not be empty")
	}
	if strings.TrimSpace(c.PartnerID) == "" {
		bad("NZTAB_PARTNER_ID", "", "must not be empty")
	}
	if c.FetchTimeout <= 0 || c.FetchTimeout > 2*time.Minute {
		bad("NZTAB_TIMEOUT", c.FetchTimeout.String(), "must be between 1ms and 2m")
	}
	switch c.Backend {
	case BackendPostgres, BackendMemory, BackendNATS:
	default:
		bad("RACEFLOW_PUBSUB", c.Backend, "must be postgres, memory or nats")
	}
	if c.Backend == BackendNATS {
		if u, err := url.Parse(c.NATSURL); err != nil || u.Host == "" {
			bad("NATS_URL", RedactDSN(c.NATSURL), "must be a URL such as nats://127.0.0.1:4222")
		}
		if c.NATSAckWait < 300*time.Millisecond || c.NATSAckWait > 10*time.Minute {
			bad("RACEFLOW_NATS_ACK_WAIT", c.NATSAckWait.String(), "must be between 300ms and 10m")
		}
	}
	if c.FallbackPoll < 10*time.Millisecond || c.FallbackPoll > time.Minute {
		bad("RACEFLOW_FALLBACK_POLL", c.FallbackPoll.String(), "must be between 10ms and 1m")
	}
	if c.ListenURL != "" {
		if err := checkDatabaseURL(c.ListenURL); err != nil {
			bad("RACEFLOW_LISTEN_DATABASE_URL", RedactDSN(c.ListenURL), err.Error())
		}
	}
	if c.FetchConcurrency < 1 || c.FetchConcurrency > 1024 {
		bad("RACEFLOW_FETCH_CONCURRENCY", strconv.Itoa(c.FetchConcurrency), "must be between 1 and 1024")
	}
	if c.WriteConcurrency < 1 || c.WriteConcurrency > MaxWriteConcurrency {
		bad("RACEFLOW_WRITE_CONCURRENCY", strconv.Itoa(c.WriteConcurrency), fmt.Sprintf("must be between 1 and %d", MaxWriteConcurrency))
	}
	if c.WriteGroup < 1 || c.WriteGroup > MaxWriteGroup {
		bad("RACEFLOW_WRITE_GROUP", strconv.Itoa(c.WriteGroup), fmt.Sprintf("must be between 1 and %d", MaxWriteGroup))
	}
	if ValidNamespace(c.Namespace) != nil {
		bad("RACEFLOW_NAMESPACE", c.Namespace, "must be 1 to 32 lower-case letters, digits, _ or -")
	}
	if _, port, found := strings.Cut(c.HTTPAddr, ":"); !found || port == "" {
		bad("RACEFLOW_HTTP_ADDR", c.HTTPAddr, "must be host:port or :port")
	}
	if c.Shards < 1 || c.Shards > 256 {
		bad("RACEFLOW_SHARDS", strconv.Itoa(c.Shards), "must be between 1 and 256")
	}
	if c.DBMaxConns < 2 || c.DBMaxConns > 1000 {
		bad("RACEFLOW_DB_MAX_CONNS", strconv.Itoa(c.DBMaxConns), "must be between 2 and 1000")
	}
	if c.Retention < MinRetention || c.Retention > MaxRetention {
		bad("RACEFLOW_RETENTION", c.Retention.String(), "must be between 1h and 366d")
	}
	if c.HistoryRetention < MinHistoryRetention || c.HistoryRetention > MaxHistoryRetention {
		bad("RACEFLOW_HISTORY_RETENTION", c.HistoryRetention.String(), "must be between 1d and 3660d")
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		bad("LOG_LEVEL", c.LogLevel, "must be trace, debug, info, warn or error")
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		bad("LOG_FORMAT", c.LogFormat, "must be auto, text or json")
	}
	if err := c.Alerts.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if err := CheckWebhookURL(c.AlertWebhookURL); err != nil {
		bad("RACEFLOW_ALERT_WEBHOOK_URL", RedactURL(c.AlertWebhookURL), err.Error())
	}
	return errors.Join(errs...)
}

func checkDatabaseURL(s string) error {
	isURL := strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
	if !isURL && !strings.Contains(s, "=") {
		return errors.New("must be postgres://user@host:port/db or a key=value DSN")
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		return errors.New(parseReason(err))
	}
	return nil
}

// parseReason is what pgconn found wrong with a connection string, without
// the string itself: pgconn redacts it only on a best-effort basis.
func parseReason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "`: "); ok {
		msg = after
	}
	return msg
}

// String renders the configuration for logs with secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("database_url=%s listen_database_url=%s api_url=%s pubsub=%s http_addr=%s shards=%d fetch_concurrency=%d write_concurrency=%d write_group=%d fallback_poll=%s db_max_conns=%d fetch_timeout=%s retention=%s history_retention=%s log_level=%s log_format=%s alert_webhook_url=%s",
		RedactDSN(c.DatabaseURL), RedactDSN(c.ListenURL), c.APIURL, c.Backend, c.HTTPAddr, c.Shards, c.FetchConcurrency,
		c.WriteConcurrency, c.WriteGroup, c.FallbackPoll, c.DBMaxConns, c.FetchTimeout, c.Retention, c.HistoryRetention, c.LogLevel, c.LogFormat,
		RedactURL(c.AlertWebhookURL))
}

var (
	dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)
	urlPassword = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
)

// RedactDSN hides the password of a URL or key=value connection string.
func RedactDSN(s string) string {
	if s == "" {
		return ""
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			// Still say which URL it was, without what may be its password.
			return dsnPassword.ReplaceAllString(urlPassword.ReplaceAllString(s, "${1}xxxxx@"), "${1}xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
}

// MaxDurationDays is the largest whole-day duration ParseDuration accepts:
// the most days a time.Duration (int64 nanoseconds, about 292 years) holds.
const MaxDurationDays = int64(math.MaxInt64 / int64(24*time.Hour))

// Retention bounds Validate enforces. A minimum keeps a typo from deleting
// what the flow still needs; a maximum catches a unit mistake (7000d for 7d)
// that would keep data forever while looking like a setting.
const (
	MinRetention        = time.Hour
	MaxRetention        = 366 * 24 * time.Hour
	MinHistoryRetention = 24 * time.Hour
	MaxHistoryRetention = 10 * 366 * 24 * time.Hour
)

// ParseDuration accepts Go durations plus a whole-day suffix "d" (7d). A
// value a time.Duration cannot hold is an error, never a wrapped-around
// duration (213505d once read as 24h25m).
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) || err == nil && n > MaxDurationDays:
			return 0, fmt.Errorf("duration %q is out of range: at most %dd", s, MaxDurationDays)
		case err != nil || n < 0:
			return 0, fmt.Errorf("invalid duration %q: want a whole number of days such as 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
