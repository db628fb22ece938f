package pgdriver_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/drivertest"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestDriverConformance(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	drivertest.Run(t, drivertest.Harness{
		Open: func(t *testing.T, namespace string) driver.Driver {
			cfg := pgdriver.DefaultConfig()
			cfg.Namespace = namespace
			d, err := pgdriver.Open(cfg, db.Pool, watermill.NopLogger{})
			require.NoError(t, err)
			return d
		},
		TransactionalHandoff: true,
		Prunes:               true,
	})
}

// Watermill's universal pub/sub suite against the exact publisher and
// subscriber configuration the driver runs every topic on: a hand-off
// (handled rows deleted) and the stored topic (handled rows kept).
func TestUniversalPubSubSuite(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "delete-on-ack"
		if keep {
			name = "stored-topic"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			cfg := pgdriver.DefaultConfig()
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:      false,
				ExactlyOnceDelivery: true,
				GuaranteedOrder:     true,
				Persistent:          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				beginner := wsql.BeginnerFromPgx(db.Pool)
				logger := watermill.NopLogger{}
				pub, err := pgdriver.NewPublisher(beginner, cfg, true, logger)
				require.NoError(t, err)
				sub, err := pgdriver.NewSubscriber(beginner, cfg, keep, logger)
				require.NoError(t, err)
				return pub, sub
			}, nil)
		})
	}
}

func TestConfigValidateNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*pgdriver.Config)
		want   string
	}{
		{"ok", func(*pgdriver.Config) {}, ""},
		{"bad namespace", func(c *pgdriver.Config) { c.Namespace = `x"; DROP TABLE races; --` }, "namespace"},
		{"no poll interval", func(c *pgdriver.Config) { c.PollInterval = 0 }, "poll interval"},
		{"no batch", func(c *pgdriver.Config) { c.SubscribeBatchSize = 0 }, "batch size"},
		{"no ack deadline", func(c *pgdriver.Config) { c.AckDeadline = 0 }, "ack deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgdriver.DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
