package write

// Every statement ends with the same projection: its counters and its own
// server-side execution time in microseconds. statement_timestamp() is reset
// by each Bind/Execute message, so even inside one pipelined batch it marks
// the statement's own start; clock_timestamp() is read after the
// data-modifying CTEs have been drained by the counters before it.
const elapsedUS = `(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000000)::bigint`

// historyWindow bounds every history lookup on event_timestamp, the
// partition key, so PostgreSQL prunes to the few daily partitions around the
// row at run time. A race's polls span hours, never days; a neighbour further
// away than this is treated as absent, in both directions alike, so the
// result stays independent of write order.
const historyWindow = `interval '3 days'`

// The state-table upserts (meetings, races, entrants, race_pools,
// race_results) change a row only when a value differs, never store NULL over
// a known value, and skip the update when the race_polls ledger already holds
// a later poll of the race: state tables describe the latest observation, so
// an older poll arriving late must not roll them back. (It may still insert a
// row that does not exist yet.) The last parameter is the poll's instant.
//
// sqlMeetings upserts the meeting. A meeting is shared by its races, so the
// staleness check looks at the latest poll of any of them. Its row is also
// the one row polls of different races contend for: ON CONFLICT locks the
// conflicting row until commit even when its WHERE rejects the update, so
// an unchanged (or stale) meeting is filtered out before the insert is tried
// and concurrent polls of one meeting's races do not queue behind each other.
const sqlMeetings = `
WITH up AS (
    INSERT INTO meetings AS t (meeting_id, meeting_name, country, state, race_type, category, date, track_condition, tote_status)
    SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::date, $8::text, $9::text
    WHERE NOT EXISTS (
        SELECT 1 FROM meetings m
        WHERE m.meeting_id = $1::text
          AND (($2::text, $3::text, COALESCE($4::text, m.state), $5::text, $6::text, $7::date,
                COALESCE($8::text, m.track_condition), COALESCE($9::text, m.tote_status))
               IS NOT DISTINCT FROM
               (m.meeting_name, m.country, m.state, m.race_type, m.category, m.date, m.track_condition, m.tote_status)
               OR EXISTS (SELECT 1 FROM races r JOIN race_polls p ON p.race_id = r.race_id
                          WHERE r.meeting_id = $1::text AND p.observed_at > $10::timestamptz)))
    ON CONFLICT (meeting_id) DO UPDATE SET
        meeting_name    = EXCLUDED.meeting_name,
        country         = EXCLUDED.country,
        state           = COALESCE(EXCLUDED.state, t.state),
        race_type       = EXCLUDED.race_type,
        category        = EXCLUDED.category,
        date            = EXCLUDED.date,
        track_condition = COALESCE(EXCLUDED.track_condition, t.track_condition),
        tote_status     = COALESCE(EXCLUDED.tote_status, t.tote_status)
    WHERE (EXCLUDED.meeting_name, EXCLUDED.country, COALESCE(EXCLUDED.state, t.state), EXCLUDED.race_type,
           EXCLUDED.category, EXCLUDED.date, COALESCE(EXCLUDED.track_condition, t.track_condition),
           COALESCE(EXCLUDED.tote_status, t.tote_status))
          IS DISTINCT FROM
          (t.meeting_name, t.country, t.state, t.race_type, t.category, t.date, t.track_condition, t.tote_status)
      AND NOT EXISTS (SELECT 1 FROM races r JOIN race_polls p ON p.race_id = r.race_id
                      WHERE r.meeting_id = EXCLUDED.meeting_id AND p.observed_at > $10::timestamptz)
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM up`

const sqlRaces = `
WITH up AS (
    INSERT INTO races AS t (race_id, meeting_id, name, race_number, start_time, status, actual_start, race_date_nz,
        start_time_nz, distance, track_condition, track_surface, track_direction, rail_position, weather, type,
        total_prize_money, entrant_count, field_size, positions_paid, silk_url, silk_base_url, video_channels,
        api_generated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::date, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
        $22, $23::jsonb, $24)
    ON CONFLICT (race_id) DO UPDATE SET
        meeting_id        = EXCLUDED.meeting_id,
        name              = EXCLUDED.name,
        race_number       = EXCLUDED.race_number,
        start_time        = EXCLUDED.start_time,
        status            = EXCLUDED.status,
        actual_start      = COALESCE(EXCLUDED.actual_start, t.actual_start),
        race_date_nz      = COALESCE(EXCLUDED.race_date_nz, t.race_date_nz),
        start_time_nz     = COALESCE(EXCLUDED.start_time_nz, t.start_time_nz),
        distance          = COALESCE(EXCLUDED.distance, t.distance),
        track_condition   = COALESCE(EXCLUDED.track_condition, t.track_condition),
        track_surface     = COALESCE(EXCLUDED.track_surface, t.track_surface),
        track_direction   = COALESCE(EXCLUDED.track_direction, t.track_direction),
        rail_position     = COALESCE(EXCLUDED.rail_position, t.rail_position),
        weather           = COALESCE(EXCLUDED.weather, t.weather),
        type              = COALESCE(EXCLUDED.type, t.type),
        total_prize_money = COALESCE(EXCLUDED.total_prize_money, t.total_prize_money),
        entrant_count     = COALESCE(EXCLUDED.entrant_count, t.entrant_count),
        field_size        = COALESCE(EXCLUDED.field_size, t.field_size),
        positions_paid    = COALESCE(EXCLUDED.positions_paid, t.positions_paid),
        silk_url          = COALESCE(EXCLUDED.silk_url, t.silk_url),
        silk_base_url     = COALESCE(EXCLUDED.silk_base_url, t.silk_base_url),
        video_channels    = COALESCE(EXCLUDED.video_channels, t.video_channels),
        api_generated_at  = COALESCE(EXCLUDED.api_generated_at, t.api_generated_at)
    WHERE (EXCLUDED.meeting_id, EXCLUDED.name, EXCLUDED.race_number, EXCLUDED.start_time, EXCLUDED.status,
           COALESCE(EXCLUDED.actual_start, t.actual_start), COALESCE(EXCLUDED.race_date_nz, t.race_date_nz),
           COALESCE(EXCLUDED.start_time_nz, t.start_time_nz), COALESCE(EXCLUDED.distance, t.distance),
           COALESCE(EXCLUDED.track_condition, t.track_condition), COALESCE(EXCLUDED.track_surface, t.track_surface),
           COALESCE(EXCLUDED.track_direction, t.track_direction), COALESCE(EXCLUDED.rail_position, t.rail_position),
           COALESCE(EXCLUDED.weather, t.weather), COALESCE(EXCLUDED.type, t.type),
           COALESCE(EXCLUDED.total_prize_money, t.total_prize_money),
           COALESCE(EXCLUDED.entrant_count, t.entrant_count), COALESCE(EXCLUDED.field_size, t.field_size),
           COALESCE(EXCLUDED.positions_paid, t.positions_paid), COALESCE(EXCLUDED.silk_url, t.silk_url),
           COALESCE(EXCLUDED.silk_base_url, t.silk_base_url), COALESCE(EXCLUDED.video_channels, t.video_channels),
           COALESCE(EXCLUDED.api_generated_at, t.api_generated_at))
          IS DISTINCT FROM
          (t.meeting_id, t.name, t.race_number, t.start_time, t.status, t.actual_start, t.race_date_nz,
           t.start_time_nz, t.distance, t.track_condition, t.track_surface, t.track_direction, t.rail_position,
           t.weather, t.type, t.total_prize_money, t.entrant_count, t.field_size, t.positions_paid, t.silk_url,
           t.silk_base_url, t.video_channels, t.api_generated_at)
      AND NOT EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = EXCLUDED.race_id AND p.observed_at > $25)
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM up`

const sqlEntrants = `
WITH up AS (
    INSERT INTO entrants AS t (entrant_id, race_id, name, runner_number, barrier, is_scratched, is_late_scratched,
        is_emergency, scratch_time, fixed_win_odds, fixed_place_odds, pool_win_odds, pool_place_odds,
        hold_percentage, bet_percentage, win_pool_percentage, place_pool_percentage, win_pool_amount,
        place_pool_amount, jockey, trainer_name, silk_colours, silk_url_64x64, silk_url_128x128, favourite, mover,
        runner_change)
    SELECT u.entrant_id, u.race_id, u.name, u.runner_number, u.barrier, u.is_scratched, u.is_late_scratched,
        u.is_emergency, u.scratch_time, u.fixed_win_odds, u.fixed_place_odds, u.pool_win_odds, u.pool_place_odds,
        u.hold_percentage, u.bet_percentage, u.win_pool_percentage, u.place_pool_percentage, u.win_pool_amount,
        u.place_pool_amount, u.jockey, u.trainer_name, u.silk_colours, u.silk_url_64x64, u.silk_url_128x128,
        u.favourite, u.mover, u.runner_change::jsonb
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::bool[], $7::bool[], $8::bool[],
        $9::timestamptz[], $10::float8[], $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[],
        $16::float8[], $17::float8[], $18::bigint[], $19::bigint[], $20::text[], $21::text[], $22::text[],
        $23::text[], $24::text[], $25::bool[], $26::bool[], $27::text[])
        AS u(entrant_id, race_id, name, runner_number, barrier, is_scratched, is_late_scratched, is_emergency,
             scratch_time, fixed_win_odds, fixed_place_odds, pool_win_odds, pool_place_odds, hold_percentage,
             bet_percentage, win_pool_percentage, place_pool_percentage, win_pool_amount, place_pool_amount, jockey,
             trainer_name, silk_colours, silk_url_64x64, silk_url_128x128, favourite, mover, runner_change)
    ON CONFLICT (entrant_id) DO UPDATE SET
        race_id               = EXCLUDED.race_id,
        name                  = EXCLUDED.name,
        runner_number         = EXCLUDED.runner_number,
        barrier               = COALESCE(EXCLUDED.barrier, t.barrier),
        is_scratched          = EXCLUDED.is_scratched,
        is_late_scratched     = EXCLUDED.is_late_scratched,
        is_emergency          = EXCLUDED.is_emergency,
        scratch_time          = COALESCE(EXCLUDED.scratch_time, t.scratch_time),
        fixed_win_odds        = COALESCE(EXCLUDED.fixed_win_odds, t.fixed_win_odds),
        fixed_place_odds      = COALESCE(EXCLUDED.fixed_place_odds, t.fixed_place_odds),
        pool_win_odds         = COALESCE(EXCLUDED.pool_win_odds, t.pool_win_odds),
        pool_place_odds       = COALESCE(EXCLUDED.pool_place_odds, t.pool_place_odds),
        hold_percentage       = COALESCE(EXCLUDED.hold_percentage, t.hold_percentage),
        bet_percentage        = COALESCE(EXCLUDED.bet_percentage, t.bet_percentage),
        win_pool_percentage   = COALESCE(EXCLUDED.win_pool_percentage, t.win_pool_percentage),
        place_pool_percentage = COALESCE(EXCLUDED.place_pool_percentage, t.place_pool_percentage),
        win_pool_amount       = COALESCE(EXCLUDED.win_pool_amount, t.win_pool_amount),
        place_pool_amount     = COALESCE(EXCLUDED.place_pool_amount, t.place_pool_amount),
        jockey                = COALESCE(EXCLUDED.jockey, t.jockey),
        trainer_name          = COALESCE(EXCLUDED.trainer_name, t.trainer_name),
        silk_colours          = COALESCE(EXCLUDED.silk_colours, t.silk_colours),
        silk_url_64x64        = COALESCE(EXCLUDED.silk_url_64x64, t.silk_url_64x64),
        silk_url_128x128      = COALESCE(EXCLUDED.silk_url_128x128, t.silk_url_128x128),
        favourite             = EXCLUDED.favourite,
        mover                 = EXCLUDED.mover,
        runner_change         = COALESCE(EXCLUDED.runner_change, t.runner_change)
    WHERE (EXCLUDED.race_id, EXCLUDED.name, EXCLUDED.runner_number, COALESCE(EXCLUDED.barrier, t.barrier),
           EXCLUDED.is_scratched, EXCLUDED.is_late_scratched, EXCLUDED.is_emergency,
           COALESCE(EXCLUDED.scratch_time, t.scratch_time), COALESCE(EXCLUDED.fixed_win_odds, t.fixed_win_odds),
           COALESCE(EXCLUDED.fixed_place_odds, t.fixed_place_odds), COALESCE(EXCLUDED.pool_win_odds, t.pool_win_odds),
           COALESCE(EXCLUDED.pool_place_odds, t.pool_place_odds), COALESCE(EXCLUDED.hold_percentage, t.hold_percentage),
           COALESCE(EXCLUDED.bet_percentage, t.bet_percentage),
           COALESCE(EXCLUDED.win_pool_percentage, t.win_pool_percentage),
           COALESCE(EXCLUDED.place_pool_percentage, t.place_pool_percentage),
           COALESCE(EXCLUDED.win_pool_amount, t.win_pool_amount),
           COALESCE(EXCLUDED.place_pool_amount, t.place_pool_amount), COALESCE(EXCLUDED.jockey, t.jockey),
           COALESCE(EXCLUDED.trainer_name, t.trainer_name), COALESCE(EXCLUDED.silk_colours, t.silk_colours),
           COALESCE(EXCLUDED.silk_url_64x64, t.silk_url_64x64), COALESCE(EXCLUDED.silk_url_128x128, t.silk_url_128x128),
           EXCLUDED.favourite, EXCLUDED.mover, COALESCE(EXCLUDED.runner_change, t.runner_change))
          IS DISTINCT FROM
          (t.race_id, t.name, t.runner_number, t.barrier, t.is_scratched, t.is_late_scratched, t.is_emergency,
           t.scratch_time, t.fixed_win_odds, t.fixed_place_odds, t.pool_win_odds, t.pool_place_odds,
           t.hold_percentage, t.bet_percentage, t.win_pool_percentage, t.place_pool_percentage, t.win_pool_amount,
           t.place_pool_amount, t.jockey, t.trainer_name, t.silk_colours, t.silk_url_64x64, t.silk_url_128x128,
           t.favourite, t.mover, t.runner_change)
      AND NOT EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = EXCLUDED.race_id AND p.observed_at > $28)
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM up`

const sqlRacePools = `
WITH up AS (
    INSERT INTO race_pools AS t (race_id, win_pool_total, place_pool_total, quinella_pool_total, trifecta_pool_total,
        exacta_pool_total, first4_pool_total, total_race_pool, currency, data_quality_score, extracted_pools, source)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (race_id) DO UPDATE SET
        win_pool_total      = EXCLUDED.win_pool_total,
        place_pool_total    = EXCLUDED.place_pool_total,
        quinella_pool_total = EXCLUDED.quinella_pool_total,
        trifecta_pool_total = EXCLUDED.trifecta_pool_total,
        exacta_pool_total   = EXCLUDED.exacta_pool_total,
        first4_pool_total   = EXCLUDED.first4_pool_total,
        total_race_pool     = EXCLUDED.total_race_pool,
        currency            = EXCLUDED.currency,
        data_quality_score  = EXCLUDED.data_quality_score,
        extracted_pools     = EXCLUDED.extracted_pools,
        source              = EXCLUDED.source
    WHERE (EXCLUDED.win_pool_total, EXCLUDED.place_pool_total, EXCLUDED.quinella_pool_total,
           EXCLUDED.trifecta_pool_total, EXCLUDED.exacta_pool_total, EXCLUDED.first4_pool_total,
           EXCLUDED.total_race_pool, EXCLUDED.currency, EXCLUDED.data_quality_score, EXCLUDED.extracted_pools,
           EXCLUDED.source)
          IS DISTINCT FROM
          (t.win_pool_total, t.place_pool_total, t.quinella_pool_total, t.trifecta_pool_total, t.exacta_pool_total,
           t.first4_pool_total, t.total_race_pool, t.currency, t.data_quality_score, t.extracted_pools, t.source)
      AND NOT EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = EXCLUDED.race_id AND p.observed_at > $13)
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM up`

// sqlRacePolls records the poll in the ledger. A replayed poll keeps the
// first row (and its written_at), so the ledger says when a poll first landed.
const sqlRacePolls = `
WITH ins AS (
    INSERT INTO race_polls (race_id, observed_at, poll_id, status, api_generated_at, quality_score, quality)
    VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
    ON CONFLICT (race_id, observed_at) DO NOTHING
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM ins`

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
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd), ` + elapsedUS

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
    RETURNING entrant_id, type, odds, event_timestamp
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
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del), ` + elapsedUS

const sqlRaceResults = `
WITH up AS (
    INSERT INTO race_results AS t (race_id, results_available, results_data, dividends_data, fixed_odds_data,
        result_status, photo_finish, stewards_inquiry, protest_lodged, result_time)
    VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10)
    ON CONFLICT (race_id) DO UPDATE SET
        results_available = EXCLUDED.results_available,
        results_data      = COALESCE(EXCLUDED.results_data, t.results_data),
        dividends_data    = COALESCE(EXCLUDED.dividends_data, t.dividends_data),
        fixed_odds_data   = COALESCE(EXCLUDED.fixed_odds_data, t.fixed_odds_data),
        result_status     = COALESCE(EXCLUDED.result_status, t.result_status),
        photo_finish      = EXCLUDED.photo_finish,
        stewards_inquiry  = EXCLUDED.stewards_inquiry,
        protest_lodged    = EXCLUDED.protest_lodged,
        result_time       = COALESCE(EXCLUDED.result_time, t.result_time)
    WHERE (EXCLUDED.results_available, COALESCE(EXCLUDED.results_data, t.results_data),
           COALESCE(EXCLUDED.dividends_data, t.dividends_data), COALESCE(EXCLUDED.fixed_odds_data, t.fixed_odds_data),
           COALESCE(EXCLUDED.result_status, t.result_status), EXCLUDED.photo_finish, EXCLUDED.stewards_inquiry,
           EXCLUDED.protest_lodged, COALESCE(EXCLUDED.result_time, t.result_time))
          IS DISTINCT FROM
          (t.results_available, t.results_data, t.dividends_data, t.fixed_odds_data, t.result_status,
           t.photo_finish, t.stewards_inquiry, t.protest_lodged, t.result_time)
      AND NOT EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = EXCLUDED.race_id AND p.observed_at > $11)
    RETURNING 1
)
SELECT count(*), ` + elapsedUS + ` FROM up`
