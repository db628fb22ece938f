package baseline_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// event is one thing the live flow did: a poll written or a meetings list
// applied.
type event struct {
	at   time.Time
	poll *transform.RaceSnapshot
	list *baseline.Response
}

// dayEvents are a simulated day's polls and meetings lists in observation
// order.
func dayEvents(t *testing.T) []event {
	t.Helper()
	day, err := simday.Build(context.Background(), simday.Config{})
	require.NoError(t, err)
	snaps, err := day.Snapshots()
	require.NoError(t, err)
	var out []event
	i, j := 0, 0
	for i < len(snaps) || j < len(day.Baselines) {
		if j == len(day.Baselines) || (i < len(snaps) && snaps[i].ObservedAt.Before(day.Baselines[j].ObservedAt)) {
			out = append(out, event{at: snaps[i].ObservedAt, poll: &snaps[i]})
			i++
			continue
		}
		b := day.Baselines[j]
		out = append(out, event{at: b.ObservedAt, list: &baseline.Response{Day: b.Day, ObservedAt: b.ObservedAt, Pages: b.Pages}})
		j++
	}
	return out
}

var volatile = pgtest.Bookkeeping()

func captureDomain(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range pgtest.DomainTables() {
		out[table] = pgtest.Rows(t, pool, table, volatile...)
	}
	return out
}

// TestReplayOfStoredPollsAndListsRebuildsWhatOnlyTheListCarries runs a
// simulated day as the live flow does (each meetings list stored and
// applied, each poll written), then rebuilds it from what was stored: the
// polls and the stored lists, re-applied in observation order. Every table
// must come back field for field, meetings' tote status included, which no
// poll carries.
func TestReplayOfStoredPollsAndListsRebuildsWhatOnlyTheListCarries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events := dayEvents(t)
	db := pgtest.New(t)
	for _, e := range events {
		if e.poll != nil {
			_, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: *e.poll})
			require.NoError(t, err)
			continue
		}
		require.NoError(t, baseline.Store(ctx, db.Pool, *e.list))
		applied, err := baseline.Apply(ctx, db.Pool, *e.list, baseline.Filter{})
		require.NoError(t, err)
		require.Empty(t, applied.Counts.Rejected)
	}
	live := captureDomain(t, db.Pool)
	var tote int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM meetings WHERE tote_status IS NOT NULL`).Scan(&tote))
	require.Positive(t, tote, "the day's lists carry tote statuses")

	replay := func(t *testing.T) {
		stored, err := baseline.Stored(ctx, db.Pool, time.Time{}, time.Time{})
		require.NoError(t, err)
		var polls []transform.RaceSnapshot
		for _, e := range events {
			if e.poll != nil {
				polls = append(polls, *e.poll)
			}
		}
		// Interleave the stored lists with the polls by instant.
		i := 0
		for _, p := range polls {
			for i < len(stored) && stored[i].Before(p.ObservedAt) {
				resp, err := baseline.Load(ctx, db.Pool, stored[i])
				require.NoError(t, err)
				_, err = baseline.Apply(ctx, db.Pool, resp, baseline.Filter{})
				require.NoError(t, err)
				i++
			}
			_, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: p})
			require.NoError(t, err)
		}
		for ; i < len(stored); i++ {
			resp, err := baseline.Load(ctx, db.Pool, stored[i])
			require.NoError(t, err)
			_, err = baseline.Apply(ctx, db.Pool, resp, baseline.Filter{})
			require.NoError(t, err)
		}
	}

	const data = `meetings, races, entrants, race_pools, race_results, money_flow_history, odds_history`
	for _, tc := range []struct{ name, truncate string }{
		{"data tables emptied, ledger kept", data},
		{"everything emptied", data + `, race_polls`},
		{"nothing emptied", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.truncate != "" {
				_, err := db.Pool.Exec(ctx, `TRUNCATE `+tc.truncate+` CASCADE`)
				require.NoError(t, err)
			}
			replay(t)
			got := captureDomain(t, db.Pool)
			for _, table := range pgtest.DomainTables() {
				if d := pgtest.DiffRows(live[table], got[table], 3); d != "" {
					t.Errorf("%s: %s", table, d)
				}
			}
		})
	}
}
