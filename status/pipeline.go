package status

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// PipelinePage is the data of "/pipeline": the hops of the flow with their
// backlog, latency and throughput, and the parts around them.
type PipelinePage struct {
	GeneratedAt time.Time `json:"generated_at"`
	// SpanS is the real time the latency and throughput figures cover.
	SpanS float64 `json:"span_s"`
	// Hops are poll → fetch → transform → write → detect → result, in
	// order, then notify (the alerts' own consumer, beside the flow).
	Hops []Hop `json:"hops"`
	// Total and Queue are whole-poll figures: end to end, and time queued
	// between stages.
	Total StageFigures `json:"total"`
	Queue StageFigures `json:"queue"`
	// Outcomes count the recent polls by status.
	Outcomes map[string]int `json:"outcomes"`
	// QueuesMeasured: the backend reports backlogs (Hops carry them).
	QueuesMeasured bool              `json:"queues_measured"`
	Database       DatabaseFigures   `json:"database"`
	API            map[string]int64  `json:"api,omitempty"` // responses by class; nil: not measured
	Leader         *bool             `json:"leader,omitempty"`
	Scheduler      *SchedulerFigures `json:"scheduler,omitempty"`
	Poison         *PoisonFigures    `json:"poison,omitempty"`
	Warnings       []string          `json:"warnings"`
}

// Hop is one stage and the queue in front of it.
type Hop struct {
	Stage string `json:"stage"` // fetch, transform, write, detect, result, notify
	// Topic is the topic kind it consumes; empty for a stage that runs
	// in the same handler as the one before it (write after transform).
	Topic string `json:"topic,omitempty"`
	// Backlog and OldestAgeS sum and maximise over the topic's shards; nil
	// when the backend does not report them.
	Backlog    *int64       `json:"backlog,omitempty"`
	OldestAgeS *float64     `json:"oldest_age_s,omitempty"`
	Shards     []Shard      `json:"shards,omitempty"`
	Figures    StageFigures `json:"figures"`
}

// Shard is one topic shard's backlog.
type Shard struct {
	Shard      int     `json:"shard"`
	Backlog    int64   `json:"backlog"`
	OldestAgeS float64 `json:"oldest_age_s"`
}

// DatabaseFigures are the database's round trip and the pool's use.
type DatabaseFigures struct {
	Up         bool    `json:"up"`
	RoundTrip  float64 `json:"round_trip_ms"`
	Acquired   int32   `json:"acquired"`
	Idle       int32   `json:"idle"`
	Total      int32   `json:"total"`
	Max        int32   `json:"max"`
	Waits      int64   `json:"waits"`
	WaitTimeMS float64 `json:"wait_time_ms"`
	PoolKnown  bool    `json:"pool_known"`
}

// SchedulerFigures count what the scheduler is doing.
type SchedulerFigures struct {
	Tracked  int `json:"tracked"`
	InFlight int `json:"in_flight"`
}

// PoisonFigures summarise the poison queue.
type PoisonFigures struct {
	Count      int64         `json:"count"`
	OldestAgeS *float64      `json:"oldest_age_s,omitempty"`
	Recent     []PoisonEntry `json:"recent"`
}

// Pipeline returns the data of "/pipeline". Parts that cannot be read are
// named in Warnings; only a database that does not answer is an error.
func (m *Model) Pipeline(ctx context.Context) (PipelinePage, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueryTimeout)
	defer cancel()
	page := PipelinePage{GeneratedAt: m.cfg.Now(), SpanS: seconds(m.cfg.FigureSpan), Warnings: []string{}}

	began := time.Now()
	var one int
	if err := m.deps.DB.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return page, unavailable("database", err)
	}
	page.Database.Up = true
	page.Database.RoundTrip = float64(time.Since(began)) / float64(time.Millisecond)
	if m.deps.Pool != nil {
		s := m.deps.Pool.Stat()
		page.Database.PoolKnown = true
		page.Database.Acquired, page.Database.Idle = s.AcquiredConns(), s.IdleConns()
		page.Database.Total, page.Database.Max = s.TotalConns(), s.MaxConns()
		page.Database.Waits = s.EmptyAcquireCount()
		page.Database.WaitTimeMS = float64(s.EmptyAcquireWaitTime()) / float64(time.Millisecond)
	}

	figures, outcomes := m.deps.Recorder.Figures(m.cfg.FigureSpan)
	page.Outcomes = outcomes
	page.Total, page.Queue = figures[StageTotal], figures[StageQueue]
	page.Hops = []Hop{
		{Stage: StageFetch, Topic: KindPoll, Figures: figures[StageFetch]},
		// One handler transforms and writes: the write waits on no topic.
		{Stage: StageTransform, Topic: KindFetched, Figures: figures[StageTransform]},
		{Stage: StageWrite, Figures: figures[StageWrite]},
		{Stage: StageDetect, Topic: KindWritten, Figures: figures[StageDetect]},
		// The result consumer does no timed work; its throughput is the
		// flow's.
		{Stage: "result", Topic: KindProcessed, Figures: StageFigures{PerMinute: figures[StageTotal].PerMinute}},
		// The notifier posts alerts beside the flow; its backlog is the
		// alerts not delivered yet.
		{Stage: "notify", Topic: KindAlerts},
	}
	if m.deps.Queues != nil {
		stats, err := m.deps.Queues.QueueStats(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "queue statistics: "+err.Error())
		} else {
			page.QueuesMeasured = true
			fillBacklogs(page.Hops, stats)
		}
	}
	if m.deps.API != nil {
		page.API = m.deps.API.APIResponses()
	}
	if m.deps.Leader != nil {
		leading := m.deps.Leader.Leading()
		page.Leader = &leading
	}
	if m.deps.Schedule != nil {
		list, err := m.deps.Schedule.Tracked(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "scheduler: "+err.Error())
		} else {
			sf := &SchedulerFigures{Tracked: len(list)}
			for _, tr := range list {
				if tr.InFlight {
					sf.InFlight++
				}
			}
			page.Scheduler = sf
		}
	}
	if m.deps.Poison != nil {
		if pf, err := m.poisonFigures(ctx); err != nil {
			page.Warnings = append(page.Warnings, "poison queue: "+err.Error())
		} else {
			page.Poison = pf
		}
	}
	return page, nil
}

func fillBacklogs(hops []Hop, stats []QueueStat) {
	byKind := map[string][]QueueStat{}
	for _, s := range stats {
		byKind[s.Kind] = append(byKind[s.Kind], s)
	}
	for i := range hops {
		if hops[i].Topic == "" {
			continue // no topic of its own: no backlog
		}
		list := byKind[hops[i].Topic]
		sort.Slice(list, func(a, b int) bool { return list[a].Shard < list[b].Shard })
		var backlog int64
		var oldest float64
		for _, s := range list {
			backlog += s.Backlog
			oldest = max(oldest, waited(s.OldestAge))
			hops[i].Shards = append(hops[i].Shards, Shard{Shard: s.Shard, Backlog: s.Backlog, OldestAgeS: waited(s.OldestAge)})
		}
		hops[i].Backlog, hops[i].OldestAgeS = &backlog, &oldest
	}
}

func (m *Model) poisonFigures(ctx context.Context) (*PoisonFigures, error) {
	st, err := m.deps.Poison.PoisonStats(ctx)
	if err != nil {
		return nil, err
	}
	pf := &PoisonFigures{Count: st.Count, Recent: []PoisonEntry{}}
	if !st.Oldest.IsZero() {
		// Poisoned-at instants are the backend's (database or NATS) wall
		// clock, not the flow's, so their age is reckoned on the wall clock.
		age := waited(time.Since(st.Oldest))
		pf.OldestAgeS = &age
	}
	if st.Count == 0 {
		return pf, nil
	}
	recent, err := m.deps.Poison.RecentPoison(ctx, m.cfg.RecentPoison)
	if err != nil {
		return nil, err
	}
	for _, e := range recent {
		e.Payload, e.Metadata = "", nil
		pf.Recent = append(pf.Recent, e)
	}
	return pf, nil
}

// maxPoisonPayload bounds the payload a page shows; the CLI shows it whole.
const maxPoisonPayload = 256 << 10

// PoisonMessage returns one poison message for its details page (ids come
// from ParsePoisonID); an unknown id wraps ErrPoisonNotFound.
func (m *Model) PoisonMessage(ctx context.Context, id int64) (PoisonEntry, error) {
	if m.deps.Poison == nil {
		return PoisonEntry{}, fmt.Errorf("%w: %d (this backend keeps no poison queue)", ErrPoisonNotFound, id)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueryTimeout)
	defer cancel()
	e, err := m.deps.Poison.PoisonMessage(ctx, id)
	if err != nil {
		if errors.Is(err, ErrPoisonNotFound) {
			return PoisonEntry{}, err
		}
		return PoisonEntry{}, unavailable("poison message", err)
	}
	if len(e.Payload) > maxPoisonPayload {
		e.Payload = e.Payload[:maxPoisonPayload] + "\n… (cut; raceflow poison show prints it whole)"
	}
	return e, nil
}

// waited is an age in seconds, never below zero: an instant stamped by
// another clock (the database's, NATS's) can lie a little ahead of the one
// reading it, and a message never waits less than no time.
func waited(d time.Duration) float64 { return seconds(max(d, 0)) }
