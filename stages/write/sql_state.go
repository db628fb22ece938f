package write

// Every statement of a poll (or of a round of several polls, see
// WriteBatch) takes one array per column and unnests it, so one statement
// serves any number of rows and of polls. Every statement ends with the same
// projection, countsTail: per key (race or meeting id) its counters a and b,
// then its own server-side execution time in microseconds. statement_timestamp()
// is reset by each Bind/Execute message, so even inside one pipelined batch
// it marks the statement's own start; clock_timestamp() is read after the
// aggregate has drained the data-modifying CTEs.
const elapsedUS = `(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000000)::bigint`

// countsTail turns the CTE n(k, a, b), one row per counted row, into one
// result row: the keys, their a and b sums, and the elapsed time.
const countsTail = `
SELECT COALESCE(array_agg(s.k), '{}'::text[]), COALESCE(array_agg(s.a), '{}'::bigint[]),
       COALESCE(array_agg(s.b), '{}'::bigint[]), ` + elapsedUS + `
FROM (SELECT n.k, sum(n.a)::bigint AS a, sum(n.b)::bigint AS b FROM n GROUP BY n.k) s`

// The state tables (meetings, races, entrants, race_pools, race_results)
// describe the latest observation. Their upserts change a row only when a
// value differs (its updated_at stays put otherwise), never store NULL over a
// known value, and never let an older observation overwrite a newer one:
//
//   - each row records in observed_at the instant of the observation it was
//     last written from, and an observation older than that leaves the row
//     alone (rowFresh). The guard lives in the row, so it holds whichever
//     tables were emptied or left stale: writing the stored polls again in
//     their order rebuilds every row as it was.
//   - a poll not yet in the race_polls ledger (a first delivery) also leaves
//     the rows alone when the ledger holds a later poll of its race
//     (ledgerAllows): that later poll may have confirmed a row without
//     changing it, which observed_at does not record. A poll already in the
//     ledger (a redelivery, a replay) has been applied before, to rows that
//     have not changed since if their observed_at is older, so applying it
//     again changes nothing there; and after the rows were emptied it is
//     being replayed in order, which the ledger's later polls must not stop.
//
// A stale observation may still insert a row that does not exist yet.

// rowFresh: the observation in EXCLUDED is not older than the stored row's.
const rowFresh = `(t.observed_at IS NULL OR t.observed_at <= EXCLUDED.observed_at)`

// ledgerAllows says whether a poll of race (an SQL expression) observed at
// obs may update state rows, as far as the ledger is concerned. It must be
// evaluated before the poll's own ledger row is inserted.
func ledgerAllows(race, obs string) string {
	return `(NOT EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = ` + race + ` AND p.observed_at > ` + obs + `)
          OR EXISTS (SELECT 1 FROM race_polls p WHERE p.race_id = ` + race + ` AND p.observed_at = ` + obs + `))`
}

// sqlMeetings upserts meetings, one row per meeting id. A row comes from a
// poll (race_id set: the ledger guard covers the polls of every race of the
// meeting, since any of them may have confirmed it) or from the meetings list
// (race_id NULL: rowFresh alone). The meeting row is also the one row polls
// of different races contend for: ON CONFLICT locks the conflicting row until
// commit even when its WHERE rejects the update, so an unchanged or stale
// meeting is filtered out before the insert is tried, and concurrent polls of
// one meeting's races do not queue behind each other. Counter a counts
// inserted rows, b updated ones.
var sqlMeetings = `
WITH v AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
        $9::text[], $10::timestamptz[], $11::text[])
        AS v(meeting_id, meeting_name, country, state, race_type, category, date, track_condition, tote_status,
             observed_at, race_id)
), up AS (
    INSERT INTO meetings AS t (meeting_id, meeting_name, country, state, race_type, category, date, track_condition,
        tote_status, observed_at)
    SELECT v.meeting_id, v.meeting_name, v.country, v.state, v.race_type, v.category, v.date::date,
        v.track_condition, v.tote_status, v.observed_at
    FROM v
    WHERE NOT EXISTS (
        SELECT 1 FROM meetings m
        WHERE m.meeting_id = v.meeting_id
          AND ((v.meeting_name, v.country, COALESCE(v.state, m.state), v.race_type, v.category, v.date::date,
                COALESCE(v.track_condition, m.track_condition), COALESCE(v.tote_status, m.tote_status))
               IS NOT DISTINCT FROM
               (m.meeting_name, m.country, m.state, m.race_type, m.category, m.date, m.track_condition, m.tote_status)
               OR m.observed_at > v.observed_at
               OR (v.race_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM races r JOIN race_polls p ON p.race_id = r.race_id
                               WHERE r.meeting_id = v.meeting_id AND p.observed_at > v.observed_at)
                   AND NOT EXISTS (SELECT 1 FROM race_polls p
                                   WHERE p.race_id = v.race_id AND p.observed_at = v.observed_at))))
    ON CONFLICT (meeting_id) DO UPDATE SET
        meeting_name    = EXCLUDED.meeting_name,
        country         = EXCLUDED.country,
        state           = COALESCE(EXCLUDED.state, t.state),
        race_type       = EXCLUDED.race_type,
        category        = EXCLUDED.category,
        date            = EXCLUDED.date,
        track_condition = COALESCE(EXCLUDED.track_condition, t.track_condition),
        tote_status     = COALESCE(EXCLUDED.tote_status, t.tote_status),
        observed_at     = EXCLUDED.observed_at
    WHERE (EXCLUDED.meeting_name, EXCLUDED.country, COALESCE(EXCLUDED.state, t.state), EXCLUDED.race_type,
           EXCLUDED.category, EXCLUDED.date, COALESCE(EXCLUDED.track_condition, t.track_condition),
           COALESCE(EXCLUDED.tote_status, t.tote_status))
          IS DISTINCT FROM
          (t.meeting_name, t.country, t.state, t.race_type, t.category, t.date, t.track_condition, t.tote_status)
      AND ` + rowFresh + `
    RETURNING t.meeting_id, (t.xmax = 0) AS inserted
), n AS (
    SELECT meeting_id AS k, inserted::int AS a, (NOT inserted)::int AS b FROM up
)` + countsTail

var sqlRaces = `
WITH up AS (
    INSERT INTO races AS t (race_id, meeting_id, name, race_number, start_time, status, actual_start, race_date_nz,
        start_time_nz, distance, track_condition, track_surface, track_direction, rail_position, weather, type,
        total_prize_money, entrant_count, field_size, positions_paid, silk_url, silk_base_url, video_channels,
        api_generated_at, observed_at)
    SELECT u.race_id, u.meeting_id, u.name, u.race_number, u.start_time, u.status, u.actual_start,
        u.race_date_nz::date, u.start_time_nz, u.distance, u.track_condition, u.track_surface, u.track_direction,
        u.rail_position, u.weather, u.type, u.total_prize_money, u.entrant_count, u.field_size, u.positions_paid,
        u.silk_url, u.silk_base_url, u.video_channels::jsonb, u.api_generated_at, u.observed_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::timestamptz[],
        $8::text[], $9::text[], $10::int[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
        $16::text[], $17::bigint[], $18::int[], $19::int[], $20::int[], $21::text[], $22::text[], $23::text[],
        $24::timestamptz[], $25::timestamptz[])
        AS u(race_id, meeting_id, name, race_number, start_time, status, actual_start, race_date_nz, start_time_nz,
             distance, track_condition, track_surface, track_direction, rail_position, weather, type,
             total_prize_money, entrant_count, field_size, positions_paid, silk_url, silk_base_url, video_channels,
             api_generated_at, observed_at)
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
        api_generated_at  = COALESCE(EXCLUDED.api_generated_at, t.api_generated_at),
        observed_at       = EXCLUDED.observed_at
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
      AND ` + rowFresh + `
      AND ` + ledgerAllows("EXCLUDED.race_id", "EXCLUDED.observed_at") + `
    RETURNING t.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM up
)` + countsTail

var sqlEntrants = `
WITH up AS (
    INSERT INTO entrants AS t (entrant_id, race_id, name, runner_number, barrier, is_scratched, is_late_scratched,
        is_emergency, scratch_time, fixed_win_odds, fixed_place_odds, pool_win_odds, pool_place_odds,
        hold_percentage, bet_percentage, win_pool_percentage, place_pool_percentage, win_pool_amount,
        place_pool_amount, jockey, trainer_name, silk_colours, silk_url_64x64, silk_url_128x128, favourite, mover,
        runner_change, observed_at)
    SELECT u.entrant_id, u.race_id, u.name, u.runner_number, u.barrier, u.is_scratched, u.is_late_scratched,
        u.is_emergency, u.scratch_time, u.fixed_win_odds, u.fixed_place_odds, u.pool_win_odds, u.pool_place_odds,
        u.hold_percentage, u.bet_percentage, u.win_pool_percentage, u.place_pool_percentage, u.win_pool_amount,
        u.place_pool_amount, u.jockey, u.trainer_name, u.silk_colours, u.silk_url_64x64, u.silk_url_128x128,
        u.favourite, u.mover, u.runner_change::jsonb, u.observed_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::bool[], $7::bool[], $8::bool[],
        $9::timestamptz[], $10::float8[], $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[],
        $16::float8[], $17::float8[], $18::bigint[], $19::bigint[], $20::text[], $21::text[], $22::text[],
        $23::text[], $24::text[], $25::bool[], $26::bool[], $27::text[], $28::timestamptz[])
        AS u(entrant_id, race_id, name, runner_number, barrier, is_scratched, is_late_scratched, is_emergency,
             scratch_time, fixed_win_odds, fixed_place_odds, pool_win_odds, pool_place_odds, hold_percentage,
             bet_percentage, win_pool_percentage, place_pool_percentage, win_pool_amount, place_pool_amount, jockey,
             trainer_name, silk_colours, silk_url_64x64, silk_url_128x128, favourite, mover, runner_change,
             observed_at)
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
        runner_change         = COALESCE(EXCLUDED.runner_change, t.runner_change),
        observed_at           = EXCLUDED.observed_at
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
      AND ` + rowFresh + `
      AND ` + ledgerAllows("EXCLUDED.race_id", "EXCLUDED.observed_at") + `
    RETURNING t.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM up
)` + countsTail

var sqlRacePools = `
WITH up AS (
    INSERT INTO race_pools AS t (race_id, win_pool_total, place_pool_total, quinella_pool_total, trifecta_pool_total,
        exacta_pool_total, first4_pool_total, total_race_pool, currency, data_quality_score, extracted_pools, source,
        observed_at)
    SELECT *
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
        $8::bigint[], $9::text[], $10::int[], $11::int[], $12::text[], $13::timestamptz[])
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
        source              = EXCLUDED.source,
        observed_at         = EXCLUDED.observed_at
    WHERE (EXCLUDED.win_pool_total, EXCLUDED.place_pool_total, EXCLUDED.quinella_pool_total,
           EXCLUDED.trifecta_pool_total, EXCLUDED.exacta_pool_total, EXCLUDED.first4_pool_total,
           EXCLUDED.total_race_pool, EXCLUDED.currency, EXCLUDED.data_quality_score, EXCLUDED.extracted_pools,
           EXCLUDED.source)
          IS DISTINCT FROM
          (t.win_pool_total, t.place_pool_total, t.quinella_pool_total, t.trifecta_pool_total, t.exacta_pool_total,
           t.first4_pool_total, t.total_race_pool, t.currency, t.data_quality_score, t.extracted_pools, t.source)
      AND ` + rowFresh + `
      AND ` + ledgerAllows("EXCLUDED.race_id", "EXCLUDED.observed_at") + `
    RETURNING t.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM up
)` + countsTail

var sqlRaceResults = `
WITH up AS (
    INSERT INTO race_results AS t (race_id, results_available, results_data, dividends_data, fixed_odds_data,
        result_status, photo_finish, stewards_inquiry, protest_lodged, result_time, observed_at)
    SELECT u.race_id, u.results_available, u.results_data::jsonb, u.dividends_data::jsonb, u.fixed_odds_data::jsonb,
        u.result_status, u.photo_finish, u.stewards_inquiry, u.protest_lodged, u.result_time, u.observed_at
    FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::bool[],
        $9::bool[], $10::timestamptz[], $11::timestamptz[])
        AS u(race_id, results_available, results_data, dividends_data, fixed_odds_data, result_status, photo_finish,
             stewards_inquiry, protest_lodged, result_time, observed_at)
    ON CONFLICT (race_id) DO UPDATE SET
        results_available = EXCLUDED.results_available,
        results_data      = COALESCE(EXCLUDED.results_data, t.results_data),
        dividends_data    = COALESCE(EXCLUDED.dividends_data, t.dividends_data),
        fixed_odds_data   = COALESCE(EXCLUDED.fixed_odds_data, t.fixed_odds_data),
        result_status     = COALESCE(EXCLUDED.result_status, t.result_status),
        photo_finish      = EXCLUDED.photo_finish,
        stewards_inquiry  = EXCLUDED.stewards_inquiry,
        protest_lodged    = EXCLUDED.protest_lodged,
        result_time       = COALESCE(EXCLUDED.result_time, t.result_time),
        observed_at       = EXCLUDED.observed_at
    WHERE (EXCLUDED.results_available, COALESCE(EXCLUDED.results_data, t.results_data),
           COALESCE(EXCLUDED.dividends_data, t.dividends_data), COALESCE(EXCLUDED.fixed_odds_data, t.fixed_odds_data),
           COALESCE(EXCLUDED.result_status, t.result_status), EXCLUDED.photo_finish, EXCLUDED.stewards_inquiry,
           EXCLUDED.protest_lodged, COALESCE(EXCLUDED.result_time, t.result_time))
          IS DISTINCT FROM
          (t.results_available, t.results_data, t.dividends_data, t.fixed_odds_data, t.result_status,
           t.photo_finish, t.stewards_inquiry, t.protest_lodged, t.result_time)
      AND ` + rowFresh + `
      AND ` + ledgerAllows("EXCLUDED.race_id", "EXCLUDED.observed_at") + `
    RETURNING t.race_id
), n AS (
    SELECT race_id AS k, 1 AS a, 0 AS b FROM up
)` + countsTail
