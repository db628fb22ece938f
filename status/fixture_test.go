package status_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
)

// A full day behind the page: fullDayRaces races today (and as many on each
// of the days before, as a database that has run for a week holds), every
// race with fullDayRunners runners polled fullDayPolls times, so today's
// money-flow partition alone holds races × runners × polls rows.
const (
	fullDayDays    = 7
	fullDayRaces   = 320
	fullDayRunners = 10
	fullDayPolls   = 70
)

// fullDayNow is the instant the pages are read at: 21:00 NZ today, when
// most of the day's races have run.
func fullDayNow() time.Time { return nzday.Of(time.Now()).Start().Add(21 * time.Hour) }

// fullDayRaceID is the id of race i (0-based) of today.
func fullDayRaceID(t testing.TB, db *pgtest.DB, i int) string {
	t.Helper()
	var id string
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT md5('race-0-' || $1::int)::uuid::text`, i).Scan(&id))
	return id
}

// loadFullDay fills db with the full-day fixture and analyses it. Ids are
// md5-derived UUIDs, so they have the shape of NZ TAB ids. Races start every
// 2m15s from 10:00 NZ; polls are a minute apart up to the start.
func loadFullDay(t testing.TB, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	day0 := nzday.Of(time.Now())
	steps := []string{
		// Meetings of 8 races, for each day back to fullDayDays-1 days ago.
		`INSERT INTO meetings (meeting_id, meeting_name, country, race_type, category, date)
		 SELECT md5('meeting-' || d || '-' || m)::uuid::text, 'Meeting ' || d || '-' || m,
		        CASE WHEN m % 3 = 0 THEN 'AUS' ELSE 'NZ' END,
		        CASE WHEN m % 4 = 0 THEN 'harness' ELSE 'thoroughbred' END,
		        CASE WHEN m % 4 = 0 THEN 'H' ELSE 'T' END,
		        (@day::date - d)
		 FROM generate_series(0, @days::int - 1) d, generate_series(0, @races::int / 8 - 1) m`,
		`INSERT INTO races (race_id, meeting_id, name, race_number, start_time, status, race_date_nz, start_time_nz)
		 SELECT md5('race-' || d || '-' || i)::uuid::text, md5('meeting-' || d || '-' || (i / 8))::uuid::text,
		        'Race ' || i, i % 8 + 1, st,
		        CASE WHEN d > 0 OR st < @now::timestamptz - interval '5 minutes' THEN 'final' ELSE 'open' END,
		        (@day::date - d), to_char(st AT TIME ZONE 'Pacific/Auckland', 'HH24:MI')
		 FROM generate_series(0, @days::int - 1) d, generate_series(0, @races::int - 1) i,
		      LATERAL (SELECT @first::timestamptz - d * interval '1 day' + i * interval '135 seconds' AS st) s`,
		`INSERT INTO entrants (entrant_id, race_id, name, runner_number, barrier, fixed_win_odds, fixed_place_odds,
		        pool_win_odds, pool_place_odds, hold_percentage, win_pool_percentage, place_pool_percentage,
		        win_pool_amount, place_pool_amount)
		 SELECT md5('entrant-' || r.race_id || '-' || n)::uuid::text, r.race_id, 'Runner ' || n, n, n,
		        2 + n, 1.2 + n / 10.0, 2.1 + n, 1.3 + n / 10.0, 10, 10, 10, 100000, 50000
		 FROM races r, generate_series(1, @runners::int) n`,
		`INSERT INTO race_pools (race_id, win_pool_total, place_pool_total, quinella_pool_total, trifecta_pool_total,
		        total_race_pool)
		 SELECT race_id, 1000000, 500000, 300000, 200000, 2000000 FROM races`,
		`INSERT INTO race_results (race_id, results_available, results_data, dividends_data, result_status)
		 SELECT race_id, true,
		        '[{"position":1,"runner_number":3,"name":"Runner 3"},{"position":2,"runner_number":1,"name":"Runner 1"}]',
		        '[{"product_name":"Pool Win","status":"Final","dividend":4.2,"pool_size":10000,"positions":[{"runner_number":3,"position":1}]}]',
		        'final'
		 FROM races WHERE status = 'final'`,
		`INSERT INTO race_polls (race_id, observed_at, poll_id, status, quality_score, quality)
		 SELECT r.race_id, p.at, r.race_id || '@' || k, 'open', 100, '{}'
		 FROM races r, generate_series(0, @polls::int - 1) k,
		      LATERAL (SELECT r.start_time - (@polls::int - k) * interval '1 minute' AS at) p
		 WHERE p.at < @now::timestamptz`,
		// Money flow of today's and yesterday's polls (history partitions
		// exist around today only).
		`INSERT INTO money_flow_history (race_id, entrant_id, polling_timestamp, event_timestamp, time_to_start,
		        time_interval, interval_type, hold_percentage, bet_percentage, win_pool_amount, place_pool_amount,
		        total_pool_amount, incremental_win_amount, incremental_place_amount)
		 SELECT p.race_id, e.entrant_id, p.observed_at, p.observed_at, tts,
		        CASE WHEN tts >= 60 THEN 60 WHEN tts >= 5 THEN tts - tts % 5 ELSE greatest(tts, 0) END,
		        CASE WHEN tts > 30 THEN '5m' WHEN tts > 5 THEN '2m' WHEN tts > 0 THEN '30s' ELSE 'live' END,
		        5 + e.runner_number, 5 + e.runner_number, 1000 * tts, 500 * tts, 1500 * tts, 1000, 500
		 FROM race_polls p JOIN entrants e ON e.race_id = p.race_id
		 JOIN races r ON r.race_id = p.race_id,
		      LATERAL (SELECT round(extract(epoch FROM r.start_time - p.observed_at) / 60)::int AS tts) x
		 WHERE r.start_time >= @first::timestamptz - interval '1 day'`,
		// Alerts: each race's pool surge two minutes before its start, and a
		// steamer on its runner 1 a minute before.
		`INSERT INTO alerts (race_id, entrant_id, kind, time_interval, alert_id, fired_at, time_to_start, reference_at,
		        before_cents, after_cents, window_cents, change_pct, ratio)
		 SELECT race_id, '', 'pool_surge', 2, md5('surge-' || race_id)::uuid, start_time - interval '2 minutes', 2,
		        start_time - interval '3 minutes', 1000000, 1600000, 600000, 60, 1.6
		 FROM races`,
		`INSERT INTO alerts (race_id, entrant_id, kind, time_interval, alert_id, fired_at, time_to_start, reference_at,
		        source, before_odds, after_odds, before_pct, after_pct, change_pct, ratio)
		 SELECT r.race_id, e.entrant_id, 'steamer', 1, md5('steamer-' || r.race_id)::uuid, r.start_time - interval '1 minute', 1,
		        r.start_time - interval '11 minutes', 'fixed_win', 10, 2.5, 10, 40, 30, 4
		 FROM races r JOIN entrants e ON e.race_id = r.race_id AND e.runner_number = 1`,
		`ANALYZE`,
	}
	args := pgx.NamedArgs{"day": day0.String(), "days": fullDayDays, "races": fullDayRaces, "now": fullDayNow(),
		"first": day0.Start().Add(10 * time.Hour), "runners": fullDayRunners, "polls": fullDayPolls}
	for _, q := range steps {
		_, err := db.Pool.Exec(ctx, q, args)
		require.NoError(t, err, "fixture step:\n%s", q)
	}
}
