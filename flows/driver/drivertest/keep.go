package drivertest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// poisoned is a message of race that failed on topic, as the engine's
// poison middleware publishes it.
func poisoned(topic driver.Topic, race string, i int) *message.Message {
	m := newMessage(race, i)
	m.Metadata.Set(middleware.ReasonForPoisonedKey, "write race "+race+": database: boom "+strconv.Itoa(i))
	m.Metadata.Set(middleware.PoisonedTopicKey, topic.String())
	m.Metadata.Set(middleware.PoisonedHandlerKey, "write.0")
	m.Metadata.Set(middleware.PoisonedSubscriberKey, "sub")
	m.Metadata.Set(handlers.KeyStage, handlers.StageWrite)
	m.Metadata.Set(handlers.KeyErrorKind, "database")
	return m
}

func testPoison(t *testing.T, h Harness) {
	ctx := context.Background()
	ns := namespace("p")
	d := open(t, h, ns)
	q := d.Poison()
	empty, err := q.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err, "a flow that never ran has an empty poison queue")
	require.Empty(t, empty)
	initTopics(t, d, ns)
	target := driver.ShardTopic(ns, driver.Written, 1)
	for i, race := range []string{"r1", "r2", "r1"} {
		require.NoError(t, d.Publisher().Publish(driver.PoisonTopic(ns).String(), poisoned(target, race, i)))
	}
	var all []driver.PoisonMessage
	require.Eventually(t, func() bool {
		all, err = q.List(ctx, driver.PoisonFilter{})
		require.NoError(t, err)
		return len(all) == 3
	}, wait, 10*time.Millisecond)
	require.True(t, slices.IsSortedFunc(all, func(a, b driver.PoisonMessage) int { return int(b.ID - a.ID) }), "newest first")
	require.Equal(t, "r1", all[0].RaceID)
	require.Equal(t, handlers.StageWrite, all[0].Stage)
	require.Equal(t, "database", all[0].Kind)
	require.Equal(t, target.String(), all[0].Topic)
	require.Contains(t, all[0].Reason, "boom 2")

	sum, err := q.Summary(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, sum.Count)
	require.Equal(t, map[string]int{"r1": 2, "r2": 1}, sum.ByRace)
	require.Equal(t, all[2].CreatedAt, sum.Oldest, "the oldest is the first poisoned")
	r1, err := q.List(ctx, driver.PoisonFilter{RaceID: "r1", Stage: handlers.StageWrite})
	require.NoError(t, err)
	require.Len(t, r1, 2)
	limited, err := q.List(ctx, driver.PoisonFilter{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, all[:1], limited)
	future, err := q.List(ctx, driver.PoisonFilter{Since: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Empty(t, future)

	one, err := q.Get(ctx, all[2].ID)
	require.NoError(t, err)
	require.Equal(t, "payload-0", string(one.Payload))
	_, err = q.Get(ctx, all[0].ID+1000)
	require.ErrorIs(t, err, driver.ErrPoisonNotFound)
	_, err = q.Requeue(ctx, driver.PoisonSelector{IDs: []int64{all[2].ID, all[0].ID + 1000}})
	require.ErrorIs(t, err, driver.ErrPoisonNotFound, "explicit ids must all exist")
	_, err = q.Requeue(ctx, driver.PoisonSelector{})
	require.Error(t, err, "a selection is needed")

	// Requeued: back on the topic it failed on, as it was published.
	n, err := q.Requeue(ctx, driver.PoisonSelector{IDs: []int64{all[2].ID}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ch := subscribe(t, d, target)
	m := next(t, ch)
	require.Equal(t, "payload-0", string(m.Payload))
	require.Equal(t, "1", m.Metadata.Get(driver.KeyRequeued))
	require.Empty(t, m.Metadata.Get(middleware.ReasonForPoisonedKey))
	require.Empty(t, m.Metadata.Get(handlers.KeyStage))
	require.Equal(t, "r1", m.Metadata.Get(handlers.KeyRaceID))
	ack(t, d, m)
	left, err := q.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Len(t, left, 2)

	n, err = q.Requeue(ctx, driver.PoisonSelector{RaceID: "r1"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, "payload-2", string(next(t, ch).Payload))

	// A message naming a topic outside the flow stays where it is.
	require.NoError(t, d.Publisher().Publish(driver.PoisonTopic(ns).String(), poisoned(driver.ShardTopic("elsewhere", driver.Poll, 0), "r3", 3)))
	require.Eventually(t, func() bool {
		got, err := q.List(ctx, driver.PoisonFilter{RaceID: "r3"})
		require.NoError(t, err)
		return len(got) == 1
	}, wait, 10*time.Millisecond)
	_, err = q.Requeue(ctx, driver.PoisonSelector{RaceID: "r3"})
	require.ErrorIs(t, err, driver.ErrBadRequeueTopic)

	purged, err := q.Purge(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, purged, "nothing is that old")
	purged, err = q.Purge(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 2, purged)
	left, err = q.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Empty(t, left)
}

func testStored(t *testing.T, h Harness) {
	ctx := context.Background()
	ns := namespace("s")
	d := open(t, h, ns)
	st, err := d.Stored()
	if !d.Durable() {
		require.ErrorIs(t, err, driver.ErrNotStored, "a driver whose messages die with the process stores nothing")
		return
	}
	require.NoError(t, err)
	initTopics(t, d, ns)
	t0, t3 := driver.ShardTopic(ns, driver.Fetched, 0), driver.ShardTopic(ns, driver.Fetched, 3)
	require.NoError(t, d.Publisher().Publish(t0.String(), newMessage("r1", 1), newMessage("r2", 2)))
	require.NoError(t, d.Publisher().Publish(t3.String(), newMessage("r3", 3)))
	topics, err := st.Topics(ctx)
	require.NoError(t, err)
	require.Equal(t, driver.Topics(ns, 4)[4:8], topics, "every shard's stored topic, in shard order")

	var polls []driver.StoredPoll
	require.NoError(t, st.Scan(ctx, t0, nil, func(p driver.StoredPoll) { polls = append(polls, p) }))
	require.Len(t, polls, 2)
	require.Equal(t, "r1", polls[0].RaceID)
	require.Equal(t, "r1@1", polls[0].PollID)
	require.Equal(t, newMessage("r1", 1).Metadata.Get(handlers.KeyObservedAt), polls[0].ObservedAt)
	var only []driver.StoredPoll
	require.NoError(t, st.Scan(ctx, t0, []string{"r2"}, func(p driver.StoredPoll) { only = append(only, p) }))
	require.Len(t, only, 1)
	require.Equal(t, "r2", only[0].RaceID)

	got := map[int64]*message.Message{}
	require.NoError(t, st.Load(ctx, t0, []int64{polls[1].Offset, polls[0].Offset, polls[1].Offset + 1000},
		func(off int64, m *message.Message, err error) {
			require.NoError(t, err)
			got[off] = m
		}))
	require.Len(t, got, 2, "an offset no longer stored is skipped")
	require.Equal(t, "payload-2", string(got[polls[1].Offset].Payload))
	require.Equal(t, "r2", got[polls[1].Offset].Metadata.Get(handlers.KeyRaceID))

	// Reading does not consume: the stage still gets every message.
	ch := subscribe(t, d, t0)
	require.Equal(t, "payload-1", string(next(t, ch).Payload))
}

func testPrune(t *testing.T, h Harness) {
	ctx := context.Background()
	ns := namespace("x")
	d := open(t, h, ns)
	st, err := d.Stored()
	if errors.Is(err, driver.ErrNotStored) {
		n, err := d.Prune(ctx, time.Now().Add(time.Hour), 10)
		require.NoError(t, err)
		require.Zero(t, n)
		return
	}
	require.NoError(t, err)
	initTopics(t, d, ns)
	topic := driver.ShardTopic(ns, driver.Fetched, 0)
	for i := range 5 {
		require.NoError(t, d.Publisher().Publish(topic.String(), newMessage("r1", i)))
	}
	ch := subscribe(t, d, topic)
	for range 3 {
		ack(t, d, next(t, ch))
	}
	requireBacklog(t, d, topic, 2)
	n, err := d.Prune(ctx, time.Now().Add(-time.Hour), 2)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is older than the cutoff")
	n, err = d.Prune(ctx, time.Now().Add(time.Hour), 2)
	require.NoError(t, err)
	count := 0
	require.NoError(t, st.Scan(ctx, topic, nil, func(driver.StoredPoll) { count++ }))
	if !h.Prunes {
		require.Zero(t, n, "a backend that expires messages itself prunes nothing here")
		require.Equal(t, 5, count)
		return
	}
	require.EqualValues(t, 3, n, "the handled ones, in batches")
	require.Equal(t, 2, count, "unhandled messages are never pruned")
}

func testDrop(t *testing.T, h Harness) {
	ctx := context.Background()
	ns, other := namespace("d"), namespace("d")
	d, o := open(t, h, ns), open(t, h, other)
	for _, x := range []struct {
		d  driver.Driver
		ns string
	}{{d, ns}, {o, other}} {
		initTopics(t, x.d, x.ns)
		require.NoError(t, x.d.Publisher().Publish(driver.ShardTopic(x.ns, driver.Poll, 0).String(), newMessage("r1", 1)))
		require.NoError(t, x.d.Publisher().Publish(driver.PoisonTopic(x.ns).String(), poisoned(driver.ShardTopic(x.ns, driver.Poll, 0), "r1", 1)))
		requireBacklog(t, x.d, driver.ShardTopic(x.ns, driver.Poll, 0), 1)
	}
	require.NoError(t, d.Drop(ctx))
	for _, s := range stats(t, d) {
		require.Zero(t, s.Backlog, "dropped: %s", s.Topic)
	}
	left, err := d.Poison().List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Empty(t, left)
	requireBacklog(t, o, driver.ShardTopic(other, driver.Poll, 0), 1)
	kept, err := o.Poison().List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Len(t, kept, 1, "another namespace keeps its messages")
}
