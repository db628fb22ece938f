package detect_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// stored is the day written in batches and analysed, as a database that has
// run the day holds it.
func stored(t testing.TB, snaps []transform.RaceSnapshot) *pgtest.DB {
	t.Helper()
	db := newDB(t)
	ctx := context.Background()
	polls := make([]write.Poll, 0, len(snaps))
	for _, s := range snaps {
		polls = append(polls, write.Poll{Snapshot: s})
	}
	for i := 0; i < len(polls); i += 200 {
		_, err := write.WriteBatchTx(ctx, db.Pool, polls[i:min(i+200, len(polls))])
		require.NoError(t, err)
	}
	_, err := db.Pool.Exec(ctx, "ANALYZE")
	require.NoError(t, err)
	return db
}

func TestEveryReadWalksAnIndexWithinTheSpansPartitions(t *testing.T) {
	t.Parallel()
	d, err := dayOnce()
	require.NoError(t, err)
	db := stored(t, d.snaps)
	// A poll a minute before the start of the plunged race.
	i := slices.IndexFunc(d.snaps, func(s transform.RaceSnapshot) bool {
		return s.RaceID == d.plunge.RaceID && !s.ObservedAt.Before(d.plunge.At)
	})
	s := d.snaps[i]
	from := s.ObservedAt.Add(-alerts.Span(alerts.DefaultConfig()))
	for name, q := range detect.Reads() {
		t.Run(name, func(t *testing.T) {
			args := []any{s.RaceID, s.ObservedAt, from}
			switch name {
			case "plan":
				args = []any{s.RaceID, s.ObservedAt, 10, from}
			case "entrants":
				args = args[:1]
			}
			scans, out := db.Scans(t, q, args...)
			partitions := map[string]map[string]bool{} // table → its partitions read
			for _, sc := range scans {
				if table, _, ok := strings.Cut(sc.Relation, "_p2"); ok {
					if partitions[table] == nil {
						partitions[table] = map[string]bool{}
					}
					partitions[table][sc.Relation] = true
				}
			}
			require.NotEmpty(t, scans, "plan reads no table:\n%s", out)
			for _, sc := range scans {
				require.NotEqual(t, "Seq Scan", sc.Node, "plan scans a table (%s):\n%s", sc, out)
			}
			// The span lies within the race's day; a price from before it
			// may be looked for in the day before.
			for table, ps := range partitions {
				require.LessOrEqual(t, len(ps), 2, "%s partitions read: %v", table, ps)
			}
		})
	}
}

// BenchmarkDetectPoll judges every poll of the stored day in turn (a
// meeting of 8 races on the flow's cadence, one with a plunge), as the
// detect stage does after each write, and reports the p50 and p95 of one
// poll besides the mean. Most polls are not judged (far from the start, or
// the race closed) and read no history.
func BenchmarkDetectPoll(b *testing.B) {
	d, err := dayOnce()
	require.NoError(b, err)
	benchmarkPolls(b, stored(b, d.snaps), d.snaps)
}

// BenchmarkDetectJudgedPoll judges only the polls the rules judge (the race
// open, within a window): each reads its race's last 15 minutes of money
// flow and prices in one round trip and runs the rules.
func BenchmarkDetectJudgedPoll(b *testing.B) {
	d, err := dayOnce()
	require.NoError(b, err)
	cfg := alerts.DefaultConfig()
	var judged []transform.RaceSnapshot
	for _, s := range d.snaps {
		if len(s.MoneyFlow) > 0 && alerts.Judged(cfg, alerts.Poll{Open: s.Race.Status == transform.StatusOpen,
			MinutesToStart: s.MoneyFlow[0].TimeToStart}) {
			judged = append(judged, s)
		}
	}
	benchmarkPolls(b, stored(b, d.snaps), judged)
}

func benchmarkPolls(b *testing.B, db *pgtest.DB, polls []transform.RaceSnapshot) {
	ctx := context.Background()
	cfg := alerts.DefaultConfig()
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		s := polls[i%len(polls)]
		start := time.Now()
		if _, err := detect.Poll(ctx, db.Pool, cfg, s.RaceID, s.ObservedAt); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.95), "p95-ms")
	b.ReportMetric(float64(len(polls)), "polls")
}
