package status

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/stats"
)

// RecorderConfig bounds what a Recorder keeps. Start from
// DefaultRecorderConfig.
type RecorderConfig struct {
	// PerRace is how many recent results are kept per race.
	PerRace int
	// MaxRaces bounds the races kept; the least recently polled go first.
	MaxRaces int
	// Window is how many recent results (of all races) the pipeline's
	// latency percentiles and throughput are computed from.
	Window int
	// Now is the flow's clock (simulated in the demo): results are stamped
	// with it so their age compares with the schedule. Default time.Now.
	Now func() time.Time
	// Wall is the real clock, for throughput. Default time.Now.
	Wall func() time.Time
}

// DefaultRecorderConfig keeps 20 results per race for up to 5,000 races and
// the last 4,096 results for the pipeline figures.
func DefaultRecorderConfig() RecorderConfig {
	return RecorderConfig{PerRace: 20, MaxRaces: 5000, Window: 4096, Now: time.Now, Wall: time.Now}
}

// Validate checks the configuration.
func (c RecorderConfig) Validate() error {
	var errs []error
	if c.PerRace < 1 || c.MaxRaces < 1 || c.Window < 1 {
		errs = append(errs, fmt.Errorf("status: recorder PerRace %d, MaxRaces %d and Window %d must be at least 1",
			c.PerRace, c.MaxRaces, c.Window))
	}
	if c.Now == nil || c.Wall == nil {
		errs = append(errs, errors.New("status: recorder needs Now and Wall clocks"))
	}
	return errors.Join(errs...)
}

// Recorder keeps the recent poll results the flow delivers, so the pages can
// show each race's last polls with their stage timings and errors, and the
// pipeline's recent latency and throughput. Register Observe with the
// engine's OnResult. Safe for concurrent use.
type Recorder struct {
	cfg RecorderConfig

	mu     sync.Mutex
	races  map[string]*raceLog
	recent []recorded // ring of the last cfg.Window results
	next   int        // where the ring writes next
	total  int64      // results observed
}

type raceLog struct {
	polls []PollRecord // newest last, at most cfg.PerRace
	seen  int64        // recorder's total when last written, for eviction
}

type recorded struct {
	PollRecord
	wall time.Time
}

// PollRecord is one poll's result as the pages show it. Times are in
// milliseconds.
type PollRecord struct {
	PollID      string     `json:"poll_id"`
	At          time.Time  `json:"at"` // when the result arrived, on the flow's clock
	Status      string     `json:"status"`
	RaceStatus  string     `json:"race_status,omitempty"`
	FetchMS     float64    `json:"fetch_ms"`
	TransformMS float64    `json:"transform_ms"`
	WriteMS     float64    `json:"write_ms"`
	DetectMS    float64    `json:"detect_ms"`
	QueueMS     float64    `json:"queue_ms"`
	TotalMS     float64    `json:"total_ms"`
	Error       *PollError `json:"error,omitempty"`
}

// PollError is why a poll did not succeed.
type PollError struct {
	Stage   string `json:"stage"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// NewRecorder returns an empty recorder; cfg is validated.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Recorder{cfg: cfg, races: map[string]*raceLog{}, recent: make([]recorded, 0, cfg.Window)}, nil
}

// Observe records one result; replayed results are ignored (they are old
// polls, not what the flow is doing). It never blocks on readers for long.
func (r *Recorder) Observe(res handlers.ProcessResult) {
	if res.Replay || res.RaceID == "" {
		return
	}
	rec := PollRecord{
		PollID: res.PollID, At: r.cfg.Now(), Status: res.Status, RaceStatus: res.RaceStatus,
		FetchMS: res.Timings.FetchMS, TransformMS: res.Timings.TransformMS, WriteMS: res.Timings.WriteMS,
		DetectMS: res.Timings.DetectMS, QueueMS: res.Timings.QueueMS, TotalMS: res.Timings.TotalMS,
	}
	if res.Error != nil {
		rec.Error = &PollError{Stage: res.Error.Stage, Kind: res.Error.Kind, Message: res.Error.Message}
	}
	wall := r.cfg.Wall()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	lg := r.races[res.RaceID]
	if lg == nil {
		if len(r.races) >= r.cfg.MaxRaces {
			r.evict()
		}
		lg = &raceLog{}
		r.races[res.RaceID] = lg
	}
	if len(lg.polls) == r.cfg.PerRace {
		lg.polls = append(lg.polls[:0], lg.polls[1:]...)
	}
	lg.polls = append(lg.polls, rec)
	lg.seen = r.total
	if len(r.recent) < r.cfg.Window {
		r.recent = append(r.recent, recorded{rec, wall})
	} else {
		r.recent[r.next] = recorded{rec, wall}
	}
	r.next = (r.next + 1) % r.cfg.Window
}

// evict drops the least recently polled tenth of the races (at least one),
// so eviction runs rarely.
func (r *Recorder) evict() {
	type aged struct {
		id   string
		seen int64
	}
	all := make([]aged, 0, len(r.races))
	for id, lg := range r.races {
		all = append(all, aged{id, lg.seen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seen < all[j].seen })
	for _, a := range all[:max(1, len(all)/10)] {
		delete(r.races, a.id)
	}
}

// Polls returns the race's recent results, newest first.
func (r *Recorder) Polls(raceID string) []PollRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	lg := r.races[raceID]
	if lg == nil {
		return nil
	}
	out := make([]PollRecord, len(lg.polls))
	for i, p := range lg.polls {
		out[len(out)-1-i] = p
	}
	return out
}

// Last returns each race's latest result.
func (r *Recorder) Last() map[string]PollRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]PollRecord, len(r.races))
	for id, lg := range r.races {
		out[id] = lg.polls[len(lg.polls)-1]
	}
	return out
}

// StageFigures are one stage's recent latency (ms, successful polls only)
// and throughput (polls per minute that went through it, whatever their
// outcome).
type StageFigures struct {
	Samples   int     `json:"samples"`
	P50MS     float64 `json:"p50_ms"`
	P95MS     float64 `json:"p95_ms"`
	PerMinute float64 `json:"per_minute"`
}

// Stage names of the figures: the four stages, the time queued between
// them, and the whole poll.
const (
	StageFetch     = handlers.StageFetch
	StageTransform = handlers.StageTransform
	StageWrite     = handlers.StageWrite
	StageDetect    = handlers.StageDetect
	StageQueue     = "queue"
	StageTotal     = "total"
)

// Figures computes the stage figures from the results of the last span of
// real time (within the recorder's window), and counts them by status.
func (r *Recorder) Figures(span time.Duration) (map[string]StageFigures, map[string]int) {
	r.mu.Lock()
	now := r.cfg.Wall()
	since := now.Add(-span)
	var in []PollRecord
	for _, rec := range r.recent {
		if !rec.wall.Before(since) {
			in = append(in, rec.PollRecord)
		}
	}
	// A full ring may hold less than span: rates are over what it holds.
	if len(r.recent) == r.cfg.Window {
		if oldest := r.recent[r.next].wall; oldest.After(since) {
			span = max(now.Sub(oldest), time.Second)
		}
	}
	r.mu.Unlock()

	samples := map[string][]float64{}
	passed := map[string]int{}
	counts := map[string]int{}
	for _, p := range in {
		counts[p.Status]++
		failedAt := ""
		if p.Error != nil {
			failedAt = p.Error.Stage
		}
		reached := true
		for _, st := range []struct {
			name string
			ms   float64
		}{{StageFetch, p.FetchMS}, {StageTransform, p.TransformMS}, {StageWrite, p.WriteMS}, {StageDetect, p.DetectMS}} {
			if !reached {
				break
			}
			passed[st.name]++
			if p.Status == handlers.StatusSuccess {
				samples[st.name] = append(samples[st.name], st.ms)
			}
			reached = failedAt != st.name
		}
		passed[StageQueue]++
		passed[StageTotal]++
		if p.Status == handlers.StatusSuccess {
			samples[StageQueue] = append(samples[StageQueue], p.QueueMS)
			samples[StageTotal] = append(samples[StageTotal], p.TotalMS)
		}
	}
	minutes := span.Minutes()
	out := map[string]StageFigures{}
	for _, st := range []string{StageFetch, StageTransform, StageWrite, StageDetect, StageQueue, StageTotal} {
		xs := samples[st]
		sort.Float64s(xs)
		out[st] = StageFigures{Samples: len(xs), P50MS: stats.NearestRank(xs, .50), P95MS: stats.NearestRank(xs, .95),
			PerMinute: float64(passed[st]) / minutes}
	}
	return out, counts
}
