package partitions_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/partitions"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func day(t *testing.T, s string) nzday.Day {
	t.Helper()
	d, err := nzday.Parse(s)
	require.NoError(t, err)
	return d
}

func TestPartitionBoundsAreNZMidnightInstants(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	m, err := partitions.New(db.Pool, partitions.DefaultConfig())
	require.NoError(t, err)

	tests := []struct {
		name     string
		day      string
		from, to string // UTC instants
		hours    float64
	}{
		{"NZST winter day", "2025-07-17", "2025-07-16T12:00:00Z", "2025-07-17T12:00:00Z", 24},
		{"NZDT summer day", "2025-01-15", "2025-01-14T11:00:00Z", "2025-01-15T11:00:00Z", 24},
		{"DST starts: 23 hour day", "2025-09-28", "2025-09-27T12:00:00Z", "2025-09-28T11:00:00Z", 23},
		{"DST ends: 25 hour day", "2025-04-06", "2025-04-05T11:00:00Z", "2025-04-06T12:00:00Z", 25},
	}
	for _, tc := range tests {
		d := day(t, tc.day)
		require.NoError(t, m.EnsureDays(ctx, d, d), tc.name)
		for _, table := range partitions.Tables() {
			var bound string
			// Read the bound back in a zone that is neither UTC nor NZ, to
			// prove it does not depend on the session TimeZone.
			_, err := db.Pool.Exec(ctx, `SET TimeZone = 'America/New_York'`)
			require.NoError(t, err)
			require.NoError(t, db.Pool.QueryRow(ctx, `
				SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = $1`,
				partitions.Name(table, d)).Scan(&bound), tc.name)
			var from, to time.Time
			require.NoError(t, db.Pool.QueryRow(ctx, `
				SELECT (regexp_match($1, 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
				       (regexp_match($1, 'TO \(''([^'']+)''\)'))[1]::timestamptz`, bound).Scan(&from, &to), bound)
			require.Equal(t, tc.from, from.UTC().Format(time.RFC3339), "%s %s from", tc.name, table)
			require.Equal(t, tc.to, to.UTC().Format(time.RFC3339), "%s %s to", tc.name, table)
			require.Equal(t, tc.hours, to.Sub(from).Hours(), tc.name)
		}
	}
}

func TestRowsRouteThroughParentIntoTheirNZDay(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	m, err := partitions.New(db.Pool, partitions.DefaultConfig())
	require.NoError(t, err)
	require.NoError(t, m.EnsureDays(ctx, day(t, "2025-07-16"), day(t, "2025-07-18")))

	// 11:59:59Z on the 16th is 23:59:59 NZST on the 16th; 12:00Z is midnight of the 17th.
	for _, tc := range []struct {
		at, want string
	}{
		{"2025-07-16T11:59:59Z", "odds_history_p20250716"},
		{"2025-07-16T12:00:00Z", "odds_history_p20250717"},
		{"2025-07-17T11:59:59.999999Z", "odds_history_p20250717"},
	} {
		at, err := time.Parse(time.RFC3339Nano, tc.at)
		require.NoError(t, err)
		var got string
		require.NoError(t, db.Pool.QueryRow(ctx, `
			INSERT INTO odds_history (race_id, entrant_id, type, odds, event_timestamp)
			VALUES ('r1', 'e1', 'fixed_win', 2.5, $1) RETURNING tableoid::regclass::text`, at).Scan(&got))
		require.Equal(t, tc.want, got, tc.at)
	}

	_, err = db.Pool.Exec(ctx, `INSERT INTO odds_history (race_id, entrant_id, type, odds, event_timestamp)
		VALUES ('r1', 'e1', 'fixed_win', 2.5, '2030-01-01T00:00:00Z')`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "a row for a day without a partition is refused, not swallowed")
	require.Equal(t, "23514", pgErr.Code)
}

func TestUniqueKeysRejectDuplicateHistoryRows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)

	insertMoney := `INSERT INTO money_flow_history (race_id, entrant_id, polling_timestamp, event_timestamp,
		time_to_start, time_interval, interval_type, hold_percentage, bet_percentage,
		win_pool_amount, place_pool_amount, total_pool_amount, incremental_win_amount, incremental_place_amount)
		VALUES ('r1', 'e1', $1, $1, 10, 10, '2m', 12, 10, 100, 50, 150, 100, 50)`
	_, err := db.Pool.Exec(ctx, insertMoney, at)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, insertMoney, at)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23505", pgErr.Code, "money flow (race, entrant, polling timestamp) is unique")

	insertOdds := `INSERT INTO odds_history (race_id, entrant_id, type, odds, event_timestamp) VALUES ('r1', 'e1', 'pool_win', 3.1, $1)`
	_, err = db.Pool.Exec(ctx, insertOdds, at)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, insertOdds, at)
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "23505", pgErr.Code, "odds (entrant, type, event timestamp) is unique")
}

func TestDropExpiredDropsOnlyPartitionsOlderThanRetention(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	m, err := partitions.New(db.Pool, partitions.Config{DaysBack: 0, DaysAhead: 0, Retention: 30 * 24 * time.Hour})
	require.NoError(t, err)
	now, err := time.Parse(time.RFC3339, "2025-07-17T01:00:00Z") // 13:00 NZST on the 17th
	require.NoError(t, err)
	// The 16th of June ends at midnight NZ on the 17th of June: exactly 30 days
	// and 13 h before now, so it goes; the 17th of June ends 29 d 13 h ago, so it stays.
	require.NoError(t, m.EnsureDays(ctx, day(t, "2025-06-14"), day(t, "2025-06-18")))
	require.NoError(t, m.Ensure(ctx, now))

	dropped, err := m.DropExpired(ctx, now)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"money_flow_history_p20250614", "odds_history_p20250614",
		"money_flow_history_p20250615", "odds_history_p20250615",
		"money_flow_history_p20250616", "odds_history_p20250616",
	}, dropped)

	left, err := m.List(ctx)
	require.NoError(t, err)
	var days []string
	for _, p := range left {
		if p.Table == "odds_history" {
			days = append(days, p.Day.String())
		}
	}
	// pgtest.New also made partitions around the real now; keep only the June/July window.
	require.Subset(t, days, []string{"2025-06-17", "2025-06-18", "2025-07-17"})
	require.NotContains(t, days, "2025-06-16")
}
