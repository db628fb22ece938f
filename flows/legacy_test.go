package flows_test

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// An installation upgraded in the middle of a race day has polls in the
// transformed topics an earlier release published to between its transform
// and write stages. The engine writes them at its next start.
func TestPollsAnEarlierReleaseLeftBetweenTransformAndWriteAreWrittenAtStart(t *testing.T) {
	t.Parallel()
	onEach(t, durableBackends, func(t *testing.T, backend string) {
		h := newHarness(t)
		cfg := cfgFor(t, backend)
		raceID := h.horseRaces(t, 1)[0]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		// What an earlier release's transform handler published: the
		// fetched message, body and metadata unchanged.
		pollID := raceID + "@legacy"
		poll, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: raceID, PollID: pollID, RequestedAt: time.Now()}, false)
		require.NoError(t, err)
		poll.SetContext(ctx)
		out, err := handlers.Fetch(h.client, nil)(poll)
		require.NoError(t, err)
		require.Len(t, out, 1)
		legacy := driver.ShardTopic(cfg.Namespace, driver.Transformed, driver.Shard(raceID, cfg.Shards))
		drv := openDriver(t, cfg, h.db.Pool)
		require.NoError(t, drv.Init(ctx, []driver.Topic{legacy}))
		out[0].SetContext(ctx)
		require.NoError(t, drv.Publisher().Publish(legacy.String(), out[0]))

		e, err := flows.New(cfg, flows.Deps{Pool: h.db.Pool, Fetcher: h.client, Logger: h.log})
		require.NoError(t, err)
		results := make(chan handlers.ProcessResult, 16)
		e.OnResult(func(r handlers.ProcessResult) {
			if r.PollID == pollID {
				results <- r
			}
		})
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		defer func() {
			stop()
			require.NoError(t, ignoreCanceled(<-done))
		}()

		select {
		case res := <-results:
			require.Equal(t, handlers.StatusSuccess, res.Status, "%+v", res.Error)
			require.Positive(t, res.Timings.TransformMS, "the write handler transformed it")
			require.Positive(t, res.Timings.WriteMS)
			require.Positive(t, res.Timings.DetectMS, "and the detect stage judged it")
		case err := <-done:
			t.Fatalf("flow stopped: %v", err)
		case <-ctx.Done():
			var logged []string
			for _, entry := range h.hook.AllEntries() {
				if entry.Level <= logrus.InfoLevel {
					logged = append(logged, entry.Message)
				}
			}
			t.Fatalf("no result for the poll left in the legacy topic; the flow logged %q", logged)
		}
		require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE race_id = $1 AND poll_id = $2`, raceID, pollID))
		stats, err := drv.QueueStats(ctx)
		require.NoError(t, err)
		for _, st := range stats {
			if st.Topic == legacy {
				require.Zero(t, st.Backlog, "the legacy topic is drained")
			}
		}
	})
}
