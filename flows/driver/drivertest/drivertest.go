// Package drivertest is the conformance suite every driver passes: the
// transport the engine relies on (delivery, redelivery, order, hand-offs
// inside a delivery, result fan-out), and what a backend keeps (the poison
// queue, the stored topic, retention, queue statistics, dropping a
// namespace). A driver's own test calls Run with a Harness that opens it.
package drivertest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// Harness opens the driver under test and says what it promises.
type Harness struct {
	// Open opens a driver for namespace; the suite closes it. Every call of
	// one test shares the same backend (database, server).
	Open func(t *testing.T, namespace string) driver.Driver
	// TransactionalHandoff: outputs published through HandlerPublisher
	// during a delivery that is then nacked are never delivered.
	TransactionalHandoff bool
	// Prunes: Prune deletes handled stored messages (a backend that expires
	// them itself returns 0).
	Prunes bool
	// Keyed: a subscription asked for parallel > 1 hands out that many
	// messages of a topic at once, never two of one race.
	Keyed bool
	// KeepsLastError: Delivery says why the previous handling failed.
	KeepsLastError bool
}

// wait bounds how long the suite waits for something that must happen; it
// is a guard against a hang, not a performance assertion.
const wait = 30 * time.Second

var namespaces atomic.Int64

// namespace is a namespace no other subtest of this process uses.
func namespace(prefix string) string {
	return fmt.Sprintf("dt%s%d-%d", prefix, time.Now().UnixNano()%1_000_000, namespaces.Add(1))
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"InstancesStartedAtOnceAllInitialise", testInitAtOnce},
		{"DeliversInOrderAndAckEndsAMessage", testDeliversInOrder},
		{"NackRedelivers", testNackRedelivers},
		{"DeliveriesAreCounted", testDeliveriesCounted},
		{"ParallelNeverTwoOfOneRace", testParallel},
		{"ParallelKeepsARacesOrderWhilePublishing", testParallelPublishing},
		{"HandoffInsideADelivery", testHandoff},
		{"BeginWriteInsideADelivery", testBeginWrite},
		{"BeginWriteGroupSharesOneTransaction", testBeginWriteGroup},
		{"ResultsReachEveryInstanceOrOne", testResults},
		{"QueueStatsCountTheBacklog", testQueueStats},
		{"PoisonQueueListsGetsRequeuesAndPurges", testPoison},
		{"StoredTopicScansAndLoads", testStored},
		{"PruneDeletesOnlyHandledStoredMessages", testPrune},
		{"DropForgetsTheNamespaceOnly", testDrop},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

func open(t *testing.T, h Harness, ns string) driver.Driver {
	t.Helper()
	d := h.Open(t, ns)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// newMessage is a message of a poll of race, as the flow publishes them.
func newMessage(race string, i int) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte("payload-"+strconv.Itoa(i)))
	msg.Metadata.Set(handlers.KeyRaceID, race)
	msg.Metadata.Set(handlers.KeyPollID, race+"@"+strconv.Itoa(i))
	msg.Metadata.Set(handlers.KeyObservedAt, time.Date(2026, 12, 1, 10, 0, i, 0, time.UTC).Format(time.RFC3339Nano))
	return msg
}

// subscribe subscribes to topic until the test ends.
func subscribe(t *testing.T, d driver.Driver, topic driver.Topic) <-chan *message.Message {
	t.Helper()
	return subscribeParallel(t, d, topic, 1)
}

// subscribeParallel subscribes asking for parallel messages at a time.
func subscribeParallel(t *testing.T, d driver.Driver, topic driver.Topic, parallel int) <-chan *message.Message {
	t.Helper()
	sub, err := d.Subscriber(topic.Kind, parallel)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic.String())
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		require.NoError(t, sub.Close())
	})
	return ch
}

// next receives the next message.
func next(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "subscription ended")
		return m
	case <-time.After(wait):
		t.Fatal("no message arrived")
		return nil
	}
}

// handle handles m as the engine's router does: through the driver's
// middleware, then an ack, or a nack when fn fails.
func handle(t *testing.T, d driver.Driver, m *message.Message, fn func(*message.Message) error) {
	t.Helper()
	_, err := d.Middleware()(func(m *message.Message) ([]*message.Message, error) { return nil, fn(m) })(m)
	if err != nil {
		m.Metadata.Set(handlers.KeyLastError, err.Error()) // as the engine does
		m.Nack()
		return
	}
	m.Ack()
}

// ack handles m successfully.
func ack(t *testing.T, d driver.Driver, m *message.Message) {
	t.Helper()
	handle(t, d, m, func(*message.Message) error { return nil })
}

var errFailed = errors.New("drivertest: the handler failed")

func initTopics(t *testing.T, d driver.Driver, ns string) {
	t.Helper()
	require.NoError(t, d.Init(context.Background(), driver.Topics(ns, 4)))
}

func testDeliversInOrder(t *testing.T, h Harness) {
	ns := namespace("o")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	require.NoError(t, d.Init(context.Background(), driver.Topics(ns, 4)), "Init is idempotent")
	topic := driver.ShardTopic(ns, driver.Poll, 1)
	for i := range 5 {
		require.NoError(t, d.Publisher().Publish(topic.String(), newMessage("r1", i)))
	}
	ch := subscribe(t, d, topic)
	for i := range 5 {
		m := next(t, ch)
		require.Equal(t, "payload-"+strconv.Itoa(i), string(m.Payload), "in publishing order")
		require.Equal(t, "r1", m.Metadata.Get(handlers.KeyRaceID))
		require.False(t, d.Lost(m))
		ack(t, d, m)
	}
	requireBacklog(t, d, topic, 0)
}

func testNackRedelivers(t *testing.T, h Harness) {
	ns := namespace("n")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	topic := driver.ShardTopic(ns, driver.Written, 0)
	first := newMessage("r1", 1)
	require.NoError(t, d.Publisher().Publish(topic.String(), first, newMessage("r1", 2)))
	ch := subscribe(t, d, topic)
	m := next(t, ch)
	require.Equal(t, first.UUID, m.UUID)
	handle(t, d, m, func(*message.Message) error { return errFailed })
	again := next(t, ch)
	require.Equal(t, first.UUID, again.UUID, "the nacked message comes back before the next one")
	require.Equal(t, "payload-1", string(again.Payload))
	ack(t, d, again)
	require.Equal(t, "payload-2", string(next(t, ch).Payload))
}

func testDeliveriesCounted(t *testing.T, h Harness) {
	ns := namespace("c")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	topic := driver.ShardTopic(ns, driver.Fetched, 3)
	require.NoError(t, d.Publisher().Publish(topic.String(), newMessage("r1", 1)))
	ch := subscribe(t, d, topic)
	for i := 1; i <= 3; i++ {
		m := next(t, ch)
		n, last := d.Delivery(m)
		require.Equal(t, i, n, "delivery %d", i)
		if h.KeepsLastError && i > 1 {
			require.Contains(t, last, errFailed.Error(), "why the previous handling failed")
		}
		if i < 3 {
			handle(t, d, m, func(*message.Message) error { return errFailed })
			continue
		}
		ack(t, d, m)
	}
	requireBacklog(t, d, topic, 0)
}

func testParallel(t *testing.T, h Harness) {
	ns := namespace("k")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	topic := driver.ShardTopic(ns, driver.Poll, 0)
	for i, race := range []string{"r1", "r1", "r2", "r3", "r2"} {
		require.NoError(t, d.Publisher().Publish(topic.String(), newMessage(race, i)))
	}
	ch := subscribeParallel(t, d, topic, 3)
	if !h.Keyed {
		for i := range 5 {
			m := next(t, ch)
			require.Equal(t, "payload-"+strconv.Itoa(i), string(m.Payload), "one at a time, in order")
			ack(t, d, m)
		}
		return
	}
	// The first message of each race, at once, while none is handled.
	heads := map[string]*message.Message{}
	for range 3 {
		m := next(t, ch)
		race := m.Metadata.Get(handlers.KeyRaceID)
		require.NotContains(t, heads, race, "two of one race at once")
		heads[race] = m
	}
	require.Equal(t, "payload-0", string(heads["r1"].Payload))
	require.Equal(t, "payload-2", string(heads["r2"].Payload))
	require.Equal(t, "payload-3", string(heads["r3"].Payload))
	// r1's second may go once its first is handled; r2's waits for r2's.
	ack(t, d, heads["r1"])
	m := next(t, ch)
	require.Equal(t, "payload-1", string(m.Payload))
	ack(t, d, m)
	ack(t, d, heads["r3"])
	ack(t, d, heads["r2"])
	m = next(t, ch)
	require.Equal(t, "payload-4", string(m.Payload))
	ack(t, d, m)
	requireBacklog(t, d, topic, 0)
}

// testParallelPublishing publishes to a subscribed topic one message at a
// time, so that each arrives while earlier ones are handled: a race's next
// waits for its first, another race's goes at once.
func testParallelPublishing(t *testing.T, h Harness) {
	ns := namespace("kp")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	topic := driver.ShardTopic(ns, driver.Poll, 0)
	ch := subscribeParallel(t, d, topic, 3)
	publish := func(race string, i int) {
		require.NoError(t, d.Publisher().Publish(topic.String(), newMessage(race, i)))
	}
	publish("r1", 0)
	first := next(t, ch)
	require.Equal(t, "payload-0", string(first.Payload))
	publish("r1", 1)
	publish("r2", 2)
	if !h.Keyed {
		ack(t, d, first)
		for i := 1; i <= 2; i++ {
			m := next(t, ch)
			require.Equal(t, "payload-"+strconv.Itoa(i), string(m.Payload), "one at a time, in order")
			ack(t, d, m)
		}
		requireBacklog(t, d, topic, 0)
		return
	}
	m := next(t, ch)
	require.Equal(t, "payload-2", string(m.Payload), "r2's goes while r1's first is handled; r1's next waits for it")
	ack(t, d, m)
	ack(t, d, first)
	m = next(t, ch)
	require.Equal(t, "payload-1", string(m.Payload))
	ack(t, d, m)
	requireBacklog(t, d, topic, 0)
}

func testHandoff(t *testing.T, h Harness) {
	ns := namespace("h")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	in, out := driver.ShardTopic(ns, driver.Poll, 0), driver.ShardTopic(ns, driver.Fetched, 0)
	require.NoError(t, d.Publisher().Publish(in.String(), newMessage("r1", 1), newMessage("r1", 2)))
	ch := subscribe(t, d, in)

	// publishing publishes an output of id uuid inside the delivery, then
	// returns fail.
	publishing := func(uuid string, i int, fail error) func(*message.Message) error {
		return func(m *message.Message) error {
			o := newMessage("r1", i)
			o.UUID = uuid
			o.SetContext(m.Context())
			require.NoError(t, d.HandlerPublisher().Publish(out.String(), o))
			return fail
		}
	}
	// A first attempt publishes its output and fails; the second publishes
	// it again (outputs' ids derive from the input's) and succeeds.
	id := watermill.NewUUID()
	handle(t, d, next(t, ch), publishing(id, 10, errFailed))
	m := next(t, ch)
	require.Equal(t, "payload-1", string(m.Payload))
	handle(t, d, m, publishing(id, 10, nil))

	m = next(t, ch)
	require.Equal(t, "payload-2", string(m.Payload))
	if h.TransactionalHandoff {
		// An output of a failed attempt goes with its rollback, whatever its id.
		handle(t, d, m, publishing(watermill.NewUUID(), 20, errFailed))
		m = next(t, ch)
	}
	ack(t, d, m)
	requireBacklog(t, d, in, 0)

	outs := subscribe(t, d, out)
	got := next(t, outs)
	require.Equal(t, id, got.UUID)
	ack(t, d, got)
	// Exactly one output: a repeat would be waiting or in flight.
	requireBacklog(t, d, out, 0)
	require.NoError(t, d.HandlerPublisher().Close(), "closing a handler publisher does nothing")
	require.NoError(t, d.Publisher().Publish(out.String(), newMessage("r1", 11)), "the driver's publisher still works")
	require.Equal(t, "payload-11", string(next(t, outs).Payload))
}

func testBeginWrite(t *testing.T, h Harness) {
	ns := namespace("w")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	in, out := driver.ShardTopic(ns, driver.Written, 2), driver.ShardTopic(ns, driver.Processed, 2)
	require.NoError(t, d.Publisher().Publish(in.String(), newMessage("r1", 1), newMessage("r1", 2), newMessage("r1", 3)))
	ch, outs := subscribe(t, d, in), subscribe(t, d, out)
	table := `"drivertest_` + ns + `"`
	insert := func(n int) *pgx.Batch {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO `+table+` VALUES ($1)`, n)
		return b
	}

	// The first write (a single statement first) commits with its delivery.
	handle(t, d, next(t, ch), func(m *message.Message) error {
		tx, err := d.BeginWrite(m)
		require.NoError(t, err)
		_, err = tx.Exec(m.Context(), `CREATE TABLE `+table+` (n int)`)
		require.NoError(t, err)
		require.NoError(t, tx.SendBatch(m.Context(), insert(1)).Close())
		return tx.Commit(m.Context())
	})
	// The second (a batch first, as the write stage sends) fails, rolls
	// back, and its delivery still publishes (the failure result the write
	// handler reports).
	handle(t, d, next(t, ch), func(m *message.Message) error {
		tx, err := d.BeginWrite(m)
		require.NoError(t, err)
		b := insert(2)
		b.Queue(`SELECT 1/0`)
		require.Error(t, tx.SendBatch(m.Context(), b).Close())
		require.NoError(t, tx.Rollback(m.Context()), "a failed write rolls back on its own")
		require.False(t, d.Lost(m))
		o := newMessage("r1", 20)
		o.SetContext(m.Context())
		return d.HandlerPublisher().Publish(out.String(), o)
	})
	require.Equal(t, "payload-20", string(next(t, outs).Payload), "published after the write rolled back")
	// The third writes and its handler then fails: where the hand-off is
	// transactional, its rows go with the delivery.
	handle(t, d, next(t, ch), func(m *message.Message) error {
		tx, err := d.BeginWrite(m)
		require.NoError(t, err)
		require.NoError(t, tx.SendBatch(m.Context(), insert(3)).Close())
		require.NoError(t, tx.Commit(m.Context()))
		return errFailed
	})
	want := []int32{1, 3}
	if h.TransactionalHandoff {
		want = []int32{1}
	}
	// Its redelivery reads what is stored (a query first).
	m := next(t, ch)
	require.Equal(t, "payload-3", string(m.Payload))
	requireStoredThenDrop(t, d, m, table, want, "committed writes are stored, rolled-back ones not")
	requireBacklog(t, d, in, 0)
}

// requireStoredThenDrop handles m by reading the numbers stored in table
// inside its write transaction, requiring want, and dropping the table.
func requireStoredThenDrop(t *testing.T, d driver.Driver, m *message.Message, table string, want []int32, why string) {
	t.Helper()
	handle(t, d, m, func(m *message.Message) error {
		tx, err := d.BeginWrite(m)
		require.NoError(t, err)
		var rows []int32
		require.NoError(t, tx.QueryRow(m.Context(), `SELECT coalesce(array_agg(n ORDER BY n), '{}') FROM `+table).Scan(&rows))
		require.Equal(t, want, rows, why)
		_, err = tx.Exec(m.Context(), `DROP TABLE `+table)
		require.NoError(t, err)
		return tx.Commit(m.Context())
	})
}

func testResults(t *testing.T, h Harness) {
	ns := namespace("r")
	a, b := open(t, h, ns), open(t, h, ns)
	initTopics(t, a, ns)
	topic := driver.ShardTopic(ns, driver.Processed, 3)
	cha, chb := subscribe(t, a, topic), subscribe(t, b, topic)
	const n = 4
	for i := range n {
		require.NoError(t, a.Publisher().Publish(topic.String(), newMessage("r1", i)))
	}
	if a.FansOutResults() {
		for _, ch := range []<-chan *message.Message{cha, chb} {
			for i := range n {
				m := next(t, ch)
				require.Equal(t, "payload-"+strconv.Itoa(i), string(m.Payload), "every instance, in order")
				ack(t, a, m)
			}
		}
		return
	}
	seen := map[string]int{}
	for range n {
		select {
		case m := <-cha:
			seen[string(m.Payload)]++
			ack(t, a, m)
		case m := <-chb:
			seen[string(m.Payload)]++
			ack(t, b, m)
		case <-time.After(wait):
			t.Fatal("a result did not arrive")
		}
	}
	require.Len(t, seen, n, "each result reaches one instance")
	for p, k := range seen {
		require.Equal(t, 1, k, p)
	}
}

// stats reads the queue statistics by topic.
func stats(t *testing.T, d driver.Driver) map[driver.Topic]driver.QueueStat {
	t.Helper()
	st, err := d.QueueStats(context.Background())
	require.NoError(t, err)
	out := map[driver.Topic]driver.QueueStat{}
	for _, s := range st {
		out[s.Topic] = s
	}
	return out
}

// requireStats waits until the statistics satisfy ok (acks may settle
// after the handler returns).
func requireStats(t *testing.T, d driver.Driver, ok func(map[driver.Topic]driver.QueueStat) bool) {
	t.Helper()
	require.Eventually(t, func() bool { return ok(stats(t, d)) }, wait, 10*time.Millisecond)
}

func requireBacklog(t *testing.T, d driver.Driver, topic driver.Topic, n int64) {
	t.Helper()
	var last map[driver.Topic]driver.QueueStat
	require.Eventually(t, func() bool {
		last = stats(t, d)
		return last[topic].Backlog == n
	}, wait, 10*time.Millisecond, "backlog of %s, want %d", topic, n)
}

func testQueueStats(t *testing.T, h Harness) {
	ns := namespace("q")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	poll := driver.ShardTopic(ns, driver.Poll, 2)
	for i := range 3 {
		require.NoError(t, d.Publisher().Publish(poll.String(), newMessage("r1", i)))
	}
	poison := driver.PoisonTopic(ns)
	require.NoError(t, d.Publisher().Publish(poison.String(), poisoned(driver.ShardTopic(ns, driver.Poll, 2), "r1", 1)))
	requireBacklog(t, d, poll, 3)
	requireBacklog(t, d, poison, 1)
	st := stats(t, d)
	require.GreaterOrEqual(t, st[poll].OldestAge, time.Duration(0))
	require.Zero(t, st[driver.ShardTopic(ns, driver.Poll, 0)].Backlog, "another shard")
	other := open(t, h, namespace("q"))
	for tp := range stats(t, other) {
		require.NotEqual(t, ns, tp.Namespace, "another namespace sees none of these")
	}
}
