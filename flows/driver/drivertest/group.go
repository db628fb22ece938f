package drivertest

import (
	"strconv"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
)

// testBeginWriteGroup: one transaction serves the writes of messages
// handled at once, one per shard here (every driver hands those out
// together). Where hand-offs are transactional, each message's hand-off
// commits with the group, and a member that is not acknowledged takes the
// whole group with it; elsewhere the rows commit with the transaction and
// each message settles on its own. A group rolled back leaves its members
// free to write alone.
func testBeginWriteGroup(t *testing.T, h Harness) {
	ns := namespace("g")
	d := open(t, h, ns)
	initTopics(t, d, ns)
	const shards = 3
	out := driver.ShardTopic(ns, driver.Processed, 0)
	chs := make([]<-chan *message.Message, shards)
	for s := range shards {
		in := driver.ShardTopic(ns, driver.Written, s)
		race := "r" + strconv.Itoa(s)
		require.NoError(t, d.Publisher().Publish(in.String(), newMessage(race, 1), newMessage(race, 2), newMessage(race, 3), newMessage(race, 4)))
		chs[s] = subscribe(t, d, in)
	}
	outs := subscribe(t, d, out)
	table := `"drivertest_` + ns + `"`
	nextOfEach := func(payload string) []*message.Message {
		ms := make([]*message.Message, shards)
		for s := range shards {
			ms[s] = next(t, chs[s])
			require.Equal(t, payload, string(ms[s].Payload), "shard %d", s)
		}
		return ms
	}
	// publishing publishes an output numbered n inside m's delivery, then
	// returns fail.
	publishing := func(n int, fail error) func(*message.Message) error {
		return func(m *message.Message) error {
			o := newMessage("out", n)
			o.SetContext(m.Context())
			require.NoError(t, d.HandlerPublisher().Publish(out.String(), o))
			return fail
		}
	}
	insert := func(ns ...int) *pgx.Batch {
		b := &pgx.Batch{}
		for _, n := range ns {
			b.Queue(`INSERT INTO `+table+` VALUES ($1)`, n)
		}
		return b
	}

	// All acknowledged: the group's rows and every output are stored.
	ms := nextOfEach("payload-1")
	tx, err := d.BeginWriteGroup(ms)
	require.NoError(t, err)
	ctx := ms[0].Context()
	_, err = tx.Exec(ctx, `CREATE TABLE `+table+` (n int)`)
	require.NoError(t, err)
	require.NoError(t, tx.SendBatch(ctx, insert(1, 2, 3)).Close())
	require.NoError(t, tx.Commit(ctx))
	for i, m := range ms {
		handle(t, d, m, publishing(10+i, nil))
	}
	requireOutputs := func(first int) {
		t.Helper()
		want, got := map[string]bool{}, map[string]bool{}
		for i := range shards {
			want["payload-"+strconv.Itoa(first+i)] = true
			o := next(t, outs)
			require.False(t, got[string(o.Payload)], "output %s delivered twice", o.Payload)
			got[string(o.Payload)] = true
			ack(t, d, o)
		}
		require.Equal(t, want, got)
	}
	requireOutputs(10)

	// One member fails after the group wrote.
	ms = nextOfEach("payload-2")
	tx, err = d.BeginWriteGroup(ms)
	require.NoError(t, err)
	require.NoError(t, tx.SendBatch(ms[0].Context(), insert(4, 5, 6)).Close())
	require.NoError(t, tx.Commit(ms[0].Context()))
	handle(t, d, ms[0], publishing(20, nil))
	handle(t, d, ms[1], publishing(21, nil))
	handle(t, d, ms[2], publishing(22, errFailed))
	want := []int32{1, 2, 3}
	if h.TransactionalHandoff {
		// Nothing of the group stands: every member comes again.
		ms = nextOfEach("payload-2")
		for i, m := range ms {
			handle(t, d, m, publishing(20+i, nil))
		}
	} else {
		want = append(want, 4, 5, 6)
		handle(t, d, next(t, chs[2]), publishing(22, nil))
	}
	requireOutputs(20)

	// A group rolled back: each member writes alone instead.
	ms = nextOfEach("payload-3")
	tx, err = d.BeginWriteGroup(ms)
	require.NoError(t, err)
	require.NoError(t, tx.SendBatch(ms[0].Context(), insert(100)).Close())
	require.NoError(t, tx.Rollback(ms[0].Context()))
	for i, m := range ms {
		handle(t, d, m, func(m *message.Message) error {
			tx, err := d.BeginWrite(m)
			require.NoError(t, err)
			require.NoError(t, tx.SendBatch(m.Context(), insert(7+i)).Close())
			return tx.Commit(m.Context())
		})
	}
	want = append(want, 7, 8, 9)

	// What is stored, read in the last messages' deliveries.
	ms = nextOfEach("payload-4")
	requireStoredThenDrop(t, d, ms[0], table, want, "the groups' and the lone writes' rows, each once")
	for _, m := range ms[1:] {
		ack(t, d, m)
	}
	for s := range shards {
		requireBacklog(t, d, driver.ShardTopic(ns, driver.Written, s), 0)
	}
}
