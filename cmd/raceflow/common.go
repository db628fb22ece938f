package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
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
var errNoDatabase = errors.New("DATABASE_URL is not set, nor --database-url (e.g. postgres://127.0.0.1:5432/raceflow)")

// openPool connects to cfg.DatabaseURL with the configured pool size and
// checks that the server answers.
func openPool(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	if cfg.DatabaseURL == "" {
		return nil, errNoDatabase
	}
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL) // config.Validate has checked it parses
	if err != nil {
		return nil, &config.FieldError{Var: "DATABASE_URL", Value: config.RedactDSN(cfg.DatabaseURL), Reason: "cannot be parsed"}
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

// newLogger builds the process logger: JSON in production, text on a
// terminal, with float fields rounded (durations in ms to 0.1 ms).
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
		l.SetFormatter(roundingFormatter{&logrus.JSONFormatter{}})
	} else {
		l.SetFormatter(roundingFormatter{&logrus.TextFormatter{FullTimestamp: true}})
	}
	return l
}

// roundingFormatter rounds float fields before formatting: a latency of
// 52.224833000000004 ms is logged as 52.2.
type roundingFormatter struct{ logrus.Formatter }

func (f roundingFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var rounded logrus.Fields
	for k, v := range e.Data {
		x, ok := v.(float64)
		if !ok {
			continue
		}
		if rounded == nil {
			rounded = make(logrus.Fields, len(e.Data))
			for k2, v2 := range e.Data {
				rounded[k2] = v2
			}
		}
		rounded[k] = roundFloat(x, strings.HasSuffix(k, "_ms"))
	}
	if rounded != nil {
		c := *e // a copy: the entry's fields may be shared with other entries
		c.Data = rounded
		e = &c
	}
	return f.Formatter.Format(e)
}

// roundFloat keeps one decimal of a duration in ms, else four significant
// digits (ratios, rates).
func roundFloat(x float64, ms bool) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x == 0 {
		return x
	}
	if ms || math.Abs(x) >= 1000 {
		return math.Round(x*10) / 10
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*scale) / scale
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
	f.FetchConcurrency = cfg.FetchConcurrency
	f.WriteConcurrency = cfg.WriteConcurrency
	f.WriteGroup.MaxPolls = cfg.WriteGroup
	f.Postgres.FallbackPoll = cfg.FallbackPoll
	f.Postgres.ListenURL = cfg.ListenURL
	f.NATS.URL = cfg.NATSURL
	f.NATS.AckWait = cfg.NATSAckWait
	f.Alerts = cfg.Alerts
	f.Notify.URL = cfg.AlertWebhookURL
	return f
}
