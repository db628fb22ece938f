-- +goose Up
-- Replay bookkeeping (flows/replay.go). A replay run re-derives the domain
-- tables from the stored topic (race.fetched). Each poll's write commits
-- together with its progress row, so an interrupted run resumes exactly
-- after the last poll it wrote, never writing a poll twice.

CREATE TABLE replay_runs (
    run_id      text PRIMARY KEY,
    -- The run's filter (observed_at range, races, meeting); a resumed run
    -- must replay the same selection.
    filter      jsonb NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- One row per race of a run. A race's polls are replayed in the order
-- (observed_at, topic, offset); the row holds the last one written (or
-- skipped as a bad stored payload), and a resumed run starts after it.
-- Per race rather than per topic: races of one shard topic are replayed
-- concurrently, so one offset per topic could not say which are done.
CREATE TABLE replay_progress (
    run_id           text NOT NULL REFERENCES replay_runs (run_id) ON DELETE CASCADE,
    race_id          text NOT NULL,
    last_observed_at timestamptz NOT NULL,
    last_topic       text NOT NULL,
    last_offset      bigint NOT NULL,
    polls            integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, race_id)
);

-- +goose Down
DROP TABLE replay_progress;
DROP TABLE replay_runs;
