package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/raceflow/raceflow/handlers"
)

// PoisonQueue inspects and manages the poison queue of one flow, wherever
// its backend keeps it.
type PoisonQueue interface {
	// List returns the messages f selects, newest first.
	List(ctx context.Context, f PoisonFilter) ([]PoisonMessage, error)
	// Get returns one message, payload included.
	Get(ctx context.Context, id int64) (PoisonMessage, error)
	// Requeue sends the selected messages back to the topics they failed on
	// (RequeueMessage), oldest first, and removes them from the queue; it
	// returns how many it requeued. A message is never lost on the way: at
	// worst (a crash between the two steps, on a backend that cannot do
	// both atomically) it is requeued and still listed.
	Requeue(ctx context.Context, sel PoisonSelector) (int, error)
	// Purge deletes the messages poisoned before cutoff and returns how many.
	Purge(ctx context.Context, cutoff time.Time) (int64, error)
	// Summary counts the queue without reading its payloads.
	Summary(ctx context.Context) (PoisonSummary, error)
}

// PoisonSummary is what the poison queue holds, in short.
type PoisonSummary struct {
	Count int64
	// Oldest is when the oldest message was poisoned (zero when empty).
	Oldest time.Time
	// ByRace counts the messages of each race that has any.
	ByRace map[string]int
}

// Summarize is the summary of msgs, for queues that read them anyway.
func Summarize(msgs []PoisonMessage) PoisonSummary {
	s := PoisonSummary{ByRace: map[string]int{}}
	for _, m := range msgs {
		s.Count++
		if s.Oldest.IsZero() || m.CreatedAt.Before(s.Oldest) {
			s.Oldest = m.CreatedAt
		}
		s.ByRace[m.RaceID]++
	}
	return s
}

// KeyRequeued counts how many times a message was requeued from the poison
// queue; it travels in the metadata of the requeued message.
const KeyRequeued = "requeued"

// poisonKeys are the metadata a message gains on the way into the poison
// queue; requeueing strips them so the message is as it was published.
func poisonKeys() []string {
	return []string{
		middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey,
		middleware.PoisonedSubscriberKey, handlers.KeyStage, handlers.KeyErrorKind,
	}
}

// Errors of poison queues.
var (
	// ErrPoisonNotFound: no poison message has the id.
	ErrPoisonNotFound = errors.New("driver: poison message not found")
	// ErrBadRequeueTopic: a poison message names a topic outside its flow,
	// so it is not requeued anywhere.
	ErrBadRequeueTopic = errors.New("driver: poison message names no topic of this flow")
)

// PoisonMessage is one message of the poison queue.
type PoisonMessage struct {
	ID        int64             `json:"id"` // where the queue keeps it (row offset, stream sequence)
	UUID      string            `json:"uuid"`
	CreatedAt time.Time         `json:"created_at"` // when it was poisoned
	RaceID    string            `json:"race_id"`
	PollID    string            `json:"poll_id"`
	Stage     string            `json:"stage"`
	Kind      string            `json:"kind"`
	Reason    string            `json:"reason"`
	Topic     string            `json:"topic"` // where it failed, and where requeue sends it
	Requeued  int               `json:"requeued"`
	Metadata  map[string]string `json:"metadata"`
	Payload   []byte            `json:"-"`
}

// NewPoisonMessage fills the named fields from the metadata.
func NewPoisonMessage(id int64, uuid string, createdAt time.Time, payload []byte, md map[string]string) PoisonMessage {
	if md == nil {
		md = map[string]string{}
	}
	m := PoisonMessage{ID: id, UUID: uuid, CreatedAt: createdAt, Payload: payload, Metadata: md}
	m.RaceID = md[handlers.KeyRaceID]
	m.PollID = md[handlers.KeyPollID]
	m.Stage = md[handlers.KeyStage]
	m.Kind = md[handlers.KeyErrorKind]
	m.Reason = md[middleware.ReasonForPoisonedKey]
	m.Topic = md[middleware.PoisonedTopicKey]
	m.Requeued, _ = strconv.Atoi(md[KeyRequeued])
	return m
}

// PoisonFilter selects poison messages; zero fields select everything.
type PoisonFilter struct {
	RaceID string
	Stage  string
	Since  time.Time // poisoned at or after
	Limit  int       // newest first; 0 means no limit
}

// Match reports whether m passes the filter (Limit aside).
func (f PoisonFilter) Match(m PoisonMessage) bool {
	return (f.RaceID == "" || m.RaceID == f.RaceID) && (f.Stage == "" || m.Stage == f.Stage) &&
		(f.Since.IsZero() || !m.CreatedAt.Before(f.Since))
}

// PoisonSelector chooses what Requeue sends back: the listed IDs, or every
// message of RaceID, or All. Exactly one must be set.
type PoisonSelector struct {
	IDs    []int64
	RaceID string
	All    bool
}

// Validate checks that exactly one choice is made.
func (s PoisonSelector) Validate() error {
	n := 0
	if len(s.IDs) > 0 {
		n++
	}
	if s.RaceID != "" {
		n++
	}
	if s.All {
		n++
	}
	if n != 1 {
		return errors.New("driver: requeue needs exactly one of IDs, a race id or all")
	}
	return nil
}

// Match reports whether a selection by race or all takes m.
func (s PoisonSelector) Match(m PoisonMessage) bool {
	return s.All || s.RaceID != "" && m.RaceID == s.RaceID
}

// RequeueMessage rebuilds a poisoned message as it was published, under a
// new uuid, for the topic it failed on, which must be a stage topic of
// namespace's flow.
func RequeueMessage(namespace string, m PoisonMessage) (Topic, *message.Message, error) {
	t, err := ParseTopic(m.Topic)
	if err != nil || t.Namespace != namespace || t.Kind == Poison {
		return Topic{}, nil, fmt.Errorf("%w: message %d, topic %q", ErrBadRequeueTopic, m.ID, m.Topic)
	}
	out := message.NewMessage(watermill.NewUUID(), m.Payload)
	for k, v := range m.Metadata {
		out.Metadata.Set(k, v)
	}
	for _, k := range poisonKeys() {
		delete(out.Metadata, k)
	}
	out.Metadata.Set(KeyRequeued, strconv.Itoa(m.Requeued+1))
	return t, out, nil
}

// DecodedPayload returns the payload as it was before the flow stored it:
// race.fetched bodies are decompressed, and JSON is indented for reading.
func (m PoisonMessage) DecodedPayload() ([]byte, error) {
	body, err := handlers.Body(m.Metadata, m.Payload)
	if err != nil {
		return nil, fmt.Errorf("driver: poison message %d: %w", m.ID, err)
	}
	if json.Valid(body) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err == nil {
			return buf.Bytes(), nil
		}
	}
	return body, nil
}
