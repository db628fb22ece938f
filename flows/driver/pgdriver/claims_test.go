package pgdriver_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/handlers"
)

// When every slot of a keyed subscription is busy and other races' messages
// wait, the acknowledgement that frees a slot claims the oldest waiting
// message of any race for it, in the same commit: the race that waited
// longest goes first, before the acknowledged race's own next message, and
// without a claim of the run loop in a transaction of its own.
func TestSettlingClaimsTheOldestWaitingRaceWhenEverySlotIsBusy(t *testing.T) {
	t.Parallel()
	const topic = "settle-claims-oldest"
	cfg := pgdriver.DefaultConfig()
	cfg.FallbackPoll = time.Hour // only commits wake the subscription
	_, d := openDriver(t, cfg)
	sub := d.NewSubscriber(false, 2)
	msgs := subscribed(t, sub, topic)
	publish := func(race, uuid string) {
		t.Helper()
		msg := message.NewMessage(uuid, []byte(uuid))
		msg.Metadata.Set(handlers.KeyRaceID, race)
		require.NoError(t, d.Publisher().Publish(topic, msg))
	}

	publish("a", "a1")
	publish("b", "b1")
	first, second := nextMsg(t, msgs), nextMsg(t, msgs)
	require.ElementsMatch(t, []string{"a1", "b1"}, []string{first.UUID, second.UUID})
	a1 := first
	if a1.UUID != "a1" {
		a1 = second
	}
	publish("c", "c1")
	publish("a", "a2")
	require.Eventually(t, func() bool { return pgdriver.WaitsForSlot(sub) }, time.Minute, time.Millisecond,
		"the run loop waits for a slot")

	a1.Ack()
	c1 := receive(t, msgs, "c1") // the oldest waiting race, not a1's own next
	require.True(t, pgdriver.WaitsForSlot(sub), "the slot went on to c1 without the run loop")
	c1.Ack()
	receive(t, msgs, "a2").Ack()
}
