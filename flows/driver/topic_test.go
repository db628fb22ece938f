package driver_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
)

func TestTopicNamesRoundTripAndStrangersAreRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		want driver.Topic
		ok   bool
	}{
		{"race.poll.0", driver.ShardTopic("race", driver.Poll, 0), true},
		{"demo.fetched.12", driver.ShardTopic("demo", driver.Fetched, 12), true},
		{"race.poison", driver.PoisonTopic("race"), true},
		{"race.written.3", driver.ShardTopic("race", driver.Written, 3), true},
		{"race.alerts", driver.AlertsTopic("race"), true},
		{"race.alerts.0", driver.Topic{}, false},
		{"topic_x", driver.Topic{}, false},
		{"race.poll", driver.Topic{}, false},
		{"race.poison.1", driver.Topic{}, false},
		{"race.poll.01", driver.Topic{}, false},
		{"race.poll.-1", driver.Topic{}, false},
		{"race.gossip.1", driver.Topic{}, false},
		{"Race.poll.1", driver.Topic{}, false},
	} {
		got, err := driver.ParseTopic(tc.name)
		if !tc.ok {
			require.Error(t, err, tc.name)
			require.Empty(t, driver.KindOf(tc.name), tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
		require.Equal(t, tc.name, got.String(), tc.name)
		require.Equal(t, tc.want.Kind, driver.KindOf(tc.name))
	}
}

func TestTopicsListEveryShardOfEveryStageThenPoisonAndAlerts(t *testing.T) {
	t.Parallel()
	var names []string
	for _, tp := range driver.Topics("ns", 2) {
		names = append(names, tp.String())
	}
	require.Equal(t, []string{"ns.poll.0", "ns.poll.1", "ns.fetched.0", "ns.fetched.1",
		"ns.written.0", "ns.written.1", "ns.processed.0", "ns.processed.1", "ns.poison", "ns.alerts"}, names)
}

func TestShardIsStableAndWithinRange(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "0f57e087-00d9-4c61-9549-835abe2ae2ed", ""} {
		s := driver.Shard(id, 4)
		require.Equal(t, s, driver.Shard(id, 4))
		require.GreaterOrEqual(t, s, 0)
		require.Less(t, s, 4)
	}
}
