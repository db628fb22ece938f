package schedule

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGRaces reads candidate races from the races table.
type PGRaces struct {
	pool     *pgxpool.Pool
	lookBack time.Duration
	horizon  time.Duration
}

// NewPGRaces reads candidates within [now − cfg.StuckAfter, now + cfg.Horizon].
func NewPGRaces(pool *pgxpool.Pool, cfg Config) *PGRaces {
	return &PGRaces{pool: pool, lookBack: cfg.StuckAfter, horizon: cfg.Horizon}
}

// The look-back keeps races that have started but are not final yet: they
// are the ones whose results are still coming. The status
// list matches the partial index races_active_start_idx.
const candidatesSQL = `
SELECT race_id, start_time, status
FROM races
WHERE status IN ('open', 'closed', 'interim')
  AND start_time >= $1 AND start_time <= $2
ORDER BY start_time, race_id`

// Candidates returns the races that are not final or abandoned and start
// within the window around now, earliest first.
func (r *PGRaces) Candidates(ctx context.Context, now time.Time) ([]Race, error) {
	rows, err := r.pool.Query(ctx, candidatesSQL, now.Add(-r.lookBack), now.Add(r.horizon))
	if err != nil {
		return nil, fmt.Errorf("schedule: query candidates: %w", err)
	}
	races, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Race, error) {
		var rc Race
		err := row.Scan(&rc.ID, &rc.Start, &rc.Status)
		return rc, err
	})
	if err != nil {
		return nil, fmt.Errorf("schedule: read candidates: %w", err)
	}
	return races, nil
}
