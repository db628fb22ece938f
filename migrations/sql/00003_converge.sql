-- +goose Up
-- Replay converges (stages/write, stages/baseline).
--
-- 1. Every state row records the observation instant it was last written
--    from (observed_at: the poll's or the meetings list's), and the "older
--    must not overwrite newer" guards read it from the row itself rather than
--    from the race_polls ledger alone. Replaying stored polls in order then
--    rebuilds every row exactly, whichever derived tables were emptied or
--    left stale. NULL means "written before this column existed": older than
--    any observation.
-- 2. The daily meetings-list responses are stored like the event fetches, so
--    a rebuild restores what only that list carries (meetings.tote_status,
--    races never polled).

ALTER TABLE meetings ADD COLUMN observed_at timestamptz;
ALTER TABLE races ADD COLUMN observed_at timestamptz;
ALTER TABLE entrants ADD COLUMN observed_at timestamptz;
ALTER TABLE race_pools ADD COLUMN observed_at timestamptz;
ALTER TABLE race_results ADD COLUMN observed_at timestamptz;

-- Rows written before this migration take the latest poll of their race, so
-- the guards behave exactly as the ledger-only guards did. The backfill is
-- bookkeeping, not a change of content: updated_at stays put.
ALTER TABLE meetings DISABLE TRIGGER meetings_touch;
ALTER TABLE races DISABLE TRIGGER races_touch;
ALTER TABLE entrants DISABLE TRIGGER entrants_touch;
ALTER TABLE race_pools DISABLE TRIGGER race_pools_touch;
ALTER TABLE race_results DISABLE TRIGGER race_results_touch;

UPDATE races r SET observed_at = p.last
FROM (SELECT race_id, max(observed_at) AS last FROM race_polls GROUP BY race_id) p
WHERE p.race_id = r.race_id;
UPDATE entrants e SET observed_at = r.observed_at
FROM races r WHERE r.race_id = e.race_id AND r.observed_at IS NOT NULL;
UPDATE race_pools x SET observed_at = r.observed_at
FROM races r WHERE r.race_id = x.race_id AND r.observed_at IS NOT NULL;
UPDATE race_results x SET observed_at = r.observed_at
FROM races r WHERE r.race_id = x.race_id AND r.observed_at IS NOT NULL;
UPDATE meetings m SET observed_at = r.last
FROM (SELECT meeting_id, max(observed_at) AS last FROM races GROUP BY meeting_id) r
WHERE r.meeting_id = m.meeting_id AND r.last IS NOT NULL;

ALTER TABLE meetings ENABLE TRIGGER meetings_touch;
ALTER TABLE races ENABLE TRIGGER races_touch;
ALTER TABLE entrants ENABLE TRIGGER entrants_touch;
ALTER TABLE race_pools ENABLE TRIGGER race_pools_touch;
ALTER TABLE race_results ENABLE TRIGGER race_results_touch;

-- One row per baseline fetch of the meetings list: its raw response pages,
-- each gzip-compressed, as received. stored_at is the database's clock, as
-- the stored topic's created_at, so one retention setting prunes both.
CREATE TABLE baseline_responses (
    observed_at timestamptz PRIMARY KEY,
    day         date NOT NULL,
    pages       bytea[] NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX baseline_responses_stored_at_idx ON baseline_responses (stored_at);

-- +goose Down
DROP TABLE baseline_responses;
ALTER TABLE race_results DROP COLUMN observed_at;
ALTER TABLE race_pools DROP COLUMN observed_at;
ALTER TABLE entrants DROP COLUMN observed_at;
ALTER TABLE races DROP COLUMN observed_at;
ALTER TABLE meetings DROP COLUMN observed_at;
