package flows_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// startObserved runs a flow whose results go to fn from the first message
// on (OnResult after Run could miss a message already queued).
func startObserved(t *testing.T, h *harness, cfg flows.Config, fn func(handlers.ProcessResult)) *flows.Engine {
	t.Helper()
	e, err := flows.New(cfg, flows.Deps{Pool: h.db.Pool, Fetcher: h.client, Logger: h.log})
	require.NoError(t, err)
	e.OnResult(fn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Running():
	case err := <-done:
		t.Fatalf("flow stopped before running: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			require.NoError(t, ignoreCanceled(<-done))
		})
	})
	return e
}

func TestPoisonedPollIsRequeuedAfterTheFixAndSucceedsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cfg := cfgFor(t, config.BackendPostgres)
	e1, stop1 := h.start(t, cfg)
	bad := h.horseRaces(t, 1)[0]
	require.NoError(t, h.sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed, err := e1.ProcessRace(ctx, bad)
	var fe *handlers.FetchError
	require.ErrorAs(t, err, &fe)
	// Wait until e1 has marked this failed result read (results stay for
	// every instance to read; e2 reads only results published after it
	// starts).
	processed := fmt.Sprintf(`SELECT count(*) FROM "watermill_race.processed.%d" WHERE NOT acked`, driver.Shard(bad, cfg.Shards))
	require.Eventually(t, func() bool { return h.count(t, processed) == 0 }, time.Minute, 10*time.Millisecond)
	stop1() // so the requeued message can be seen as published

	store := pgPoison(t, h.db.Pool, "")
	list, err := store.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	p := list[0]
	pollTopic := fmt.Sprintf("race.poll.%d", driver.Shard(bad, cfg.Shards))
	require.Equal(t, bad, p.RaceID)
	require.Equal(t, failed.PollID, p.PollID)
	require.Equal(t, handlers.StageFetch, p.Stage)
	require.Equal(t, "malformed_json", p.Kind)
	require.Equal(t, pollTopic, p.Topic)
	require.Contains(t, p.Reason, "malformed")
	require.Zero(t, p.Requeued)

	shown, err := store.Get(ctx, p.ID)
	require.NoError(t, err)
	decoded, err := shown.DecodedPayload()
	require.NoError(t, err)
	var req handlers.PollRequest
	require.NoError(t, json.Unmarshal(decoded, &req), "the poll request, as JSON")
	require.Equal(t, bad, req.RaceID)
	require.Contains(t, string(decoded), "\n  \"race_id\"", "indented for reading")

	h.sim.ClearRaceFault(bad)
	n, err := store.Requeue(ctx, driver.PoisonSelector{IDs: []int64{p.ID}})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	list, err = store.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Empty(t, list, "the requeued message left the poison queue")

	// Back on the topic it failed on, as it was published, counted.
	var payload []byte
	var md map[string]string
	require.NoError(t, h.db.Pool.QueryRow(ctx, `SELECT payload, metadata FROM "watermill_`+pollTopic+`" WHERE NOT acked`).Scan(&payload, &md))
	require.Equal(t, shown.Payload, payload)
	require.Equal(t, "1", md[driver.KeyRequeued])
	for k, v := range shown.Metadata {
		switch k {
		case "reason_poisoned", "topic_poisoned", "handler_poisoned", "subscriber_poisoned", handlers.KeyStage, handlers.KeyErrorKind:
			require.NotContains(t, md, k)
		default:
			require.Equal(t, v, md[k], k)
		}
	}

	results := make(chan handlers.ProcessResult, 8)
	startObserved(t, h, cfg, func(r handlers.ProcessResult) { results <- r })
	requireRequeuedPollCompletes(ctx, t, results, failed.PollID)
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE race_id = $1 AND poll_id = $2`, bad, failed.PollID))
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM races WHERE race_id = $1`, bad))
	require.Zero(t, h.count(t, `SELECT count(*) FROM "watermill_`+pollTopic+`"`), "consumed")
	list, err = store.List(ctx, driver.PoisonFilter{RaceID: bad})
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = store.Requeue(ctx, driver.PoisonSelector{IDs: []int64{p.ID}})
	require.ErrorIs(t, err, driver.ErrPoisonNotFound, "requeued once only")
}

// poisonFixture publishes messages to a namespace's poison topic the way
// the flow does and returns their ids, oldest first.
func poisonFixture(t *testing.T, db *pgtest.DB, ns string, msgs ...*message.Message) []int64 {
	t.Helper()
	schema := wsql.PostgreSQLQueueSchema{GeneratePayloadType: func(string) string { return "BYTEA" }}
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(db.Pool), wsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, watermill.NopLogger{})
	require.NoError(t, err)
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		require.NoError(t, pub.Publish(ns+".poison", m))
		require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT "offset" FROM "watermill_`+ns+`.poison" WHERE uuid = $1`, m.UUID).Scan(&ids[i]))
	}
	// The topics messages are requeued to exist once the flow has run.
	for _, topic := range []string{ns + ".poll.1", ns + ".fetched.2"} {
		require.NoError(t, pub.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))
		_, err := db.Pool.Exec(context.Background(), `DELETE FROM "watermill_`+topic+`"`)
		require.NoError(t, err)
	}
	return ids
}

func poisoned(raceID, stage, kind, topic string, payload []byte, extra map[string]string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), payload)
	m.Metadata.Set(handlers.KeyRaceID, raceID)
	m.Metadata.Set(handlers.KeyPollID, raceID+"@1")
	m.Metadata.Set(handlers.KeyStage, stage)
	m.Metadata.Set(handlers.KeyErrorKind, kind)
	m.Metadata.Set("reason_poisoned", stage+" failed: "+kind)
	m.Metadata.Set("topic_poisoned", topic)
	m.Metadata.Set("handler_poisoned", stage+".0")
	for k, v := range extra {
		m.Metadata.Set(k, v)
	}
	return m
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestPoisonStoreListsShowsRequeuesAndPurges(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const ns = "ops"
	store := pgPoison(t, db.Pool, ns)

	empty, err := store.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err, "a flow that never ran has an empty poison queue")
	require.Empty(t, empty)
	_, err = store.Requeue(ctx, driver.PoisonSelector{IDs: []int64{1}})
	require.ErrorIs(t, err, driver.ErrPoisonNotFound)
	_, err = store.Requeue(ctx, driver.PoisonSelector{})
	require.Error(t, err, "requeue needs a selection")

	fetched := gzipped(t, []byte(`{"data":{"race":{"event_id":"B"}}}`))
	ids := poisonFixture(t, db,
		ns,
		poisoned("A", "fetch", "malformed_json", ns+".poll.1", []byte(`{"race_id":"A"}`), nil),
		poisoned("B", "transform", "decode", ns+".fetched.2", fetched, map[string]string{handlers.KeyEncoding: "gzip", driver.KeyRequeued: "1"}),
		poisoned("A", "write", "database", "elsewhere.transformed.0", []byte(`{}`), nil),
	)
	_, err = db.Pool.Exec(ctx, `UPDATE "watermill_ops.poison" SET created_at = now() - interval '3 hours' WHERE "offset" = $1`, ids[0])
	require.NoError(t, err)

	list := func(f driver.PoisonFilter) []int64 {
		t.Helper()
		msgs, err := store.List(ctx, f)
		require.NoError(t, err)
		out := []int64{}
		for _, m := range msgs {
			out = append(out, m.ID)
		}
		return out
	}
	tests := []struct {
		name   string
		filter driver.PoisonFilter
		want   []int64
	}{
		{"all, newest first", driver.PoisonFilter{}, []int64{ids[2], ids[1], ids[0]}},
		{"one race", driver.PoisonFilter{RaceID: "A"}, []int64{ids[2], ids[0]}},
		{"one stage", driver.PoisonFilter{Stage: "transform"}, []int64{ids[1]}},
		{"recent", driver.PoisonFilter{Since: time.Now().Add(-time.Hour)}, []int64{ids[2], ids[1]}},
		{"limited", driver.PoisonFilter{Limit: 1}, []int64{ids[2]}},
		{"race and stage", driver.PoisonFilter{RaceID: "A", Stage: "transform"}, []int64{}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, list(tt.filter), tt.name)
	}

	m, err := store.Get(ctx, ids[1])
	require.NoError(t, err)
	require.Equal(t, "B", m.RaceID)
	require.Equal(t, "decode", m.Kind)
	require.Equal(t, 1, m.Requeued)
	decoded, err := m.DecodedPayload()
	require.NoError(t, err)
	require.Equal(t, "{\n  \"data\": {\n    \"race\": {\n      \"event_id\": \"B\"\n    }\n  }\n}", string(decoded), "gunzipped and indented")
	_, err = store.Get(ctx, 999999)
	require.ErrorIs(t, err, driver.ErrPoisonNotFound)

	// Nothing is requeued unless everything asked for can be.
	_, err = store.Requeue(ctx, driver.PoisonSelector{IDs: []int64{ids[0], 999999}})
	require.ErrorIs(t, err, driver.ErrPoisonNotFound)
	_, err = store.Requeue(ctx, driver.PoisonSelector{IDs: []int64{ids[0], ids[2]}})
	require.ErrorIs(t, err, driver.ErrBadRequeueTopic)
	require.Len(t, list(driver.PoisonFilter{}), 3)

	n, err := store.Requeue(ctx, driver.PoisonSelector{RaceID: "B"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	var payload []byte
	var md map[string]string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT payload, metadata FROM "watermill_ops.fetched.2"`).Scan(&payload, &md))
	require.Equal(t, fetched, payload, "the stored bytes, still compressed")
	require.Equal(t, "2", md[driver.KeyRequeued], "counted again")
	require.Equal(t, "gzip", md[handlers.KeyEncoding])
	require.NotContains(t, md, "reason_poisoned")
	require.Equal(t, []int64{ids[2], ids[0]}, list(driver.PoisonFilter{}))

	purged, err := store.Purge(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, purged, "only the message poisoned 3 hours ago")
	require.Equal(t, []int64{ids[2]}, list(driver.PoisonFilter{}))
	_, err = store.Requeue(ctx, driver.PoisonSelector{All: true})
	require.True(t, errors.Is(err, driver.ErrBadRequeueTopic), "a foreign topic is never published to: %v", err)
	purged, err = store.Purge(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 1, purged)
	n, err = store.Requeue(ctx, driver.PoisonSelector{All: true})
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestNATSPoisonedPollIsRequeuedAndPurged is the poison round trip on the
// nats backend: the poison stream lists and shows the failed poll, a
// requeue after the fix completes it once while the flow runs, and purge
// removes what was poisoned before a cutoff.
func TestNATSPoisonedPollIsRequeuedAndPurged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cfg := cfgFor(t, config.BackendNATS)
	e, _ := h.start(t, cfg)
	ids := h.horseRaces(t, 2)
	bad, other := ids[0], ids[1]
	require.NoError(t, h.sim.SetRaceFault(bad, nztabsim.FaultMalformed))
	require.NoError(t, h.sim.SetRaceFault(other, nztabsim.FaultMalformed))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed, err := e.ProcessRace(ctx, bad)
	var fe *handlers.FetchError
	require.ErrorAs(t, err, &fe)

	store := openDriver(t, cfg, h.db.Pool).Poison()
	list, _ := waitPoisoned(t, cfg, h.db.Pool, driver.PoisonFilter{}, 1)
	require.Len(t, list, 1)
	p := list[0]
	require.Equal(t, bad, p.RaceID)
	require.Equal(t, failed.PollID, p.PollID)
	require.Equal(t, handlers.StageFetch, p.Stage)
	require.Equal(t, "malformed_json", p.Kind)
	require.Equal(t, fmt.Sprintf("%s.poll.%d", cfg.Namespace, driver.Shard(bad, cfg.Shards)), p.Topic)
	shown, err := store.Get(ctx, p.ID)
	require.NoError(t, err)
	decoded, err := shown.DecodedPayload()
	require.NoError(t, err)
	var req handlers.PollRequest
	require.NoError(t, json.Unmarshal(decoded, &req))
	require.Equal(t, bad, req.RaceID)

	results := make(chan handlers.ProcessResult, 8)
	e.OnResult(func(r handlers.ProcessResult) {
		if r.RaceID == bad {
			results <- r
		}
	})
	h.sim.ClearRaceFault(bad)
	n, err := store.Requeue(ctx, driver.PoisonSelector{RaceID: bad})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	requireRequeuedPollCompletes(ctx, t, results, failed.PollID)
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE race_id = $1 AND poll_id = $2`, bad, failed.PollID))
	_, err = store.Get(ctx, p.ID)
	require.ErrorIs(t, err, driver.ErrPoisonNotFound, "requeued messages leave the poison stream")

	_, err = e.ProcessRace(ctx, other)
	require.ErrorAs(t, err, &fe)
	list, _ = waitPoisoned(t, cfg, h.db.Pool, driver.PoisonFilter{}, 1)
	require.Len(t, list, 1)
	purged, err := store.Purge(ctx, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 1, purged)
	list, err = store.List(ctx, driver.PoisonFilter{})
	require.NoError(t, err)
	require.Empty(t, list)
}

// requireRequeuedPollCompletes waits for the result of the requeued poll.
func requireRequeuedPollCompletes(ctx context.Context, t *testing.T, results <-chan handlers.ProcessResult, pollID string) {
	t.Helper()
	select {
	case r := <-results:
		require.Equal(t, handlers.StatusSuccess, r.Status, "%+v", r.Error)
		require.Equal(t, pollID, r.PollID, "the same poll, completed")
	case <-ctx.Done():
		t.Fatal("the requeued poll produced no result")
	}
}
