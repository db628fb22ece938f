package status

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The interfaces below are what the read model needs of the running flow.
// They are small and consumer-side: the flow's packages (the scheduler, a
// backend's queue statistics and poison queue, the metrics) are adapted to
// them where the service is wired. A nil one means the flow does not have
// it (a process that is not scheduling, a backend without queue tables) and
// the pages say so instead of failing.

// Schedule is the scheduler's view of the races it polls.
type Schedule interface {
	// Tracked returns the races being polled. It must give up when ctx ends.
	Tracked(ctx context.Context) ([]TrackedRace, error)
}

// TrackedRace is one race the scheduler polls.
type TrackedRace struct {
	RaceID  string
	Status  string
	Start   time.Time
	Cadence time.Duration
	Polls   int
	// LastRequest is when the last poll was requested (zero: never).
	LastRequest time.Time
	// NextPoll is when the race is due next (zero while a poll is in flight).
	NextPoll time.Time
	InFlight bool
	// Lost: the last poll's result never arrived.
	Lost bool
}

// Queues reads the backlog of the flow's stage topics.
type Queues interface {
	// QueueStats returns one entry per topic kind and shard. It must give up
	// when ctx ends.
	QueueStats(ctx context.Context) ([]QueueStat, error)
}

// Topic kinds, as the flow names them: a hop's backlog is the topic its
// stage consumes.
const (
	KindPoll      = "poll"      // waiting for fetch
	KindFetched   = "fetched"   // waiting for transform and write
	KindWritten   = "written"   // waiting for detect
	KindProcessed = "processed" // waiting for the result consumer
	KindAlerts    = "alerts"    // waiting for the notifier
)

// QueueStat is the backlog of one topic shard.
type QueueStat struct {
	Kind  string
	Shard int
	// Backlog is how many messages wait to be handled.
	Backlog int64
	// OldestAge is how long the oldest of them has waited (0 when none).
	OldestAge time.Duration
}

// Poison reads the poison queue. Implementations must give up when ctx ends.
type Poison interface {
	// PoisonStats counts the queue.
	PoisonStats(ctx context.Context) (PoisonStats, error)
	// RecentPoison returns the newest n messages, newest first; their
	// payloads are not needed.
	RecentPoison(ctx context.Context, n int) ([]PoisonEntry, error)
	// PoisonMessage returns one message with its payload decoded for
	// reading, or an error wrapping ErrPoisonNotFound.
	PoisonMessage(ctx context.Context, id int64) (PoisonEntry, error)
}

// ErrPoisonNotFound is what Poison.PoisonMessage wraps for an unknown id.
var ErrPoisonNotFound = errors.New("status: poison message not found")

// PoisonStats summarises the poison queue.
type PoisonStats struct {
	Count int64
	// Oldest is when the oldest message was poisoned (zero when empty).
	Oldest time.Time
	// ByRace counts the messages of each race that has any.
	ByRace map[string]int
}

// PoisonEntry is one poisoned message.
type PoisonEntry struct {
	ID         int64             `json:"id"`
	PoisonedAt time.Time         `json:"poisoned_at"`
	RaceID     string            `json:"race_id"`
	PollID     string            `json:"poll_id"`
	Stage      string            `json:"stage"`
	Kind       string            `json:"kind"`
	Reason     string            `json:"reason"`
	Topic      string            `json:"topic"`
	Requeued   int               `json:"requeued"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Payload is the decoded payload (PoisonMessage only).
	Payload string `json:"payload,omitempty"`
}

// APIStats counts the NZ TAB API's responses.
type APIStats interface {
	// APIResponses returns request attempts by outcome class (2xx, 4xx,
	// 5xx, timeout, network, ...) since the process started.
	APIResponses() map[string]int64
}

// PoolStats is the database pool; *pgxpool.Pool implements it.
type PoolStats interface {
	Stat() *pgxpool.Stat
}

// Leader says whether this process leads (schedules); *schedule.Leader
// implements it.
type Leader interface {
	Leading() bool
}
