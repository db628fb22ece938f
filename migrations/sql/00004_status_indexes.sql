-- +goose Up
-- The status page lists a day's races by start time, whatever their status
-- (races_active_start_idx covers only active ones), so that read walks an
-- index rather than the whole races table, which grows every day.
CREATE INDEX races_start_time_idx ON races (start_time);

-- +goose Down
DROP INDEX races_start_time_idx;
