package flows

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// Watermill's universal pub/sub suite against the exact pub/sub
// configurations the flow runs on.

func TestUniversalPubSubSuitePostgresQueue(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "delete-on-ack"
		if keep {
			name = "stored-topic"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			cfg := DefaultConfig()
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:      false,
				ExactlyOnceDelivery: true,
				GuaranteedOrder:     true,
				Persistent:          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				beginner := wsql.BeginnerFromPgx(db.Pool)
				logger := watermill.NopLogger{}
				pub, err := wsql.NewPublisher(beginner, wsql.PublisherConfig{SchemaAdapter: queueSchema(cfg), AutoInitializeSchema: true}, logger)
				require.NoError(t, err)
				sub, err := newSQLSubscriber(beginner, cfg, keep, logger)
				require.NoError(t, err)
				return pub, sub
			}, nil)
		})
	}
}

func TestUniversalPubSubSuiteMemory(t *testing.T) {
	t.Parallel()
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        false,
		ExactlyOnceDelivery:   true,
		GuaranteedOrder:       false,
		Persistent:            false,
		RequireSingleInstance: true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		ch := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024, Persistent: true}, watermill.NopLogger{})
		return ch, ch
	}, nil)
}

// TestUniversalPubSubSuiteNATS runs the suite on the nats backend's streams,
// consumers, publisher and subscriber: as a stage hand-off (work queue,
// shared durable consumer) and as the stored topic (kept with retention).
func TestUniversalPubSubSuiteNATS(t *testing.T) {
	url := natstest.URL(t)
	for _, kind := range []string{kindPoll, kindFetched} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Backend = BackendNATS
			cfg.NATS.URL = url
			// The suite nacks each message dozens of times in a row; a
			// small cap keeps the backoff path in play without minutes of waiting.
			cfg.NATS.NakBackoffMax = 10 * time.Millisecond
			conn, js, err := dialNATS(cfg.NATS)
			require.NoError(t, err)
			b := &natsBackend{cfg: cfg, logger: watermill.NopLogger{}, conn: conn, js: js,
				kindOf: func(string) string { return kind }}
			t.Cleanup(func() {
				b.ensured.Range(func(topic, _ any) bool {
					require.NoError(t, js.DeleteStream(natsName(topic.(string))))
					return true
				})
				conn.Close()
			})
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:      false,
				ExactlyOnceDelivery: false,
				GuaranteedOrder:     true,
				Persistent:          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				pub, err := b.newPublisher()
				require.NoError(t, err)
				sub, err := b.newSubscriber(false)
				require.NoError(t, err)
				return pub, sub
			}, nil)
		})
	}
}
