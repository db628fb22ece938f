package flows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

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

func TestTopicKindAndStreamNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ topic, kind, stream string }{
		{"race.poll.0", kindPoll, "raceflow_race_poll_0"},
		{"demo.fetched.12", kindFetched, "raceflow_demo_fetched_12"},
		{"race.poison", kindPoison, "raceflow_race_poison"},
		{"topic_x", "", "raceflow_topic_x"},
	} {
		require.Equal(t, tc.kind, topicKind(tc.topic), tc.topic)
		require.Equal(t, tc.stream, natsName(tc.topic), tc.topic)
	}
}

func TestNATSConfigValidateNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*NATSConfig)
		want   string
	}{
		{"ok", func(*NATSConfig) {}, ""},
		{"no url", func(c *NATSConfig) { c.URL = "" }, "url"},
		{"tiny ack wait", func(c *NATSConfig) { c.AckWait = time.Millisecond }, "ack wait"},
		{"window below ack wait", func(c *NATSConfig) { c.DuplicateWindow = time.Second }, "duplicate window"},
		{"no retention", func(c *NATSConfig) { c.StoredRetention = 0 }, "retention"},
		{"negative nak backoff", func(c *NATSConfig) { c.NakBackoffMax = -time.Second }, "nak backoff"},
		{"replicas", func(c *NATSConfig) { c.Replicas = 7 }, "replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultNATSConfig()
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
	cfg := DefaultNATSConfig()
	cfg.URL = "nats://raceflow:s3cret@127.0.0.1:1"
	_, _, err := dialNATS(cfg)
	require.ErrorIs(t, err, ErrNATSUnavailable)
	require.NotContains(t, err.Error(), "s3cret")
	require.Contains(t, err.Error(), "127.0.0.1:1")
}
