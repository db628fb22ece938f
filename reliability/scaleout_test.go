package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
	"github.com/raceflow/raceflow/internal/pgtest"
)

// TestTwoInstancesShareShardsAndSurviveAKill runs two `raceflow run`
// instances on one database (and, on nats, one NATS JetStream namespace)
// while polls of 8 races stream in. It checks that both instances do the
// work and that results reach both, kills one with SIGKILL mid-flow while
// polls keep coming, requests polls of races on every shard after the kill,
// and then checks over (race, poll) that every poll was written exactly
// once, the ones requested after the kill by the survivor alone, whose
// results the survivor received.
func TestTwoInstancesShareShardsAndSurviveAKill(t *testing.T) {
	for _, backend := range []string{config.BackendPostgres, config.BackendNATS} {
		t.Run(backend, func(t *testing.T) { twoInstances(t, backend) })
	}
}

func twoInstances(t *testing.T, backend string) {
	rng := newRand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := pgtest.New(t)
	ecfg := envConfig{DSN: db.URL, Pool: db.Pool, APILatency: 20 * time.Millisecond}
	// What the victim may hold when it dies, per shard and stage: one
	// message of a strictly ordered topic; on postgres, several races at
	// once of the keyed ones (fetch; transform and write, one handler).
	held := map[string]int{handlers.StageFetch: shards, handlers.StageTransform: shards, handlers.StageWrite: shards}
	if backend == config.BackendNATS {
		natsURL := natstest.URL(t)
		ecfg.NATS = &natsEnv{URL: natsURL, Namespace: natstest.Namespace(t, natsURL)}
	} else {
		held[handlers.StageFetch] = config.DefaultFetchConcurrency
		held[handlers.StageTransform] = shards * config.DefaultWriteConcurrency
		held[handlers.StageWrite] = shards * config.DefaultWriteConcurrency
	}
	e := newEnv(t, ecfg)
	races := e.racesAcrossShards(8)

	// The first instance creates the streams (so polls can be published at
	// all); the second binds to the same durable consumers.
	a := e.start()
	startups := []time.Duration{e.waitReady(a, 60*time.Second)}
	b := e.startReplica()
	startups = append(startups, e.waitReady(b, 60*time.Second))

	stream := e.feed(races, 40*time.Millisecond, rng.Uint64())
	// Each message goes to whichever instance takes it first, so both soon
	// write; the bound is for failure.
	require.Eventually(t, func() bool {
		na, errA := writeCompletions(a)
		nb, errB := writeCompletions(b)
		return errA == nil && errB == nil && len(na) > 0 && len(nb) > 0
	}, time.Minute, 50*time.Millisecond, "both instances write polls")
	// Side by side a while longer, then a burst, so the kill lands with
	// work queued and in flight on several shards and stages.
	hold(ctx, between(rng, time.Second, 3*time.Second))
	bursts, burstAmbiguous := e.publish(20, races, rng)
	hold(ctx, between(rng, 50*time.Millisecond, 400*time.Millisecond))

	victim, survivor := a, b
	if rng.IntN(2) == 1 {
		victim, survivor = b, a
	}
	beforeKill := map[int][]completion{}
	for _, p := range []*proc{a, b} {
		done, err := writeCompletions(p)
		require.NoError(t, err)
		beforeKill[p.n] = done
	}
	inFlight, err := e.pending(ctx)
	require.NoError(t, err)
	var dbKilledAt time.Time
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&dbKilledAt))
	e.kill(victim)

	// Polls of every race, so of every shard: once right away, while the
	// victim's unacknowledged messages still block their consumers (one
	// message outstanding each), and once after the ack wait (5 s) has
	// handed them to the survivor. The stream keeps flowing throughout.
	var afterKill []requestedPoll
	requestAll := func() {
		for _, race := range races {
			id, err := e.requestPoll(race)
			if err != nil {
				burstAmbiguous = append(burstAmbiguous, id)
				continue
			}
			afterKill = append(afterKill, requestedPoll{race: race, id: id})
		}
	}
	requestAll()
	hold(ctx, between(rng, 6*time.Second, 8*time.Second))
	requestAll()
	hold(ctx, between(rng, 500*time.Millisecond, 2*time.Second))
	streamed, ambiguous := stream.stop()
	ambiguous = append(ambiguous, burstAmbiguous...)
	requested := append(streamed, bursts...)
	for _, r := range afterKill {
		requested = append(requested, r.id)
	}

	// After a SIGKILL the victim's messages come back after the ack wait;
	// the bound is for failure, not an asserted speed.
	drain := e.waitDrained(survivor, requested, 3*time.Minute)
	handOver, err := e.firstWrites(dbKilledAt)
	require.NoError(t, err)
	code, took := e.terminate(survivor, time.Minute)
	require.Zero(t, code, "the survivor stops cleanly on SIGTERM")

	c := e.check(requested, ambiguous)
	errorLines, messages := e.scanLogs()
	victimDone, err := writeCompletions(victim)
	require.NoError(t, err)
	survivorDone, err := writeCompletions(survivor)
	require.NoError(t, err)
	bySurvivor := map[string]bool{}
	for _, w := range survivorDone {
		bySurvivor[w.pollID] = true
	}
	redone, err := redoneByBoth(victim, survivor)
	require.NoError(t, err)
	afterKillShards := map[int]int{}
	var afterKillIDs []string
	var notBySurvivor []string
	for _, r := range afterKill {
		afterKillShards[driver.Shard(r.race, shards)]++
		afterKillIDs = append(afterKillIDs, r.id)
		if !bySurvivor[r.id] {
			notBySurvivor = append(notBySurvivor, r.id)
		}
	}
	afterKillWritten, err := e.written(ctx, afterKillIDs)
	require.NoError(t, err)
	var slowestHandOver time.Duration
	for _, at := range handOver {
		if !at.IsZero() {
			slowestHandOver = max(slowestHandOver, at.Sub(dbKilledAt))
		}
	}

	t.Logf("RESULT scale-out: instances=2 killed=1 %s", c)
	t.Logf("RESULT scale-out: write-stage completions before the kill run #%d=%d run #%d=%d; killed run #%d (%d writes in all), survivor run #%d wrote %d after the kill (%d in all); polls whose stage both instances completed (redone after the kill) %v",
		a.n, len(beforeKill[a.n]), b.n, len(beforeKill[b.n]), victim.n, len(victimDone), survivor.n,
		len(survivorDone)-len(beforeKill[survivor.n]), len(survivorDone), redone)
	t.Logf("RESULT scale-out: polls requested after the kill=%d over shards %v, written %d (by the survivor: %d); kill → first write on every shard %s (slowest shard); queued or unfinished messages at the kill=%d",
		len(afterKill), afterKillShards, afterKillWritten, len(afterKill)-len(notBySurvivor), slowestHandOver.Round(time.Millisecond), inFlight)
	t.Logf("RESULT scale-out: startup to /readyz 200 %s; final drain %s; survivor SIGTERM exit in %s", stats(startups), drain.Round(time.Millisecond), took.Round(time.Millisecond))
	t.Logf("RESULT scale-out: API fetches per poll %.3f; error log lines %d %v", float64(c.APIFetches)/float64(c.Processed), errorLines, messages)

	// 1. Work is shared.
	for _, p := range []*proc{a, b} {
		require.Positive(t, len(beforeKill[p.n]), "run #%d wrote polls before the kill: the instances share the work", p.n)
	}
	// 2. The kill loses and duplicates nothing.
	requireExactlyOnce(t, c)
	require.Zero(t, c.Poisoned, "a kill never sends a poll to the poison queue")
	requireNoRefetchStorm(t, c)
	// The victim held at most what a stage hands out at once, so at most
	// that many polls per stage are redone; more means messages were handed
	// over while an instance still worked on them.
	for stage, n := range redone {
		require.LessOrEqual(t, n, held[stage], "polls whose %s stage both instances completed", stage)
	}
	// 3. The survivor takes over every shard.
	require.Len(t, afterKillShards, shards, "the polls requested after the kill cover every shard")
	require.Equal(t, len(afterKill), afterKillWritten, "every poll requested after the kill is written")
	require.Empty(t, notBySurvivor, "the survivor wrote every poll requested after the kill")
	for s, at := range handOver {
		require.False(t, at.IsZero(), "shard %d was written after the kill", s)
	}
	// 4. Every result reaches every instance: the survivor received the
	// result of every poll written after it started, whoever wrote it.
	received, err := resultsReceived(survivor)
	require.NoError(t, err)
	var missed []string
	for _, id := range requested {
		if bySurvivor[id] || received[id] {
			continue
		}
		missed = append(missed, id)
	}
	require.Empty(t, missed, "results the survivor did not receive")
	victimReceived, err := resultsReceived(victim)
	require.NoError(t, err)
	fromOther := 0
	for _, w := range survivorDone {
		if victimReceived[w.pollID] {
			fromOther++
		}
	}
	require.Positive(t, fromOther, "the victim received results of polls the survivor wrote")
}

// resultsReceived reads the poll ids whose result p received (its "pipeline
// end" lines, logged for every result an instance receives).
func resultsReceived(p *proc) (map[string]bool, error) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); bytes.Contains(line, []byte(`"msg":"pipeline end`)) {
			out[jsonField(line, "poll_id")] = true
		}
	}
	return out, sc.Err()
}

// requestedPoll is a poll the test requested, with its race.
type requestedPoll struct {
	race, id string
}

// completion is a "stage complete" line of a subprocess's log.
type completion struct {
	pollID, raceID string
}

// writeCompletions reads the write-stage completions p has logged so far
// (flows' timing middleware logs "stage complete" once a stage's handler
// succeeded; at debug level, which the harness runs at).
func writeCompletions(p *proc) ([]completion, error) {
	return stageCompletions(p, handlers.StageWrite)
}

// redoneByBoth counts, by stage, the polls whose stage both a and b
// completed: the work of one redelivered to the other.
func redoneByBoth(a, b *proc) (map[string]int, error) {
	out := map[string]int{}
	for _, stage := range []string{handlers.StageFetch, handlers.StageTransform, handlers.StageWrite} {
		byA, err := stageCompletions(a, stage)
		if err != nil {
			return nil, err
		}
		byB, err := stageCompletions(b, stage)
		if err != nil {
			return nil, err
		}
		done := map[string]bool{}
		for _, c := range byA {
			done[c.pollID] = true
		}
		both := 0
		for _, c := range byB {
			if done[c.pollID] {
				both++
				delete(done, c.pollID) // once per poll
			}
		}
		out[stage] = both
	}
	return out, nil
}

func stageCompletions(p *proc, stage string) ([]completion, error) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []completion
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// logrus writes the fields in key order, so a line with its stage
		// has its poll_id and race_id whole, even when a kill cut it short.
		if !bytes.Contains(line, []byte(`"msg":"stage complete"`)) || jsonField(line, "stage") != stage {
			continue
		}
		out = append(out, completion{pollID: jsonField(line, "poll_id"), raceID: jsonField(line, "race_id")})
	}
	return out, sc.Err()
}
