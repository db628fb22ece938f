package flows

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

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
