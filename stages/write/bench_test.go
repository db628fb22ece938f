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
// candidates and change detection).
func BenchmarkWritePoll16Runners(b *testing.B) {
	db := pgtest.New(b)
	ctx := context.Background()
	base := time.Now().Add(-6 * time.Hour).Truncate(time.Second)
	g := newRaceGen("bench", base.Add(24*time.Hour))
	// Warm the connections' statement caches so iterations measure the
	// steady state.
	if _, err := write.WriteTx(ctx, db.Pool, g.poll(1, base)); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	perStep := map[string]time.Duration{}
	i := 1
	for b.Loop() {
		i++
		snap := g.poll(i, base.Add(time.Duration(i)*time.Second))
		start := time.Now()
		rows, err := write.WriteTx(ctx, db.Pool, snap)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		for k, d := range rows.Durations {
			perStep[k] += d
		}
	}
	reportLatency(b, lat)
	// Mean server time per statement (client wall time for total/commit),
	// to see where a poll's time goes.
	for k, d := range perStep {
		b.ReportMetric(float64(d)/float64(len(lat))/float64(time.Microsecond), k+"-us")
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
						if _, err := write.WriteTx(ctx, db.Pool, snap); err != nil {
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
