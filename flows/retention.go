package flows

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
)

// PrunerConfig shapes the retention of the stored topic. Start from
// DefaultPrunerConfig.
type PrunerConfig struct {
	// Retention is how long a stored poll is kept for replay
	// (RACEFLOW_RETENTION).
	Retention time.Duration
	// BatchSize bounds one deletion, so pruning a backlog never holds many
	// row locks or bloats one transaction.
	BatchSize int
	// Interval is how often Run prunes.
	Interval time.Duration
}

// DefaultPrunerConfig keeps the default retention, pruning hourly in
// batches of 1000.
func DefaultPrunerConfig() PrunerConfig {
	return PrunerConfig{Retention: config.DefaultRetention, BatchSize: 1000, Interval: time.Hour}
}

// Validate checks the configuration.
func (c PrunerConfig) Validate() error {
	var errs []error
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

// Pruner deletes stored polls older than the retention window, through the
// flow's driver (a backend that expires them itself deletes nothing here),
// and whatever else is kept for replay as long (the meetings lists).
type Pruner struct {
	cfg   PrunerConfig
	drv   driver.Driver
	log   logrus.FieldLogger
	now   func() time.Time
	extra []PruneFunc
}

// PruneFunc deletes what was stored before cutoff, at most batch rows per
// statement, and returns how many it deleted.
type PruneFunc func(ctx context.Context, cutoff time.Time, batch int) (int64, error)

// NewPruner validates cfg. A nil now means time.Now; extra prunes more of
// what replay reads, by the same retention.
func NewPruner(cfg PrunerConfig, drv driver.Driver, log logrus.FieldLogger, now func() time.Time, extra ...PruneFunc) (*Pruner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if drv == nil || log == nil {
		return nil, errors.New("flows: NewPruner needs a driver and a logger")
	}
	if now == nil {
		now = time.Now
	}
	return &Pruner{cfg: cfg, drv: drv, log: log, now: now, extra: extra}, nil
}

// PruneOnce deletes every handled stored poll created before now −
// Retention and returns how many it deleted; interrupted, it keeps what it
// did.
func (p *Pruner) PruneOnce(ctx context.Context, now time.Time) (int64, error) {
	cutoff := now.Add(-p.cfg.Retention)
	total, err := p.drv.Prune(ctx, cutoff, p.cfg.BatchSize)
	for _, prune := range p.extra {
		if err != nil {
			break
		}
		var n int64
		n, err = prune(ctx, cutoff, p.cfg.BatchSize)
		total += n
	}
	return total, err
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
