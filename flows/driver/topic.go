package driver

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/raceflow/raceflow/config"
)

// Kind is what a topic carries.
type Kind string

// The kinds of topic a flow has, in the order a poll passes them.
const (
	// Poll carries poll requests (race.poll).
	Poll Kind = "poll"
	// Fetched carries raw API bodies; it is the stored topic replay reads.
	Fetched Kind = "fetched"
	// Transformed carried polls from the transform stage to the write stage
	// in releases before the write handler ran the transform itself. No
	// flow publishes to it any more; the engine drains what an upgraded
	// installation left in it (LegacyKinds).
	Transformed Kind = "transformed"
	// Written carries the write stage's results to the detect stage.
	Written Kind = "written"
	// Processed carries poll results.
	Processed Kind = "processed"
	// Poison keeps messages that failed for good (one topic per flow).
	Poison Kind = "poison"
	// Alerts carries the alerts the detect stage fires to the notifier (one
	// topic per flow).
	Alerts Kind = "alerts"
)

// StageKinds are the sharded kinds, each consumed by one stage (Processed
// by the engine's result delivery).
func StageKinds() []Kind { return []Kind{Poll, Fetched, Written, Processed} }

// LegacyKinds are sharded kinds an earlier release published to and this
// one does not: what they still hold after an upgrade is handled, by the
// stage that now consumes such messages, and nothing new arrives.
func LegacyKinds() []Kind { return []Kind{Transformed} }

// Kept reports whether a kind's messages stay after they are handled:
// the stored topic (replay) and the poison queue (inspection).
func (k Kind) Kept() bool { return k == Fetched || k == Poison }

// Sharded reports whether a kind has a topic per shard; poison and alerts
// have one topic per flow.
func (k Kind) Sharded() bool { return k != Poison && k != Alerts }

func (k Kind) valid() bool {
	switch k {
	case Poll, Fetched, Transformed, Written, Processed, Poison, Alerts:
		return true
	}
	return false
}

// Topic names one topic of a flow: "<namespace>.<kind>.<shard>", or
// "<namespace>.<kind>" for the unsharded poison and alerts topics (Shard -1).
type Topic struct {
	Namespace string
	Kind      Kind
	Shard     int
}

// ShardTopic is the topic of one shard of a stage kind.
func ShardTopic(namespace string, kind Kind, shard int) Topic {
	return Topic{Namespace: namespace, Kind: kind, Shard: shard}
}

// PoisonTopic is the poison topic of namespace's flow.
func PoisonTopic(namespace string) Topic { return Topic{Namespace: namespace, Kind: Poison, Shard: -1} }

// AlertsTopic is the alerts topic of namespace's flow.
func AlertsTopic(namespace string) Topic { return Topic{Namespace: namespace, Kind: Alerts, Shard: -1} }

// String is the topic's name on every backend.
func (t Topic) String() string {
	if t.Shard < 0 {
		return t.Namespace + "." + string(t.Kind)
	}
	return t.Namespace + "." + string(t.Kind) + "." + strconv.Itoa(t.Shard)
}

// ParseTopic reads a topic name; anything that is not one of a flow's
// topics is an error.
func ParseTopic(s string) (Topic, error) {
	parts := strings.Split(s, ".")
	bad := fmt.Errorf("driver: %q is not a topic of a flow", s)
	if len(parts) < 2 || len(parts) > 3 || config.ValidNamespace(parts[0]) != nil || !Kind(parts[1]).valid() {
		return Topic{}, bad
	}
	t := Topic{Namespace: parts[0], Kind: Kind(parts[1]), Shard: -1}
	switch {
	case !t.Kind.Sharded() && len(parts) == 2:
		return t, nil
	case t.Kind.Sharded() && len(parts) == 3:
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 0 || strconv.Itoa(n) != parts[2] {
			return Topic{}, bad
		}
		t.Shard = n
		return t, nil
	}
	return Topic{}, bad
}

// KindOf is the kind of a topic name, "" when it is none of a flow's.
func KindOf(topic string) Kind {
	t, err := ParseTopic(topic)
	if err != nil {
		return ""
	}
	return t.Kind
}

// Shard is the shard of a race: stable, so one race's polls stay in order.
func Shard(raceID string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(raceID))
	return int(h.Sum32() % uint32(shards))
}

// Topics lists every topic of a flow: each stage kind's shards, then poison
// and alerts.
func Topics(namespace string, shards int) []Topic {
	out := make([]Topic, 0, len(StageKinds())*shards+2)
	for _, kind := range StageKinds() {
		for s := 0; s < shards; s++ {
			out = append(out, ShardTopic(namespace, kind, s))
		}
	}
	return append(out, PoisonTopic(namespace), AlertsTopic(namespace))
}
