// Package status is the read model of the live status page: every figure
// its three pages show (today's races, one race, the pipeline's health),
// read from PostgreSQL and from the running flow's own state, each page in
// one call with a deadline.
//
// The queries are fixed SQL with parameters (never text from a request), and
// each walks an index; history is read only for one race and within a few
// daily partitions (status_test.go proves both with EXPLAIN). The flow's
// state comes through small interfaces (flowstate.go) and a Recorder of poll
// results, so the package depends on no backend.
package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Config shapes the read model. Start from DefaultConfig.
type Config struct {
	// QueryTimeout bounds one page's reads (database and flow state), so a
	// slow or stopped database is an error, never a hang.
	QueryTimeout time.Duration
	// Now is the flow's clock (simulated in the demo): "today", ages and
	// times to start are reckoned on it.
	Now func() time.Time
	// RecentPoison is how many poison messages the pipeline page lists.
	RecentPoison int
	// FigureSpan is the real time the pipeline's latency and throughput
	// figures cover.
	FigureSpan time.Duration
	// ChartPolls is the least number of polls the hold chart shows: it
	// covers the last hour before the start, or this many polls when the
	// race is further out.
	ChartPolls int
	// StoredPolls is how many of a race's stored polls its page lists.
	StoredPolls int
	// DayAlerts is how many of the day's latest alerts "/" lists.
	DayAlerts int
}

// DefaultConfig: a 3 s deadline, the wall clock, 10 poison messages,
// figures over 5 minutes, at least 40 polls charted, 10 stored polls and
// the day's latest 50 alerts listed.
func DefaultConfig() Config {
	return Config{QueryTimeout: 3 * time.Second, Now: time.Now, RecentPoison: 10, FigureSpan: 5 * time.Minute,
		ChartPolls: 40, StoredPolls: 10, DayAlerts: 50}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.QueryTimeout <= 0 || c.FigureSpan <= 0 {
		errs = append(errs, fmt.Errorf("status: QueryTimeout %s and FigureSpan %s must be positive", c.QueryTimeout, c.FigureSpan))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("status: Now is required"))
	}
	if c.RecentPoison < 1 || c.ChartPolls < 1 || c.StoredPolls < 1 || c.DayAlerts < 1 {
		errs = append(errs, fmt.Errorf("status: RecentPoison %d, ChartPolls %d, StoredPolls %d and DayAlerts %d must be at least 1",
			c.RecentPoison, c.ChartPolls, c.StoredPolls, c.DayAlerts))
	}
	return errors.Join(errs...)
}

// DB is what the read model queries; *pgxpool.Pool implements it.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Deps are what the read model reads. DB and Recorder are required; a nil
// flow-state dependency is shown as not available.
type Deps struct {
	DB       DB
	Recorder *Recorder
	Schedule Schedule
	Queues   Queues
	Poison   Poison
	API      APIStats
	Pool     PoolStats
	Leader   Leader
}

// Errors a caller maps to a response.
var (
	// ErrMalformedID: the id does not have the shape of an id (HTTP 400).
	ErrMalformedID = errors.New("status: malformed id")
	// ErrRaceNotFound: no race has the id (HTTP 404).
	ErrRaceNotFound = errors.New("status: race not found")
	// ErrUnavailable: the database (or the flow) did not answer in time or
	// failed (HTTP 503); it wraps the cause.
	ErrUnavailable = errors.New("status: data unavailable")
)

// Model is the read model.
type Model struct {
	cfg  Config
	deps Deps
}

// New returns the read model; cfg is validated.
func New(cfg Config, deps Deps) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.DB == nil || deps.Recorder == nil {
		return nil, errors.New("status: Deps needs DB and Recorder")
	}
	return &Model{cfg: cfg, deps: deps}, nil
}

// ValidRaceID reports whether id has the shape of an NZ TAB id: a UUID,
// 8-4-4-4-12 hex digits.
func ValidRaceID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ParsePoisonID parses a poison message id: a positive integer.
func ParsePoisonID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || len(s) > 19 {
		return 0, fmt.Errorf("%w: poison message id %q", ErrMalformedID, truncate(s, 40))
	}
	return id, nil
}

// unavailable wraps a read failure; a deadline says so plainly.
func unavailable(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return fmt.Errorf("%w: %s: no answer in time: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// seconds is d in seconds, for JSON.
func seconds(d time.Duration) float64 { return d.Seconds() }
