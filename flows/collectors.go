package flows

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// The collectors here read state at scrape time (queue tables, the pool,
// the scheduler) instead of counting events, so they are right after a
// restart and cost nothing between scrapes.

// queueQueryTimeout bounds the queue collector's queries, so a slow database
// delays a scrape rather than piling scrapes up.
const queueQueryTimeout = 3 * time.Second

// QueueCollector exports the backlog of each topic of a PostgreSQL-backed
// flow: unprocessed messages and the age of the oldest, by topic kind and
// shard, and the poison queue's depth and oldest message. Topics whose
// tables do not exist yet (the flow has not run) export nothing. Register it
// for the PostgreSQL backend only: under the memory backend any tables it
// found would be another flow's, stale.
type QueueCollector struct {
	pool   *pgxpool.Pool
	tables []queueTable
	poison string // table of the poison topic, "" when topics has none

	backlog, age, poisonDepth, poisonAge, up *prometheus.Desc
}

type queueTable struct{ kind, shard, table string }

// NewQueueCollector collects the topics of topics (Engine.Topics()) from
// pool. One query per scrape reads every table, through the partial index
// on unacked rows where the topic keeps acked rows.
func NewQueueCollector(pool *pgxpool.Pool, topics map[string][]string) *QueueCollector {
	c := &QueueCollector{
		pool: pool,
		backlog: prometheus.NewDesc("raceflow_queue_backlog_messages",
			"Messages published to a topic and not yet processed, by topic kind and shard.", []string{"kind", "shard"}, nil),
		age: prometheus.NewDesc("raceflow_queue_oldest_message_age_seconds",
			"Age of the oldest unprocessed message of a topic (0 when there is none), by topic kind and shard.", []string{"kind", "shard"}, nil),
		poisonDepth: prometheus.NewDesc("raceflow_poison_queue_messages",
			"Messages in the poison queue (failed for good; see raceflow poison list).", nil, nil),
		poisonAge: prometheus.NewDesc("raceflow_poison_queue_oldest_message_age_seconds",
			"Age of the oldest message in the poison queue (0 when it is empty).", nil, nil),
		up: prometheus.NewDesc("raceflow_queue_stats_up",
			"1 when the queue tables could be read at this scrape, 0 when the query failed.", nil, nil),
	}
	schema := queueSchema(DefaultConfig())
	kinds := make([]string, 0, len(topics))
	for kind := range topics {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		for _, topic := range topics[kind] {
			if kind == kindPoison {
				c.poison = schema.MessagesTable(topic)
				continue
			}
			shard := topic[strings.LastIndex(topic, ".")+1:] // <ns>.<kind>.<shard>
			c.tables = append(c.tables, queueTable{kind: kind, shard: shard, table: schema.MessagesTable(topic)})
		}
	}
	return c
}

// Describe sends the collector's descriptors.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backlog, c.age, c.poisonDepth, c.poisonAge, c.up} {
		ch <- d
	}
}

// Collect reads every existing topic table.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueQueryTimeout)
	defer cancel()
	stats, err := c.read(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for table, st := range stats {
		if table == c.poison {
			ch <- prometheus.MustNewConstMetric(c.poisonDepth, prometheus.GaugeValue, float64(st.count))
			ch <- prometheus.MustNewConstMetric(c.poisonAge, prometheus.GaugeValue, st.age)
			continue
		}
		t := st.queueTable
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.count), t.kind, t.shard)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, st.age, t.kind, t.shard)
	}
}

type queueStat struct {
	queueTable
	count int64
	age   float64
}

func (c *QueueCollector) read(ctx context.Context) (map[string]queueStat, error) {
	all := make([]string, 0, len(c.tables)+1)
	byTable := make(map[string]queueTable, len(c.tables))
	for _, t := range c.tables {
		all = append(all, t.table)
		byTable[t.table] = t
	}
	if c.poison != "" {
		all = append(all, c.poison)
	}
	rows, err := c.pool.Query(ctx, `SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL`, all)
	if err != nil {
		return nil, err
	}
	existing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(existing) == 0 {
		return nil, err
	}
	// The age is computed by the database, against the created_at it wrote,
	// so neither clock skew nor a simulated engine clock distorts it.
	parts := make([]string, len(existing))
	for i, table := range existing {
		parts[i] = `SELECT ` + strconv.Itoa(i) + `, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM ` +
			table + ` WHERE NOT acked`
	}
	rows, err = c.pool.Query(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]queueStat, len(existing))
	for rows.Next() {
		var i int
		var st queueStat
		if err := rows.Scan(&i, &st.count, &st.age); err != nil {
			return nil, err
		}
		st.queueTable = byTable[existing[i]]
		out[existing[i]] = st
	}
	return out, rows.Err()
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
