// Package migrations embeds raceflow's versioned SQL migrations and applies
// them with goose, keeping a ledger in the raceflow_schema_migrations table.
// A PostgreSQL session advisory lock stops two processes migrating at once.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var embedded embed.FS

// LedgerTable records which migrations are applied.
const LedgerTable = "raceflow_schema_migrations"

// Migrator applies the embedded migrations to one database.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// Applied describes one migration run by Up or Down.
type Applied struct {
	Version  int64
	Name     string
	Duration time.Duration
}

// Status is one migration and whether it is applied.
type Status struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// New prepares a migrator on the pool's database. Close it when done.
func New(pool *pgxpool.Pool) (*Migrator, error) {
	sqlFS, err := fs.Sub(embedded, "sql")
	if err != nil {
		return nil, fmt.Errorf("migrations: embedded files: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations: locker: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, sqlFS,
		goose.WithTableName(LedgerTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close releases the migrator's connection handle (not the pool).
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration; running it again is a no-op.
func (m *Migrator) Up(ctx context.Context) ([]Applied, error) {
	res, err := m.provider.Up(ctx)
	if err != nil {
		return applied(res), fmt.Errorf("migrate up: %w", err)
	}
	return applied(res), nil
}

// UpTo applies the pending migrations up to and including version, so a
// test can build an older schema and check the upgrade from it.
func (m *Migrator) UpTo(ctx context.Context, version int64) ([]Applied, error) {
	res, err := m.provider.UpTo(ctx, version)
	if err != nil {
		return applied(res), fmt.Errorf("migrate up to %d: %w", version, err)
	}
	return applied(res), nil
}

// Down rolls back every applied migration, removing the schema.
func (m *Migrator) Down(ctx context.Context) ([]Applied, error) {
	res, err := m.provider.DownTo(ctx, 0)
	if err != nil && !errors.Is(err, goose.ErrNoNextVersion) {
		return applied(res), fmt.Errorf("migrate down: %w", err)
	}
	return applied(res), nil
}

// Status lists every known migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]Status, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	out := make([]Status, 0, len(st))
	for _, s := range st {
		out = append(out, Status{
			Version:   s.Source.Version,
			Name:      s.Source.Path,
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// Version is the highest applied migration, 0 for an empty database.
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	v, err := m.provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate version: %w", err)
	}
	return v, nil
}

// Up is a convenience that migrates the pool's database to the latest version.
func Up(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := New(pool)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Up(ctx)
	return err
}

func applied(res []*goose.MigrationResult) []Applied {
	out := make([]Applied, 0, len(res))
	for _, r := range res {
		if r == nil || r.Source == nil {
			continue
		}
		out = append(out, Applied{Version: r.Source.Version, Name: r.Source.Path, Duration: r.Duration})
	}
	return out
}
