package natsdriver

import (
	"io"
	"log"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/drivertest"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	// Watermill's universal suite logs every bulk read and resend through the
	// standard logger (hundreds of lines); its failures are reported through
	// the test, so the lines say nothing a failure would not.
	log.SetOutput(io.Discard)
	pgtest.Main(m)
}

func TestNakBackoffHandsOverAtOnceThenBacksOffToItsCap(t *testing.T) {
	t.Parallel()
	d := nakBackoff{max: time.Second}
	for _, tc := range []struct {
		delivered uint64
		want      time.Duration
	}{
		{1, 0}, {2, 100 * time.Millisecond}, {3, 200 * time.Millisecond}, {4, 400 * time.Millisecond},
		{5, 800 * time.Millisecond}, {6, time.Second}, {1000, time.Second},
	} {
		require.Equal(t, tc.want, d.WaitTime(tc.delivered), "delivery %d", tc.delivered)
	}
	require.Zero(t, nakBackoff{}.WaitTime(10), "no cap: no backoff")
}

func TestStreamNamesReplaceTheTopicsDots(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ topic, stream string }{
		{"race.poll.0", "raceflow_race_poll_0"},
		{"demo.fetched.12", "raceflow_demo_fetched_12"},
		{"race.poison", "raceflow_race_poison"},
		{"topic_x", "raceflow_topic_x"},
	} {
		require.Equal(t, tc.stream, streamName(tc.topic), tc.topic)
	}
}

func TestNATSConfigValidateNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"tiny ack wait", func(c *Config) { c.AckWait = time.Millisecond }, "ack wait"},
		{"window below ack wait", func(c *Config) { c.DuplicateWindow = time.Second }, "duplicate window"},
		{"no retention", func(c *Config) { c.StoredRetention = 0 }, "retention"},
		{"negative nak backoff", func(c *Config) { c.NakBackoffMax = -time.Second }, "nak backoff"},
		{"replicas", func(c *Config) { c.Replicas = 7 }, "replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
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

func TestUnreachableNATSIsTypedAndHidesThePassword(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.URL = "nats://raceflow:s3cret@127.0.0.1:1"
	_, _, err := dial(cfg)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	require.NotContains(t, err.Error(), "s3cret")
	require.Contains(t, err.Error(), "127.0.0.1:1")
}

func TestDriverConformance(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	url := natstest.URL(t)
	drivertest.Run(t, drivertest.Harness{
		Open: func(t *testing.T, namespace string) driver.Driver {
			cfg := DefaultConfig()
			cfg.URL, cfg.Namespace = url, namespace
			d, err := Open(cfg, db.Pool, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, natstest.DeleteStreams(url, streamName(namespace+"."))) })
			return d
		},
	})
}

// TestUniversalPubSubSuite runs Watermill's suite on the driver's streams,
// consumers, publisher and subscriber: as a stage hand-off (work queue,
// shared durable consumer) and as the stored topic (kept with retention).
func TestUniversalPubSubSuite(t *testing.T) {
	url := natstest.URL(t)
	for _, kind := range []driver.Kind{driver.Poll, driver.Fetched} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.URL = url
			// The suite nacks each message dozens of times in a row; a
			// small cap keeps the backoff path in play without minutes of waiting.
			cfg.NakBackoffMax = 10 * time.Millisecond
			d, err := Open(cfg, nil, watermill.NopLogger{})
			require.NoError(t, err)
			d.kindOf = func(string) driver.Kind { return kind }
			t.Cleanup(func() {
				d.ensured.Range(func(topic, _ any) bool {
					require.NoError(t, d.js.DeleteStream(streamName(topic.(string))))
					return true
				})
				require.NoError(t, d.Close())
			})
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:      false,
				ExactlyOnceDelivery: false,
				GuaranteedOrder:     true,
				Persistent:          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				pub, err := d.newPublisher()
				require.NoError(t, err)
				sub, err := d.newSubscriber(false)
				require.NoError(t, err)
				return pub, sub
			}, nil)
		})
	}
}
