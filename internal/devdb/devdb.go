// Package devdb gives a command that runs on its own (the demo, the
// benchmark) a database to run in: a fresh one on a private PostgreSQL
// server when none is configured, a fresh one on the configured server, or
// the configured database as it is; and removes what it created.
package devdb

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/internal/pgembed"
)

// DB is the database a command runs in.
type DB struct {
	// URL connects to it.
	URL string
	// Private says it lives on a private server that goes with it.
	Private bool
	// Desc says what it is, passwords hidden.
	Desc    string
	cleanup func() error
}

// Close removes what Open created (a private server, a fresh database),
// even when the command was interrupted; a configured database stays.
func (db *DB) Close() error {
	if db.cleanup == nil {
		return nil
	}
	err := db.cleanup()
	db.cleanup = nil
	return err
}

// Open finds the database: with configured empty, a fresh database name on
// a private server; with fresh, a fresh database name on configured's
// server (dropped by Close); else configured itself. say reports slow steps.
func Open(ctx context.Context, configured string, fresh bool, name string, say func(string, ...any)) (*DB, error) {
	switch {
	case configured == "":
		say("starting a private PostgreSQL (DATABASE_URL is unset) ...")
		srv, err := pgembed.Start(ctx, pgembed.Config{})
		if err != nil {
			return nil, err
		}
		// Over the socket: the server is on this machine.
		u, err := create(ctx, srv.SocketURL(), name)
		if err != nil {
			return nil, fmt.Errorf("%w (the private server was stopped: %v)", err, srv.Stop())
		}
		// The server and its data folder go, the database with them.
		return &DB{URL: u, Private: true, Desc: "private PostgreSQL (internal/pgembed), fresh database", cleanup: srv.Stop}, nil
	case fresh:
		u, err := create(ctx, configured, name)
		if err != nil {
			return nil, err
		}
		return &DB{URL: u, Desc: config.RedactDSN(u) + " (fresh, dropped afterwards)",
			cleanup: func() error { return drop(ctx, configured, name) }}, nil
	default:
		return &DB{URL: configured, Desc: config.RedactDSN(configured)}, nil
	}
}

// create makes database name on adminURL's server and returns its URL.
func create(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", config.RedactDSN(adminURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil || u.Scheme == "" {
		// A key=value DSN: the database is one more key, which wins.
		return adminURL + " dbname=" + name, nil
	}
	u.Path = "/" + name
	return u.String(), nil
}

// drop removes a database the command created, even when ctx was
// cancelled (Ctrl-C must not leave it behind).
func drop(ctx context.Context, adminURL, name string) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(dctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(dctx)
	if _, err := conn.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
