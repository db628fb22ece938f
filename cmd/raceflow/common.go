package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/migrations"
	"github.com/raceflow/raceflow/stages/partitions"
)

// errNoDatabase is returned by commands that need DATABASE_URL when it is unset.
var errNoDatabase = errors.New("DATABASE_URL is not set (e.g. postgres://127.0.0.1:5432/raceflow)")

// parseConfig loads the environment, binds the config flags (plus any the
// command added to fs), parses args and validates.
func parseConfig(a *app, fs *flag.FlagSet, args []string) (config.Config, error) {
	cfg, err := config.Load(a.getenv)
	if err != nil {
		return cfg, err
	}
	cfg.RegisterFlags(fs)
	fs.SetOutput(a.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	return cfg, cfg.Validate()
}

// openPool connects to cfg.DatabaseURL with the configured pool size and
// checks that the server answers.
func openPool(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	if cfg.DatabaseURL == "" {
		return nil, errNoDatabase
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %s", config.RedactDSN(err.Error()))
	}
	pc.MaxConns = int32(cfg.DBMaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", config.RedactDSN(cfg.DatabaseURL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", config.RedactDSN(cfg.DatabaseURL), err)
	}
	return pool, nil
}

// openSchema connects, migrates the schema to the latest version and makes
// sure today's history partitions exist: what every command that writes
// needs before it starts.
func openSchema(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := migrations.Up(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	pm, err := partitions.New(pool, partitions.Config{DaysBack: 1, DaysAhead: 2, Retention: cfg.HistoryRetention})
	if err == nil {
		err = pm.Ensure(ctx, time.Now())
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// newLogger builds the process logger: JSON in production, text on a terminal.
func newLogger(cfg config.Config, w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	if lvl, err := logrus.ParseLevel(cfg.LogLevel); err == nil {
		l.SetLevel(lvl)
	}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return l
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// flowConfig is the flow configuration the settings ask for.
func flowConfig(cfg config.Config) flows.Config {
	f := flows.DefaultConfig()
	f.Backend = cfg.Backend
	f.Shards = cfg.Shards
	f.Namespace = cfg.Namespace
	f.Retention = cfg.Retention
	f.NATS.URL = cfg.NATSURL
	f.NATS.AckWait = cfg.NATSAckWait
	return f
}
