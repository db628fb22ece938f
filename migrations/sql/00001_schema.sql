-- +goose Up
-- The domain schema. Money is integer cents (bigint). History tables are
-- range-partitioned by NZ day on event_timestamp; partitions are created by
-- the Go partition manager (stages/partitions), never inside a data
-- transaction, and there is deliberately no DEFAULT partition: a row for a
-- day without a partition is an error, not a silent catch-all.

-- +goose StatementBegin
CREATE FUNCTION raceflow_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TABLE meetings (
    meeting_id      text PRIMARY KEY,
    meeting_name    text NOT NULL,
    country         text NOT NULL,
    state           text,
    race_type       text NOT NULL CHECK (race_type IN ('thoroughbred', 'harness', 'greyhound')),
    category        text NOT NULL,
    date            date NOT NULL,
    track_condition text,
    tote_status     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meetings_date_type_idx ON meetings (date, race_type);
CREATE TRIGGER meetings_touch BEFORE UPDATE ON meetings
    FOR EACH ROW EXECUTE FUNCTION raceflow_touch_updated_at();

CREATE TABLE races (
    race_id           text PRIMARY KEY,
    meeting_id        text NOT NULL REFERENCES meetings (meeting_id) ON DELETE CASCADE,
    name              text NOT NULL,
    race_number       integer NOT NULL,
    start_time        timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'closed', 'interim', 'final', 'abandoned')),
    actual_start      timestamptz,
    race_date_nz      date,
    start_time_nz     text,
    distance          integer,
    track_condition   text,
    track_surface     text,
    track_direction   text,
    rail_position     text,
    weather           text,
    type              text,
    total_prize_money bigint,
    entrant_count     integer,
    field_size        integer,
    positions_paid    integer,
    silk_url          text,
    silk_base_url     text,
    video_channels    jsonb,
    api_generated_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX races_meeting_idx ON races (meeting_id);
CREATE INDEX races_active_start_idx ON races (start_time) WHERE status IN ('open', 'closed', 'interim');
CREATE TRIGGER races_touch BEFORE UPDATE ON races
    FOR EACH ROW EXECUTE FUNCTION raceflow_touch_updated_at();

CREATE TABLE entrants (
    entrant_id            text PRIMARY KEY,
    race_id               text NOT NULL REFERENCES races (race_id) ON DELETE CASCADE,
    name                  text NOT NULL,
    runner_number         integer NOT NULL,
    barrier               integer,
    is_scratched          boolean NOT NULL DEFAULT false,
    is_late_scratched     boolean NOT NULL DEFAULT false,
    is_emergency          boolean NOT NULL DEFAULT false,
    scratch_time          timestamptz,
    fixed_win_odds        numeric(10, 2),
    fixed_place_odds      numeric(10, 2),
    pool_win_odds         numeric(10, 2),
    pool_place_odds       numeric(10, 2),
    hold_percentage       numeric(5, 2),
    bet_percentage        numeric(5, 2),
    win_pool_percentage   numeric(5, 2),
    place_pool_percentage numeric(5, 2),
    win_pool_amount       bigint,
    place_pool_amount     bigint,
    jockey                text,
    trainer_name          text,
    silk_colours          text,
    silk_url_64x64        text,
    silk_url_128x128      text,
    favourite             boolean NOT NULL DEFAULT false,
    mover                 boolean NOT NULL DEFAULT false,
    runner_change         jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entrants_race_idx ON entrants (race_id, runner_number);
CREATE TRIGGER entrants_touch BEFORE UPDATE ON entrants
    FOR EACH ROW EXECUTE FUNCTION raceflow_touch_updated_at();

CREATE TABLE race_pools (
    race_id             text PRIMARY KEY REFERENCES races (race_id) ON DELETE CASCADE,
    win_pool_total      bigint NOT NULL DEFAULT 0,
    place_pool_total    bigint NOT NULL DEFAULT 0,
    quinella_pool_total bigint NOT NULL DEFAULT 0,
    trifecta_pool_total bigint NOT NULL DEFAULT 0,
    exacta_pool_total   bigint NOT NULL DEFAULT 0,
    first4_pool_total   bigint NOT NULL DEFAULT 0,
    total_race_pool     bigint NOT NULL DEFAULT 0,
    currency            text NOT NULL DEFAULT '$',
    data_quality_score  integer NOT NULL DEFAULT 100,
    extracted_pools     integer NOT NULL DEFAULT 0,
    source              text NOT NULL DEFAULT 'tote_pools',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER race_pools_touch BEFORE UPDATE ON race_pools
    FOR EACH ROW EXECUTE FUNCTION raceflow_touch_updated_at();

CREATE TABLE race_results (
    race_id           text PRIMARY KEY REFERENCES races (race_id) ON DELETE CASCADE,
    results_available boolean NOT NULL DEFAULT false,
    results_data      jsonb,
    dividends_data    jsonb,
    fixed_odds_data   jsonb,
    result_status     text CHECK (result_status IN ('interim', 'final', 'protest')),
    photo_finish      boolean NOT NULL DEFAULT false,
    stewards_inquiry  boolean NOT NULL DEFAULT false,
    protest_lodged    boolean NOT NULL DEFAULT false,
    result_time       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER race_results_touch BEFORE UPDATE ON race_results
    FOR EACH ROW EXECUTE FUNCTION raceflow_touch_updated_at();

-- One row per poll written: the ledger that makes a poll's effect
-- observable (exactly-once checks, replay progress) and keeps its quality
-- report. Keyed by the observation instant, like the history rows.
CREATE TABLE race_polls (
    race_id          text NOT NULL,
    observed_at      timestamptz NOT NULL,
    poll_id          text NOT NULL,
    status           text NOT NULL,
    api_generated_at timestamptz,
    quality_score    integer NOT NULL,
    quality          jsonb NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (race_id, observed_at)
);

-- History: no foreign keys (the write stage only emits rows for runners of
-- the race, and FK checks would cost every insert); the natural keys include
-- the partition key so a redelivered or replayed poll can never duplicate.
CREATE TABLE money_flow_history (
    race_id                  text NOT NULL,
    entrant_id               text NOT NULL,
    polling_timestamp        timestamptz NOT NULL,
    event_timestamp          timestamptz NOT NULL,
    time_to_start            integer NOT NULL,
    time_interval            integer NOT NULL,
    interval_type            text NOT NULL CHECK (interval_type IN ('5m', '2m', '30s', 'live')),
    hold_percentage          numeric(5, 2) NOT NULL,
    bet_percentage           numeric(5, 2) NOT NULL,
    win_pool_percentage      numeric(5, 2),
    place_pool_percentage    numeric(5, 2),
    win_pool_amount          bigint NOT NULL,
    place_pool_amount        bigint NOT NULL,
    total_pool_amount        bigint NOT NULL,
    incremental_win_amount   bigint NOT NULL,
    incremental_place_amount bigint NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT money_flow_history_key UNIQUE (race_id, entrant_id, polling_timestamp, event_timestamp)
) PARTITION BY RANGE (event_timestamp);

CREATE TABLE odds_history (
    race_id         text NOT NULL,
    entrant_id      text NOT NULL,
    type            text NOT NULL CHECK (type IN ('fixed_win', 'fixed_place', 'pool_win', 'pool_place')),
    odds            numeric(10, 2) NOT NULL,
    event_timestamp timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT odds_history_key UNIQUE (entrant_id, type, event_timestamp)
) PARTITION BY RANGE (event_timestamp);

-- +goose Down
DROP TABLE odds_history;
DROP TABLE money_flow_history;
DROP TABLE race_polls;
DROP TABLE race_results;
DROP TABLE race_pools;
DROP TABLE entrants;
DROP TABLE races;
DROP TABLE meetings;
DROP FUNCTION raceflow_touch_updated_at();
