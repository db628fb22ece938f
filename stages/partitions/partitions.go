// Package partitions manages the daily partitions of the history tables:
// one per NZ day, bounded by NZ midnights written as explicit instants, so
// the bounds never depend on a session's TimeZone. DDL runs in its own short
// transactions, never inside a data transaction.
package partitions

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/stages/nzday"
)

// Tables returns the partitioned history tables.
func Tables() []string { return []string{"money_flow_history", "odds_history"} }

// Config says which days must have partitions and when they are dropped.
type Config struct {
	DaysBack  int           // partitions kept ready for days before today (replays of recent polls)
	DaysAhead int           // partitions created ahead of need
	Retention time.Duration // partitions whose whole day ended longer ago than this are dropped
}

// DefaultConfig keeps yesterday, today and two days ahead, and 30 days of history.
func DefaultConfig() Config {
	return Config{DaysBack: 1, DaysAhead: 2, Retention: 30 * 24 * time.Hour}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DaysBack < 0 || c.DaysBack > 366 {
		errs = append(errs, fmt.Errorf("partitions: DaysBack %d must be within 0..366", c.DaysBack))
	}
	if c.DaysAhead < 0 || c.DaysAhead > 366 {
		errs = append(errs, fmt.Errorf("partitions: DaysAhead %d must be within 0..366", c.DaysAhead))
	}
	if c.Retention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("partitions: Retention %s must be at least 24h", c.Retention))
	}
	return errors.Join(errs...)
}

// Partition is one daily partition of a history table.
type Partition struct {
	Table string
	Name  string
	Day   nzday.Day
	From  time.Time // inclusive
	To    time.Time // exclusive
}

// Manager creates and drops partitions.
type Manager struct {
	pool *pgxpool.Pool
	cfg  Config
}

// New returns a manager; cfg is validated.
func New(pool *pgxpool.Pool, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Manager{pool: pool, cfg: cfg}, nil
}

// Name is the partition of table for day, e.g. money_flow_history_p20250717.
func Name(table string, day nzday.Day) string { return table + "_p" + day.Compact() }

// For returns the partition of table that holds day.
func For(table string, day nzday.Day) Partition {
	return Partition{Table: table, Name: Name(table, day), Day: day, From: day.Start(), To: day.End()}
}

// boundLiteral writes an instant with its explicit UTC offset, which
// PostgreSQL reads the same whatever the session TimeZone.
func boundLiteral(t time.Time) string { return t.Format("2006-01-02 15:04:05-07:00") }

// Ensure creates the partitions from DaysBack before now's NZ day to
// DaysAhead after it. It is idempotent and safe to run concurrently.
func (m *Manager) Ensure(ctx context.Context, now time.Time) error {
	today := nzday.Of(now)
	return m.EnsureDays(ctx, today.AddDays(-m.cfg.DaysBack), today.AddDays(m.cfg.DaysAhead))
}

// EnsureRange creates partitions covering every instant in [from, to].
func (m *Manager) EnsureRange(ctx context.Context, from, to time.Time) error {
	return m.EnsureDays(ctx, nzday.Of(from), nzday.Of(to))
}

// EnsureDays creates the partitions of every day from first to last inclusive.
func (m *Manager) EnsureDays(ctx context.Context, first, last nzday.Day) error {
	for d := first; !last.Before(d); d = d.AddDays(1) {
		for _, table := range Tables() {
			if err := m.create(ctx, For(table, d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockKey serialises partition DDL across processes: CREATE TABLE IF NOT
// EXISTS can still fail with a duplicate when two run at once.
const lockKey = 7207_2024_11

func (m *Manager) create(ctx context.Context, p Partition) error {
	sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')`,
		pgx.Identifier{p.Name}.Sanitize(), pgx.Identifier{p.Table}.Sanitize(), boundLiteral(p.From), boundLiteral(p.To))
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		return fmt.Errorf("partitions: create %s: %w", p.Name, err)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^(.+)_p(\d{8})$`)

// List returns the existing partitions of the history tables, oldest first.
func (m *Manager) List(ctx context.Context) ([]Partition, error) {
	rows, err := m.pool.Query(ctx, `
		SELECT parent.relname, child.relname
		FROM pg_inherits i
		JOIN pg_class parent ON parent.oid = i.inhparent
		JOIN pg_class child ON child.oid = i.inhrelid
		JOIN pg_namespace n ON n.oid = child.relnamespace
		WHERE parent.relname = ANY($1) AND n.nspname = current_schema()`, Tables())
	if err != nil {
		return nil, fmt.Errorf("partitions: list: %w", err)
	}
	var out []Partition
	for rows.Next() {
		var table, name string
		if err := rows.Scan(&table, &name); err != nil {
			return nil, fmt.Errorf("partitions: list: %w", err)
		}
		mm := nameRE.FindStringSubmatch(name)
		if mm == nil || mm[1] != table {
			continue // not ours: leave it alone
		}
		day, err := nzday.Parse(mm[2][:4] + "-" + mm[2][4:6] + "-" + mm[2][6:])
		if err != nil {
			continue
		}
		out = append(out, For(table, day))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("partitions: list: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Day != out[j].Day {
			return out[i].Day.Before(out[j].Day)
		}
		return out[i].Table < out[j].Table
	})
	return out, nil
}

// DropExpired drops every partition whose day ended more than Retention
// before now, and returns the names it dropped.
func (m *Manager) DropExpired(ctx context.Context, now time.Time) ([]string, error) {
	parts, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-m.cfg.Retention)
	var dropped []string
	for _, p := range parts {
		if p.To.After(cutoff) {
			continue
		}
		err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{p.Name}.Sanitize())
			return err
		})
		if err != nil {
			return dropped, fmt.Errorf("partitions: drop %s: %w", p.Name, err)
		}
		dropped = append(dropped, p.Name)
	}
	return dropped, nil
}
