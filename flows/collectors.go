package flows

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/stages/write"
)

// The collectors here read state at scrape time (queues, the pool, the
// scheduler) instead of counting events, so they are right after a
// restart and cost nothing between scrapes.

// queueQueryTimeout bounds the queue statistics' queries, so a slow
// database delays a scrape rather than piling scrapes up.
const queueQueryTimeout = 3 * time.Second

// queueStatsFresh is how long one reading of the queue statistics serves
// every scrape: however many scrapers there are, the backend is asked at
// most once per period.
const queueStatsFresh = 2 * time.Second

// QueueStatser reads a flow's queue statistics; every driver.Driver does.
type QueueStatser interface {
	QueueStats(ctx context.Context) ([]driver.QueueStat, error)
}

// QueueCollector exports the backlog of each topic of a flow, as its driver
// reads it: unprocessed messages and the age of the oldest, by topic kind
// and shard, and the poison queue's depth and oldest message. Topics that
// do not exist yet (the flow has not run) export nothing. Concurrent
// scrapes share one reading, which is kept for a short while.
type QueueCollector struct {
	src QueueStatser
	now func() time.Time

	backlog, age, poisonDepth, poisonAge, up *prometheus.Desc

	mu      sync.Mutex // one reading at a time; guards the cache
	readAt  time.Time
	stats   []driver.QueueStat
	readErr error
}

// NewQueueCollector collects src's queue statistics.
func NewQueueCollector(src QueueStatser) *QueueCollector {
	return &QueueCollector{
		src: src,
		now: time.Now,
		backlog: prometheus.NewDesc("raceflow_queue_backlog_messages",
			"Messages published to a topic and not yet processed, by topic kind and shard.", []string{"kind", "shard"}, nil),
		age: prometheus.NewDesc("raceflow_queue_oldest_message_age_seconds",
			"Age of the oldest unprocessed message of a topic (0 when there is none), by topic kind and shard.", []string{"kind", "shard"}, nil),
		poisonDepth: prometheus.NewDesc("raceflow_poison_queue_messages",
			"Messages in the poison queue (failed for good; see raceflow poison list).", nil, nil),
		poisonAge: prometheus.NewDesc("raceflow_poison_queue_oldest_message_age_seconds",
			"Age of the oldest message in the poison queue (0 when it is empty).", nil, nil),
		up: prometheus.NewDesc("raceflow_queue_stats_up",
			"1 when the queue statistics could be read at this scrape, 0 when the reading failed.", nil, nil),
	}
}

// Describe sends the collector's descriptors.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backlog, c.age, c.poisonDepth, c.poisonAge, c.up} {
		ch <- d
	}
}

// Stats returns the queue statistics, read at most once per freshness
// period.
func (c *QueueCollector) Stats(ctx context.Context) ([]driver.QueueStat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.readAt.IsZero() || now.Sub(c.readAt) >= queueStatsFresh {
		qctx, cancel := context.WithTimeout(ctx, queueQueryTimeout)
		c.stats, c.readErr = c.src.QueueStats(qctx)
		cancel()
		c.readAt = c.now()
	}
	return c.stats, c.readErr
}

// Collect exports the latest reading.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.Stats(context.Background())
	up := 1.0
	if err != nil {
		up = 0
		stats = nil
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for _, st := range stats {
		age := st.OldestAge.Seconds()
		if st.Topic.Kind == driver.Poison {
			ch <- prometheus.MustNewConstMetric(c.poisonDepth, prometheus.GaugeValue, float64(st.Backlog))
			ch <- prometheus.MustNewConstMetric(c.poisonAge, prometheus.GaugeValue, age)
			continue
		}
		shard := strconv.Itoa(st.Topic.Shard)
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog), string(st.Topic.Kind), shard)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age, string(st.Topic.Kind), shard)
	}
}

// PoolCollector exports a pgx pool's use: connections by state, the
// configured maximum, and how often and how long acquiring one had to wait.
// Waits while the pool grows are normal; waits that keep rising once it is
// at its maximum mean it is too small for the shards and the scheduler.
type PoolCollector struct {
	pool                                        *pgxpool.Pool
	acquired, idle, total, max                  *prometheus.Desc
	acquires, waits, waitSeconds, acquireSecond *prometheus.Desc
}

// NewPoolCollector collects pool's statistics.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	g := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("raceflow_db_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{
		pool:          pool,
		acquired:      g("acquired_connections", "Connections in use."),
		idle:          g("idle_connections", "Connections idle in the pool."),
		total:         g("connections", "Connections open (acquired, idle and being opened)."),
		max:           g("max_connections", "The pool's maximum size."),
		acquires:      g("acquires_total", "Successful connection acquisitions."),
		waits:         g("acquire_waits_total", "Acquisitions that found no idle connection and waited for one to be opened or released."),
		waitSeconds:   g("acquire_wait_seconds_total", "Time spent in acquisitions that found no idle connection."),
		acquireSecond: g("acquire_seconds_total", "Time spent in all successful acquisitions."),
	}
}

// Describe sends the collector's descriptors.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.waits, c.waitSeconds, c.acquireSecond} {
		ch <- d
	}
}

// Collect reads the pool's statistics.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, float64(s.AcquiredConns()))
	gauge(c.idle, float64(s.IdleConns()))
	gauge(c.total, float64(s.TotalConns()))
	gauge(c.max, float64(s.MaxConns()))
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.waits, float64(s.EmptyAcquireCount()))
	counter(c.waitSeconds, s.EmptyAcquireWaitTime().Seconds())
	counter(c.acquireSecond, s.AcquireDuration().Seconds())
}

// SchedulerCollector exports what the scheduler is doing: races it tracks
// and polls it has requested whose results have not arrived. Only the
// leader's scheduler tracks races; other replicas report 0.
type SchedulerCollector struct {
	stats             func() (tracked, inFlight int)
	tracked, inFlight *prometheus.Desc
}

// NewSchedulerCollector collects stats, e.g.
//
//	func() (int, int) { st := sched.Stats(); return st.Tracked, st.InFlight }
func NewSchedulerCollector(stats func() (tracked, inFlight int)) *SchedulerCollector {
	return &SchedulerCollector{
		stats:    stats,
		tracked:  prometheus.NewDesc("raceflow_scheduler_races_tracked", "Races the scheduler is polling.", nil, nil),
		inFlight: prometheus.NewDesc("raceflow_scheduler_polls_in_flight", "Polls requested whose result has not arrived.", nil, nil),
	}
}

// Describe sends the collector's descriptors.
func (c *SchedulerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tracked
	ch <- c.inFlight
}

// Collect reads the scheduler's stats.
func (c *SchedulerCollector) Collect(ch chan<- prometheus.Metric) {
	tracked, inFlight := c.stats()
	ch <- prometheus.MustNewConstMetric(c.tracked, prometheus.GaugeValue, float64(tracked))
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(inFlight))
}

// SeriesEndsCollector exports where the write stage found the ends of the
// history series it appended to (Engine.SeriesEnds): from memory, or
// looked up. Lookups beyond each race's first poll mean its polls are
// written by several processes in turn.
type SeriesEndsCollector struct {
	stats func() write.EndsStats
	desc  *prometheus.Desc
}

// NewSeriesEndsCollector collects stats, e.g. engine.SeriesEnds.
func NewSeriesEndsCollector(stats func() write.EndsStats) *SeriesEndsCollector {
	return &SeriesEndsCollector{stats: stats, desc: prometheus.NewDesc("raceflow_write_series_ends_total",
		"History series the write stage appended to, by where their stored end came from: memory or lookup.",
		[]string{"source"}, nil)}
}

// Describe sends the collector's descriptor.
func (c *SeriesEndsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reads the counts.
func (c *SeriesEndsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.Remembered), "memory")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.LookedUp), "lookup")
}
