package flows

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/memdriver"
	"github.com/raceflow/raceflow/flows/driver/natsdriver"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
)

// OpenDriver is the driver registry: it opens the driver cfg.Backend names,
// for cfg's namespace, on pool (the database of record). The engine opens
// its own; the poison tools, replay and throw-away flows open one to reach
// what a backend keeps.
func OpenDriver(cfg Config, pool *pgxpool.Pool, log logrus.FieldLogger) (driver.Driver, error) {
	wlog := NewLogger(log)
	switch cfg.Backend {
	case config.BackendPostgres:
		pc := cfg.Postgres
		pc.Namespace, pc.AckDeadline = cfg.Namespace, cfg.AckDeadline
		return pgdriver.Open(pc, pool, wlog)
	case config.BackendNATS:
		nc := cfg.NATS
		nc.Namespace, nc.AckDeadline, nc.CloseTimeout, nc.StoredRetention = cfg.Namespace, cfg.AckDeadline, cfg.CloseTimeout, cfg.Retention
		return natsdriver.Open(nc, pool, wlog)
	case config.BackendMemory:
		return memdriver.Open(memdriver.Config{Namespace: cfg.Namespace}, pool)
	}
	return nil, fmt.Errorf("flows: backend %q must be one of %s", cfg.Backend, strings.Join(config.Backends(), ", "))
}

// DropNamespace deletes the topics and messages of cfg's namespace on its
// backend: for throw-away flows (benchmarks, the demo), once they stopped.
func DropNamespace(ctx context.Context, cfg Config, pool *pgxpool.Pool, log logrus.FieldLogger) error {
	drv, err := OpenDriver(cfg, pool, log)
	if err != nil {
		return err
	}
	return errors.Join(drv.Drop(ctx), drv.Close())
}
