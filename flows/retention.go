package flows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
)

// PrunerConfig shapes the retention of the stored topic. Start from
// DefaultPrunerConfig.
type PrunerConfig struct {
	// Namespace of the flow whose stored topic (race.fetched, every shard
	// table present) is pruned.
	Namespace string
	// Retention is how long a stored poll is kept for replay
	// (RACEFLOW_RETENTION).
	Retention time.Duration
	// BatchSize bounds one DELETE, so pruning a backlog never holds many
	// row locks or bloats one transaction.
	BatchSize int
	// Interval is how often Run prunes.
	Interval time.Duration
}

// DefaultPrunerConfig keeps seven days, pruning hourly in batches of 1000.
func DefaultPrunerConfig() PrunerConfig {
	return PrunerConfig{Namespace: DefaultConfig().Namespace, Retention: 7 * 24 * time.Hour, BatchSize: 1000, Interval: time.Hour}
}

// Validate checks the configuration.
func (c PrunerConfig) Validate() error {
	var errs []error
	if err := validNamespace(c.Namespace); err != nil {
		errs = append(errs, err)
	}
	if c.Retention <= 0 {
		errs = append(errs, errors.New("flows: retention must be positive"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("flows: prune batch size must be at least 1"))
	}
	if c.Interval <= 0 {
		errs = append(errs, errors.New("flows: prune interval must be positive"))
	}
	return errors.Join(errs...)
}

// Pruner deletes stored polls older than the retention window. Only acked
// rows go: an unacked one has not been transformed yet, and deleting it
// would lose the poll.
type Pruner struct {
	cfg  PrunerConfig
	pool *pgxpool.Pool
	log  logrus.FieldLogger
	now  func() time.Time
}

// NewPruner validates cfg. A nil now means time.Now.
func NewPruner(cfg PrunerConfig, pool *pgxpool.Pool, log logrus.FieldLogger, now func() time.Time) (*Pruner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil || log == nil {
		return nil, errors.New("flows: NewPruner needs a pool and a logger")
	}
	if now == nil {
		now = time.Now
	}
	return &Pruner{cfg: cfg, pool: pool, log: log, now: now}, nil
}

// PruneOnce deletes every acked stored poll created before now − Retention
// and returns how many it deleted. Each batch is its own statement, so the
// live flow is never blocked for long; interrupted, it keeps what it did.
func (p *Pruner) PruneOnce(ctx context.Context, now time.Time) (int64, error) {
	topics, err := storedTopics(ctx, p.pool, p.cfg.Namespace)
	if err != nil {
		return 0, err
	}
	cutoff := now.Add(-p.cfg.Retention)
	var total int64
	for _, topic := range topics {
		table := topicTable(topic)
		// Oldest first, through the primary key: created_at grows with the
		// offset, so a batch finds its rows at the start of the index.
		q := `DELETE FROM ` + table + ` WHERE "offset" IN (
			SELECT "offset" FROM ` + table + ` WHERE acked AND created_at < $1 ORDER BY "offset" LIMIT $2)`
		for {
			tag, err := p.pool.Exec(ctx, q, cutoff, p.cfg.BatchSize)
			if err != nil {
				return total, fmt.Errorf("flows: prune %s: %w", topic, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(p.cfg.BatchSize) {
				break
			}
		}
	}
	return total, nil
}

// Run prunes now and then every Interval until ctx ends. Failures are
// logged and retried at the next interval.
func (p *Pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := p.PruneOnce(ctx, p.now())
		entry := p.log.WithFields(logrus.Fields{"deleted": n, "retention": p.cfg.Retention.String(),
			"duration_ms": time.Since(start).Milliseconds()})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			entry.WithError(err).Error("stored topic retention")
		case n > 0:
			entry.Info("pruned stored polls older than the retention window")
		default:
			entry.Debug("stored topic retention: nothing to prune")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
