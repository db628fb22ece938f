package write

import "time"

// historySpan bounds every history lookup on event_timestamp, the
// partition key, so PostgreSQL prunes to the few daily partitions around the
// row at run time. A race's polls span hours, never days; a neighbour further
// away than this is treated as absent, in both directions alike, so the
// result stays independent of write order. It is a fixed number of hours, not
// days, so the result does not depend on the session's time zone either
// (a day is 23 or 25 hours across a DST change), and the batch path can
// apply the same bound in Go.
const historySpan = 72 * time.Hour

// historyWindow is historySpan as an SQL interval.
const historyWindow = `interval '72 hours'`

// sqlRacePolls records the poll in the ledger. A replayed poll keeps the
// first row (and its written_at), so the ledger says when a poll first landed.
const sqlRacePolls = `
WITH ins AS (
    INSERT INTO race_polls (race_id, observed_at, poll_id, status, api_generated_at, quality_score, quality)
    SELECT u.race_id, u.observed_at, u.poll_id, u.status, u.api_generated_at, u.quality_score, u.quality::jsonb
    FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::text[])
        AS u(race_id, observed_at, poll_id, status, api_generated_at, quality_score, quality)
    ON CONFLICT (race_id, observed_at) DO NOTHING
    RETURNING race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM ins
)` + countsTail

// sqlMoneyFlow inserts one layer of money-flow rows (at most one per race and
// runner) and keeps every stored increment equal to "amount minus the amount
// of the latest earlier poll", whatever order polls arrive in:
//   - a new row's increment is taken against its stored predecessor (full
//     amount when there is none);
//   - the stored successor of each inserted row (the earliest later row) now
//     has the new row as predecessor, so its increments are recomputed.
//
// Rows after that successor keep their predecessor, so nothing else can
// change. The successor lookup reads the statement's snapshot, which does not
// contain the rows this statement inserts, exactly as wanted. Every lookup
// walks the (race_id, entrant_id, polling_timestamp, event_timestamp) unique
// index of the few partitions left after run-time pruning, with LIMIT 1 so it
// stays a per-row probe. The successor is then updated by its physical
// address (tableoid, ctid): joining the target table on the key instead lets
// the planner pick a hash join over the whole partition, since it estimates
// unnest() at 100 rows.
const sqlMoneyFlow = `
WITH c AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::int[], $7::text[],
        $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::bigint[], $13::bigint[], $14::bigint[])
        AS u(race_id, entrant_id, polling_timestamp, event_timestamp, time_to_start, time_interval, interval_type,
             hold_percentage, bet_percentage, win_pool_percentage, place_pool_percentage, win_pool_amount,
             place_pool_amount, total_pool_amount)
), ins AS (
    INSERT INTO money_flow_history (race_id, entrant_id, polling_timestamp, event_timestamp, time_to_start,
        time_interval, interval_type, hold_percentage, bet_percentage, win_pool_percentage, place_pool_percentage,
        win_pool_amount, place_pool_amount, total_pool_amount, incremental_win_amount, incremental_place_amount)
    SELECT c.race_id, c.entrant_id, c.polling_timestamp, c.event_timestamp, c.time_to_start, c.time_interval,
        c.interval_type, c.hold_percentage, c.bet_percentage, c.win_pool_percentage, c.place_pool_percentage,
        c.win_pool_amount, c.place_pool_amount, c.total_pool_amount,
        c.win_pool_amount - COALESCE(p.win_pool_amount, 0), c.place_pool_amount - COALESCE(p.place_pool_amount, 0)
    FROM c
    LEFT JOIN LATERAL (
        SELECT h.win_pool_amount, h.place_pool_amount
        FROM money_flow_history h
        WHERE h.race_id = c.race_id AND h.entrant_id = c.entrant_id
          AND h.polling_timestamp < c.polling_timestamp
          AND h.event_timestamp >= c.event_timestamp - ` + historyWindow + `
          AND h.event_timestamp <= c.event_timestamp + ` + historyWindow + `
        ORDER BY h.polling_timestamp DESC, h.event_timestamp DESC
        LIMIT 1
    ) p ON true
    ON CONFLICT ON CONSTRAINT money_flow_history_key DO NOTHING
    RETURNING race_id, entrant_id, polling_timestamp, event_timestamp, win_pool_amount, place_pool_amount
), succ AS (
    SELECT s.rel, s.tid, i.win_pool_amount AS prev_win, i.place_pool_amount AS prev_place
    FROM ins i
    CROSS JOIN LATERAL (
        SELECT h.tableoid AS rel, h.ctid AS tid
        FROM money_flow_history h
        WHERE h.race_id = i.race_id AND h.entrant_id = i.entrant_id
          AND h.polling_timestamp > i.polling_timestamp
          AND h.event_timestamp >= i.event_timestamp - ` + historyWindow + `
          AND h.event_timestamp <= i.event_timestamp + ` + historyWindow + `
        ORDER BY h.polling_timestamp, h.event_timestamp
        LIMIT 1
    ) s
), upd AS (
    UPDATE money_flow_history h SET
        incremental_win_amount   = h.win_pool_amount - s.prev_win,
        incremental_place_amount = h.place_pool_amount - s.prev_place
    FROM succ s
    WHERE h.ctid = ANY (ARRAY(SELECT tid FROM succ)) AND h.tableoid = s.rel AND h.ctid = s.tid
      AND (h.incremental_win_amount, h.incremental_place_amount)
          IS DISTINCT FROM (h.win_pool_amount - s.prev_win, h.place_pool_amount - s.prev_place)
    RETURNING h.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM ins
    UNION ALL
    SELECT race_id, 0, 1 FROM upd
)` + countsTail

// sqlOdds inserts one layer of candidate odds rows (at most one per runner
// and type) where the value moved by more than 0.01 from the latest earlier
// stored row, then repairs what a late-arriving earlier row changes: the
// stored rows right after it that are now within 0.01 of it (up to the first
// one that differs by more) would not have been stored had the polls come in
// order, so they are deleted. Values are compared as stored, numeric(10,2).
// As in sqlMoneyFlow, the doomed rows are found by per-row index probes
// (OFFSET 0 keeps the lateral subquery from being flattened into a join) and
// deleted by physical address, so no plan can scan a whole partition.
//
// Known residual limit: an observation that was dropped (within 0.01 of its
// then-predecessor) is gone, so a later-arriving earlier poll cannot bring it
// back even when, next to the new row, it would now be a change. Example:
// A=2.50@t1, B=2.51@t2, C=2.52@t3 in order store A and C; arriving B, C, A
// store B, drop C (0.01 from B), then A deletes B and leaves only A. Only
// values creeping in steps at the tolerance are affected, and only when one
// race's polls arrive out of order, which the flow prevents except for
// replays of old polls. Keeping every observation would lift the limit.
const sqlOdds = `
WITH c AS (
    SELECT u.race_id, u.entrant_id, u.type, u.odds::numeric(10,2) AS odds, u.event_timestamp
    FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])
        AS u(race_id, entrant_id, type, odds, event_timestamp)
), ins AS (
    INSERT INTO odds_history (race_id, entrant_id, type, odds, event_timestamp)
    SELECT c.race_id, c.entrant_id, c.type, c.odds, c.event_timestamp
    FROM c
    WHERE NOT EXISTS (
        SELECT 1
        FROM (
            SELECT h.odds
            FROM odds_history h
            WHERE h.entrant_id = c.entrant_id AND h.type = c.type
              AND h.event_timestamp < c.event_timestamp
              AND h.event_timestamp >= c.event_timestamp - ` + historyWindow + `
            ORDER BY h.event_timestamp DESC
            LIMIT 1
        ) prev
        WHERE abs(prev.odds - c.odds) <= 0.01
    )
    ON CONFLICT ON CONSTRAINT odds_history_key DO NOTHING
    RETURNING race_id, entrant_id, type, odds, event_timestamp
), doomed AS (
    SELECT d.rel, d.tid
    FROM ins i
    CROSS JOIN LATERAL (
        SELECT h.tableoid AS rel, h.ctid AS tid
        FROM odds_history h
        WHERE h.entrant_id = i.entrant_id AND h.type = i.type
          AND h.event_timestamp > i.event_timestamp
          AND h.event_timestamp <= i.event_timestamp + ` + historyWindow + `
          AND h.event_timestamp < COALESCE((
                SELECT f.event_timestamp
                FROM odds_history f
                WHERE f.entrant_id = i.entrant_id AND f.type = i.type
                  AND f.event_timestamp > i.event_timestamp
                  AND f.event_timestamp <= i.event_timestamp + ` + historyWindow + `
                  AND abs(f.odds - i.odds) > 0.01
                ORDER BY f.event_timestamp
                LIMIT 1), 'infinity')
        OFFSET 0
    ) d
), del AS (
    DELETE FROM odds_history h
    USING doomed d
    WHERE h.ctid = ANY (ARRAY(SELECT tid FROM doomed)) AND h.tableoid = d.rel AND h.ctid = d.tid
    RETURNING h.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM ins
    UNION ALL
    SELECT race_id, 0, 1 FROM del
)` + countsTail
