// Package driver is the seam between the flow and a message backend: the
// Driver interface every backend implements (postgres, nats, memory, each in
// its own package below this one), the topic vocabulary they share, and the
// types of what a backend keeps: the stored topic that replay reads and the
// poison queue. drivertest is the conformance suite every driver passes.
package driver

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Driver carries one flow's messages (one namespace) on one backend, and
// administers what the backend keeps. The engine, replay, the poison tools,
// retention and the metrics reach the backend only through it.
type Driver interface {
	// Namespace is the flow whose topics the driver carries.
	Namespace() string
	// Durable reports whether messages outlive the process, so that another
	// process (replay, the poison tools) can see them.
	Durable() bool

	// Init creates what the topics need before anything publishes to them.
	Init(ctx context.Context, topics []Topic) error
	// Subscriber consumes topics of kind. It is created once per kind and
	// subscribed to each shard's topic. parallel > 1 asks for that many
	// messages of one topic to be handled at once, never two of one race
	// (a driver that cannot promise that hands out one at a time).
	Subscriber(kind Kind, parallel int) (message.Subscriber, error)
	// Publisher publishes from outside a handler (poll requests).
	Publisher() message.Publisher
	// HandlerPublisher publishes a handler's outputs: inside the handled
	// message's transaction where the backend has one, so that the outputs
	// commit together with the input's ack. Closing it does nothing (the
	// router closes the publishers it is given).
	HandlerPublisher() message.Publisher
	// Middleware wraps every handler, right inside the engine's tracking of
	// handlers in flight (nats: keeps a long handling alive and acks).
	Middleware() message.HandlerMiddleware
	// BeginWrite opens the write stage's transaction for msg: the
	// delivery's own transaction where the backend has one, whose Commit
	// then leaves the rows to commit with the acknowledgement and whose
	// Rollback undoes them and nothing else.
	BeginWrite(msg *message.Message) (pgx.Tx, error)
	// BeginWriteGroup opens one write transaction for several messages
	// handled at once, so that their polls pay for one transaction and one
	// commit. Where the backend has delivery transactions, every message's
	// hand-off commits in it once the last of them is acknowledged (or none
	// does, and all are delivered again); its Rollback undoes the rows and
	// leaves each message free to write alone (BeginWrite).
	BeginWriteGroup(msgs []*message.Message) (pgx.Tx, error)
	// Lost reports that msg's delivery can no longer commit (its transaction
	// lost its connection): no retry inside it can help, and acking it lets
	// the backend deliver it again on a new connection.
	Lost(msg *message.Message) bool
	// Delivery is how often msg has been handed out, this time included
	// (0: unknown), and why its previous handling failed ("" when unknown),
	// as durably as the backend counts them.
	Delivery(msg *message.Message) (count int, lastError string)
	// FansOutResults reports that every instance on the backend receives
	// every result (otherwise each result reaches one instance).
	FansOutResults() bool
	// Health reports a lost connection to the message broker.
	Health(ctx context.Context) error
	// Collectors are the driver's own metrics (nil: none).
	Collectors() []prometheus.Collector

	// Stored is the stored topic (raw fetches kept for replay);
	// ErrNotStored when the backend keeps none.
	Stored() (StoredTopic, error)
	// Poison is the poison queue.
	Poison() PoisonQueue
	// Prune deletes handled stored messages (the stored topic, the poison
	// queue is left alone) created before cutoff, in batches of at most
	// batch; a backend that expires them itself returns 0.
	Prune(ctx context.Context, cutoff time.Time, batch int) (int64, error)
	// QueueStats reads the backlog of every topic of the flow that exists.
	QueueStats(ctx context.Context) ([]QueueStat, error)
	// Drop deletes the namespace's topics and their messages: for
	// throw-away flows (benchmarks, the demo).
	Drop(ctx context.Context) error
	// Close releases the driver's connections.
	Close() error
}

// QueueStat is the backlog of one topic: messages published and not yet
// handled (for poison: every message in the queue) and the age of the
// oldest of them.
type QueueStat struct {
	Topic     Topic
	Backlog   int64
	OldestAge time.Duration
}

// StoredTopic reads the stored topic (Fetched) of a flow without consuming
// it. An offset is where a message is kept (a table row's offset, a stream
// sequence).
type StoredTopic interface {
	// Topics lists the stored topic of every shard that exists, whatever the
	// shard count is now, in shard order.
	Topics(ctx context.Context) ([]Topic, error)
	// Scan calls fn with the metadata of every stored poll of topic (of
	// raceIDs only, when given).
	Scan(ctx context.Context, topic Topic, raceIDs []string, fn func(StoredPoll)) error
	// Load calls fn with the stored messages at offsets, or with the error
	// that makes one unreadable (bad metadata); an offset no longer stored is
	// skipped.
	Load(ctx context.Context, topic Topic, offsets []int64, fn func(offset int64, msg *message.Message, err error)) error
}

// StoredPoll is one stored fetch as its metadata describes it.
type StoredPoll struct {
	Offset     int64
	RaceID     string
	PollID     string
	ObservedAt string // RFC 3339, as stored
}

// Errors of drivers.
var (
	// ErrNotStored: the backend keeps no stored topic (memory).
	ErrNotStored = errors.New("driver: the backend keeps no stored topic")
	// ErrUnavailable: the message broker did not answer. Its text reads
	// after the broker's name: "NATS is unavailable at ...".
	ErrUnavailable = errors.New("unavailable")
	// ErrDeliveryLost: the handled message's delivery can no longer commit
	// (its transaction lost its connection); no retry inside it can help.
	ErrDeliveryLost = errors.New("driver: the delivery's transaction lost its connection")
)
