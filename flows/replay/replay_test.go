package replay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/internal/simday"
	"github.com/raceflow/raceflow/stages/write"
)

// smallLive is the small day processed by the real flow in a database of
// its own, with what the live flow left in every table.
type smallLive struct {
	day  *simday.Day
	db   *pgtest.DB
	cfg  flows.Config
	live map[string][]string
}

func newSmallLive(t *testing.T) *smallLive {
	t.Helper()
	s := &smallLive{day: smallDay(t), db: pgtest.New(t), cfg: flows.DefaultConfig()}
	processDay(t, s.db.Pool, s.cfg, s.day)
	s.live = domainRows(t, s.db.Pool)
	return s
}

func (s *smallLive) replay(t *testing.T, ctx context.Context, rc replay.Config, progress func(replay.Progress)) (replay.Summary, error) {
	t.Helper()
	r, err := replay.New(rc, replay.Deps{Pool: s.db.Pool, Driver: openDriver(t, s.cfg, s.db.Pool), Logger: quietLogger(),
		Progress: progress})
	require.NoError(t, err)
	return r.Run(ctx)
}

func (s *smallLive) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := s.db.Pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// requireLive fails with the rows that differ from what the live flow left.
func (s *smallLive) requireLive(t *testing.T) {
	t.Helper()
	got := domainRows(t, s.db.Pool)
	for _, table := range pgtest.DomainTables() {
		if d := pgtest.DiffRows(s.live[table], got[table], 3); d != "" {
			t.Errorf("%s: %s", table, d)
		}
	}
}

// pollsOf are the recorded fetches of a race, in order.
func (s *smallLive) pollsOf(raceID string) []simday.Fetch {
	var out []simday.Fetch
	for _, f := range s.day.Fetches {
		if f.RaceID == raceID {
			out = append(out, f)
		}
	}
	return out
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func TestABatchTheDatabaseRefusesIsWrittenPollByPollAndStopsOnlyTheBadPollsRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSmallLive(t)
	bad := s.day.Races[1].ID
	polls := s.pollsOf(bad)
	at := polls[4].ObservedAt
	s.exec(t, `TRUNCATE `+dataTables+`, race_polls CASCADE`)
	// The database refuses the race's runners from its fifth poll on.
	s.exec(t, fmt.Sprintf(`ALTER TABLE entrants ADD CONSTRAINT replay_test_refuse CHECK (race_id <> %s OR observed_at < %s)`,
		quote(bad), quote(at.UTC().Format("2006-01-02 15:04:05.999999Z07"))))

	rc := replay.DefaultConfig()
	rc.RunID, rc.BatchSize = "refused", 32
	first, err := s.replay(t, ctx, rc, nil)
	require.ErrorIs(t, err, replay.ErrIncomplete)
	require.Len(t, first.Failures, 1)
	f := first.Failures[0]
	require.Equal(t, bad, f.RaceID)
	require.Equal(t, write.PollID(bad, at), f.PollID, "the failure names the poll at fault")
	require.Equal(t, "write", f.Stage)
	require.Equal(t, "database", f.Kind)
	require.True(t, f.Stopped)
	require.Equal(t, len(s.day.Fetches)-(len(polls)-4), first.Polls, "every other poll was written")
	require.Equal(t, 4, count(t, s.db.Pool, `SELECT count(*) FROM race_polls WHERE race_id = $1`, bad))
	require.Equal(t, len(s.day.Fetches)-len(polls), count(t, s.db.Pool, `SELECT count(*) FROM race_polls WHERE race_id <> $1`, bad))

	// Fixed, the run resumes at the poll that failed; a rebuild of the
	// race then orders its polls among the lists as live.
	s.exec(t, `ALTER TABLE entrants DROP CONSTRAINT replay_test_refuse`)
	rc.Resume = true
	second, err := s.replay(t, ctx, rc, nil)
	require.NoError(t, err)
	require.True(t, second.Complete)
	require.Equal(t, len(polls)-4, second.Polls)
	require.Equal(t, len(s.day.Fetches), count(t, s.db.Pool, `SELECT count(*) FROM race_polls`))
	rb := replay.DefaultConfig()
	rb.Rebuild, rb.Filter.RaceIDs = true, []string{bad}
	_, err = s.replay(t, ctx, rb, nil)
	require.NoError(t, err)
	s.requireLive(t)
}

func TestRebuildLeavesARaceAloneWhenItsLedgerHoldsAPollNoLongerStored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSmallLive(t)
	race := s.day.Races[2].ID
	table := pgx.Identifier{"watermill_" + driver.ShardTopic(s.cfg.Namespace, driver.Fetched, driver.Shard(race, s.cfg.Shards)).String()}.Sanitize()
	// Retention pruned the race's first stored fetch.
	s.exec(t, `DELETE FROM `+table+` WHERE "offset" = (SELECT min("offset") FROM `+table+` WHERE metadata->>'race_id' = $1)`, race)
	s.exec(t, `UPDATE entrants SET fixed_win_odds = 999 WHERE race_id = $1`, race)
	before := domainRows(t, s.db.Pool)

	rc := replay.DefaultConfig()
	rc.Rebuild, rc.Filter.RaceIDs = true, []string{race}
	sum, err := s.replay(t, ctx, rc, nil)
	require.ErrorIs(t, err, replay.ErrIncomplete)
	require.Len(t, sum.Failures, 1)
	require.Equal(t, race, sum.Failures[0].RaceID)
	require.Equal(t, "rebuild", sum.Failures[0].Stage)
	require.Equal(t, "not_stored", sum.Failures[0].Kind)
	require.Contains(t, sum.Failures[0].Reason, "1 of the")
	require.Zero(t, sum.Polls)
	require.Equal(t, before, domainRows(t, s.db.Pool), "nothing of the race was emptied")
}

func TestInterruptedRebuildResumesWithTheRacesItHadNotRebuilt(t *testing.T) {
	t.Parallel()
	s := newSmallLive(t)
	// Damage every race where only a rebuild repairs it.
	s.exec(t, `UPDATE entrants SET fixed_win_odds = 999, observed_at = observed_at + interval '1 day'`)
	s.exec(t, `UPDATE race_polls SET quality_score = -1`)

	rc := replay.DefaultConfig()
	rc.RunID, rc.Rebuild, rc.Concurrency = "rebuild-resume", true, 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := s.replay(t, ctx, rc, func(replay.Progress) { cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, first.Complete)
	require.Positive(t, first.Polls)
	require.Less(t, first.Polls, len(s.day.Fetches))
	require.Equal(t, first.Polls, count(t, s.db.Pool, `SELECT count(*) FROM race_polls WHERE quality_score >= 0`),
		"the races rebuilt are whole, the others untouched")

	rc.Resume = true
	second, err := s.replay(t, context.Background(), rc, nil)
	require.NoError(t, err)
	require.True(t, second.Complete)
	require.True(t, second.Rebuild, "the resumed run rebuilds, as it was started")
	require.Equal(t, first.Polls, second.AlreadyDone)
	require.Equal(t, len(s.day.Fetches), first.Polls+second.Polls)
	s.requireLive(t)
}

func TestInterruptedReplayAppliesEachMeetingsListOnce(t *testing.T) {
	t.Parallel()
	s := newSmallLive(t)
	s.exec(t, `TRUNCATE `+dataTables+`, race_polls CASCADE`)
	rc := replay.DefaultConfig()
	rc.RunID, rc.BatchSize = "lists-resume", 16
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := s.replay(t, ctx, rc, func(p replay.Progress) {
		if p.Done == len(s.day.Fetches)/2 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Positive(t, first.Lists.Applied)
	require.Less(t, first.Lists.Applied, len(s.day.Baselines))

	rc.Resume = true
	second, err := s.replay(t, context.Background(), rc, nil)
	require.NoError(t, err)
	require.True(t, second.Complete)
	require.Equal(t, len(s.day.Baselines), first.Lists.Applied+second.Lists.Applied, "each list applied once")
	require.Equal(t, len(s.day.Fetches), first.Polls+second.Polls, "each poll written once")
	require.Equal(t, len(s.day.Baselines), count(t, s.db.Pool,
		`SELECT polls FROM replay_progress WHERE run_id = $1 AND last_topic = 'baseline_responses'`, rc.RunID))
	s.requireLive(t)
}

func TestReplayOfSomeRacesAppliesOnlyTheirRowsOfTheMeetingsLists(t *testing.T) {
	t.Parallel()
	s := newSmallLive(t)
	race := s.day.Races[0]
	row := func() string {
		var out string
		// The meeting's other fields also come from the polls of its
		// other races; its tote status only from the lists.
		require.NoError(t, s.db.Pool.QueryRow(context.Background(), `SELECT ROW(r.name, r.status, r.start_time, r.distance,
			r.track_condition, r.weather, r.observed_at, m.tote_status)::text
			FROM races r JOIN meetings m USING (meeting_id) WHERE r.race_id = $1`, race.ID).Scan(&out))
		return out
	}
	want := row()
	s.exec(t, `TRUNCATE `+dataTables+`, race_polls CASCADE`)

	rc := replay.DefaultConfig()
	rc.Filter.RaceIDs = []string{race.ID}
	sum, err := s.replay(t, context.Background(), rc, nil)
	require.NoError(t, err)
	require.Equal(t, len(s.pollsOf(race.ID)), sum.Polls)
	require.Equal(t, len(s.day.Baselines), sum.Lists.Applied)
	require.Equal(t, 1, count(t, s.db.Pool, `SELECT count(*) FROM races`), "no other race of the lists")
	require.Equal(t, 1, count(t, s.db.Pool, `SELECT count(*) FROM meetings`), "no other meeting of the lists")
	require.Equal(t, want, row(), "the race as live, and its meeting's tote status")
}
