package pgdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// A results reader marks what it delivered as read, in bulk, and marks
// what is left when it ends: a reader started later does not read those
// results again.
func TestResultsReaderMarksWhatItDeliveredWhenItEnds(t *testing.T) {
	t.Parallel()
	const topic = "results-marked"
	cfg := pgdriver.DefaultConfig()
	cfg.FallbackPoll = time.Hour // only publishing wakes the reader
	db, d := openDriver(t, cfg)
	publish := func(uuid string) {
		t.Helper()
		require.NoError(t, d.Publisher().Publish(topic, message.NewMessage(uuid, []byte(uuid))))
	}

	sub, msgs := resultsReader(t, d, topic)
	publish("r1")
	receive(t, msgs, "r1").Ack()
	publish("r2")
	receive(t, msgs, "r2").Ack()
	require.NoError(t, sub.Close())
	require.Zero(t, unread(t, db, topic), "the reader marks what is left when it ends")

	_, msgs = resultsReader(t, d, topic)
	publish("r3")
	receive(t, msgs, "r3").Ack()
}

// An idle results reader marks what it delivered at its next poll.
func TestIdleResultsReaderMarksWhatItDeliveredAtItsNextPoll(t *testing.T) {
	t.Parallel()
	const topic = "results-marked-idle"
	cfg := pgdriver.DefaultConfig()
	cfg.FallbackPoll = 20 * time.Millisecond
	db, d := openDriver(t, cfg)

	_, msgs := resultsReader(t, d, topic)
	require.NoError(t, d.Publisher().Publish(topic, message.NewMessage("r1", []byte("r1"))))
	receive(t, msgs, "r1").Ack()
	require.Eventually(t, func() bool { return unread(t, db, topic) == 0 },
		time.Minute, 10*time.Millisecond, "r1 still unread")
}

// unread counts topic's results that no reader has marked read.
func unread(t *testing.T, db *pgtest.DB, topic string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM "watermill_`+topic+`" WHERE NOT acked`).Scan(&n))
	return n
}

// resultsReader subscribes to a results topic as the flow does; the
// subscriber closes at the end of the test unless closed before.
func resultsReader(t *testing.T, d *pgdriver.Driver, topic string) (message.Subscriber, <-chan *message.Message) {
	t.Helper()
	sub, err := d.Subscriber(driver.Processed, 1)
	require.NoError(t, err)
	return sub, subscribed(t, sub, topic)
}

// subscribed subscribes sub to topic; sub closes at the end of the test
// unless closed before.
func subscribed(t *testing.T, sub message.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		require.NoError(t, sub.Close())
	})
	return msgs
}

// nextMsg returns the next message handed out, failing the test when none
// comes within a minute.
func nextMsg(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(time.Minute):
		t.Fatal("no message was handed out within a minute")
		return nil
	}
}

// receive returns the next message handed out, which must be uuid.
func receive(t *testing.T, msgs <-chan *message.Message, uuid string) *message.Message {
	t.Helper()
	m := nextMsg(t, msgs)
	require.Equal(t, uuid, m.UUID)
	return m
}
