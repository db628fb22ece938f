package write_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// reportLatency adds p50/p95 per poll in milliseconds.
func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.95), "p95-ms")
}

// BenchmarkWritePoll16Runners writes one new poll of a 16-runner race per
// iteration, each in its own transaction: the steady state of a polled race
// (4 upserts, a ledger row, 16 money-flow rows with increments, 64 odds
// candidates and change detection), its series' ends looked up or, as the
// engine writes, remembered from the previous poll (write.Ends).
func BenchmarkWritePoll16Runners(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts func() []write.Option
	}{
		{"ends=looked-up", func() []write.Option { return nil }},
		{"ends=remembered", func() []write.Option { return []write.Option{write.WithEnds(write.NewEnds(write.DefaultEndsRaces))} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			db := pgtest.New(b)
			ctx := context.Background()
			opts := tc.opts()
			base := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
			g := newRaceGen("bench", base.Add(24*time.Hour))
			writePoll := func(snap transform.RaceSnapshot) (write.Rows, error) {
				tx, err := db.Pool.Begin(ctx)
				if err != nil {
					return write.Rows{}, err
				}
				defer func() { _ = tx.Rollback(ctx) }()
				rows, err := write.Write(ctx, tx, write.Poll{Snapshot: snap}, opts...)
				if err != nil {
					return rows, err
				}
				return rows, tx.Commit(ctx)
			}
			// Warm the connections' statement caches so iterations measure
			// the steady state.
			if _, err := writePoll(g.poll(1, base)); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			perStep := map[string]time.Duration{}
			i := 1
			for b.Loop() {
				i++
				snap := g.poll(i, base.Add(time.Duration(i)*time.Second))
				start := time.Now()
				rows, err := writePoll(snap)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				for k, d := range rows.Durations {
					perStep[k] += d
				}
			}
			reportLatency(b, lat)
			// Mean server time per statement (client wall time for total),
			// to see where a poll's time goes.
			for k, d := range perStep {
				b.ReportMetric(float64(d)/float64(len(lat))/float64(time.Microsecond), k+"-us")
			}
		})
	}
}

// BenchmarkWritePollsParallel writes polls of several races at once, one
// writer per race as the flow's shards do, and reports throughput.
func BenchmarkWritePollsParallel(b *testing.B) {
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db := pgtest.New(b)
			ctx := context.Background()
			base := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
			var next atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					g := newRaceGen(fmt.Sprintf("bench-%d", w), base.Add(24*time.Hour))
					var mine []time.Duration
					for k := 1; ; k++ {
						if next.Add(1) > int64(b.N) {
							break
						}
						snap := g.poll(k, base.Add(time.Duration(k)*time.Second))
						t0 := time.Now()
						if _, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: snap}); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "polls/s")
			reportLatency(b, lat)
		})
	}
}

// BenchmarkWriteDay writes the simulated day (internal/simday: 32 races,
// 1,095 polls) into emptied tables, as a replay does: one poll per
// transaction, or WriteBatch with several polls per transaction. writers
// split the races between that many connections, each writing its races'
// polls in order. It reports polls/s.
func BenchmarkWriteDay(b *testing.B) {
	snaps, err := dayOnce()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		batch, writers int
	}{{1, 1}, {16, 1}, {64, 1}, {1, 2}, {64, 2}} {
		b.Run(fmt.Sprintf("batch=%d/writers=%d", tc.batch, tc.writers), func(b *testing.B) {
			db := pgtest.New(b)
			ctx := context.Background()
			// Each writer gets whole races, in the day's order.
			parts := make([][]write.Poll, tc.writers)
			owner := map[string]int{}
			for _, s := range snaps {
				w, ok := owner[s.RaceID]
				if !ok {
					w = len(owner) % tc.writers
					owner[s.RaceID] = w
				}
				parts[w] = append(parts[w], write.Poll{Snapshot: s})
			}
			polls := 0
			var elapsed time.Duration
			var mu sync.Mutex
			perTable := map[string]time.Duration{}
			for b.Loop() {
				b.StopTimer()
				if _, err := db.Pool.Exec(ctx, `TRUNCATE meetings, races, entrants, race_pools, race_results,
					race_polls, money_flow_history, odds_history CASCADE`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, part := range parts {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for chunk := range slices.Chunk(part, tc.batch) {
							var d map[string]time.Duration
							if tc.batch == 1 {
								r, err := write.WriteTx(ctx, db.Pool, write.Poll{Snapshot: chunk[0].Snapshot})
								if err != nil {
									b.Error(err)
									return
								}
								d = r.Durations
							} else {
								r, err := write.WriteBatchTx(ctx, db.Pool, chunk)
								if err != nil {
									b.Error(err)
									return
								}
								d = r.Durations
							}
							mu.Lock()
							for k, v := range d {
								perTable[k] += v
							}
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				elapsed += time.Since(start)
				polls += len(snaps)
			}
			b.ReportMetric(float64(polls)/elapsed.Seconds(), "polls/s")
			// Mean time per poll by table (server) and commit/total (client).
			for k, d := range perTable {
				b.ReportMetric(float64(d)/float64(polls)/float64(time.Microsecond), k+"-us/poll")
			}
		})
	}
}
