// Package pgtest gives tests a fresh, migrated PostgreSQL database of their
// own and drops it afterwards, so tests never share state through a database.
//
// It connects with TEST_DATABASE_URL, else DATABASE_URL, else
// postgres://127.0.0.1:5432/postgres; when none answers it starts a private
// server with pgembed (call pgtest.Main from TestMain so it is stopped).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/raceflow/raceflow/internal/pgembed"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/partitions"
)

// DB is one test's private database.
type DB struct {
	// Pool is connected to the database; closed at cleanup.
	Pool *pgxpool.Pool
	// URL connects to the database.
	URL string
	// Name of the database.
	Name string
}

type server struct {
	adminURL string
	embedded *pgembed.Server
	err      error
}

var (
	once   sync.Once
	shared server
)

// Main runs the package's tests, stops a private server if one was started
// and exits with the tests' code.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain with its own clean-up to do before it exits:
// it returns the tests' exit code instead of exiting.
func Run(m *testing.M) int {
	code := m.Run()
	if shared.embedded != nil {
		_ = shared.embedded.Stop()
	}
	return code
}

// AdminURL returns a URL of a server the tests may create databases on,
// starting a private one when nothing answers.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		for _, cand := range []string{os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"), "postgres://127.0.0.1:5432/postgres?sslmode=disable"} {
			if cand == "" {
				continue
			}
			if ping(ctx, cand) == nil {
				shared.adminURL = cand
				return
			}
		}
		srv, err := pgembed.Start(ctx, pgembed.Config{})
		if err != nil {
			shared.err = fmt.Errorf("pgtest: no PostgreSQL answers and a private one could not start: %w", err)
			return
		}
		shared.embedded, shared.adminURL = srv, srv.URL()
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.adminURL
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// NewEmpty creates an empty database (not migrated) and drops it when the
// test ends. It returns the database's URL.
func NewEmpty(tb testing.TB) (name, dsn string) {
	tb.Helper()
	admin := AdminURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name = "raceflow_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("pgtest: admin URL: %v", err)
	}
	u.Path = "/" + name
	return name, u.String()
}

// New creates a fresh database, migrates it, ensures history partitions
// around now, and drops it when the test ends.
func New(tb testing.TB) *DB {
	tb.Helper()
	name, dsn := NewEmpty(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect %s: %v", name, err)
	}
	tb.Cleanup(pool.Close) // runs before the drop registered earlier
	if err := migrations.Up(ctx, pool); err != nil {
		tb.Fatalf("pgtest: migrate: %v", err)
	}
	pm, err := partitions.New(pool, partitions.Config{DaysBack: 2, DaysAhead: 2, Retention: 30 * 24 * time.Hour})
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := pm.Ensure(ctx, time.Now()); err != nil {
		tb.Fatalf("pgtest: partitions: %v", err)
	}
	return &DB{Pool: pool, URL: dsn, Name: name}
}
