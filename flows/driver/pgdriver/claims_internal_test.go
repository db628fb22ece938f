package pgdriver

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// When every slot of a keyed subscription is busy and other races' messages
// wait, the acknowledgement that frees a slot claims the oldest waiting
// message of any race for it, in the same commit: the race that waited
// longest goes first, before the acknowledged race's own next message, and
// without a claim of the run loop in a transaction of its own.
func TestSettlingClaimsTheOldestWaitingRaceWhenEverySlotIsBusy(t *testing.T) {
	t.Parallel()
	const topic = "settle-claims-oldest"
	cfg := DefaultConfig()
	cfg.FallbackPoll = time.Hour // only commits wake the subscription
	d, err := Open(cfg, pgtest.New(t).Pool, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	s := d.NewSubscriber(false, 2).(*subscriber)
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := s.Subscribe(ctx, topic)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		require.NoError(t, s.Close())
	})
	publish := func(race, uuid string) {
		t.Helper()
		msg := message.NewMessage(uuid, []byte(uuid))
		msg.Metadata.Set(handlers.KeyRaceID, race)
		require.NoError(t, d.Publisher().Publish(topic, msg))
	}
	receive := func() *message.Message {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(time.Minute):
			t.Fatal("no message was handed out")
			return nil
		}
	}

	publish("a", "a1")
	publish("b", "b1")
	first, second := receive(), receive()
	require.ElementsMatch(t, []string{"a1", "b1"}, []string{first.UUID, second.UUID})
	a1 := first
	if a1.UUID != "a1" {
		a1 = second
	}
	publish("c", "c1")
	publish("a", "a2")
	sub := s.subs[0]
	require.Eventually(t, sub.waiting.Load, time.Minute, time.Millisecond, "the run loop waits for a slot")

	a1.Ack()
	got := receive()
	require.Equal(t, "c1", got.UUID, "the oldest waiting race, not a1's own next")
	require.True(t, sub.waiting.Load(), "the slot went on to c1 without the run loop")
	got.Ack()
	require.Equal(t, "a2", receive().UUID)
}
