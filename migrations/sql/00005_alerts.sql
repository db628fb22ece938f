-- +goose Up
-- Late-money alerts (stages/alerts, stages/detect). One row per alert, keyed
-- naturally by race, runner ('' for a race's pool surge), kind and timing
-- bucket (time_interval), so a redelivered or replayed poll inserts nothing
-- twice. Every column is derived from the stored polls and none from the
-- clock, so replaying a day rebuilds the table field for field. Which
-- figures a kind fills is documented in docs/ALERTS.md; money is in cents.
CREATE TABLE alerts (
    race_id       text NOT NULL,
    entrant_id    text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('steamer', 'drifter', 'late_money', 'pool_surge')),
    time_interval integer NOT NULL,
    alert_id      uuid NOT NULL,
    fired_at      timestamptz NOT NULL,
    time_to_start integer NOT NULL,
    reference_at  timestamptz NOT NULL,
    source        text CHECK (source IN ('fixed_win', 'pool_win')),
    before_odds   numeric(10, 2),
    after_odds    numeric(10, 2),
    before_cents  bigint,
    after_cents   bigint,
    window_cents  bigint,
    -- Percentages and ratios have two decimals; a share of a bucket's money
    -- can exceed 100 % and a ratio has no useful bound, so no precision.
    before_pct    numeric,
    after_pct     numeric,
    change_pct    numeric,
    ratio         numeric,
    PRIMARY KEY (race_id, entrant_id, kind, time_interval)
);
-- The day's alerts (the status page, the demo's summary).
CREATE INDEX alerts_fired_at_idx ON alerts (fired_at);

-- +goose Down
DROP TABLE alerts;
