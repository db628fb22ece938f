package flows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
)

// TestNATSRestartIsReportedAndTheFlowResumes stops the NATS server under a
// running flow and starts it again: while it is down the flow reports it
// (publishing fails with an error, nothing hangs), and once it is back
// every stage and the results resume on their own, with the polls
// processed before the restart kept and none duplicated.
func TestNATSRestartIsReportedAndTheFlowResumes(t *testing.T) {
	t.Parallel()
	srv := natstest.Private(t)
	h := newHarness(t)
	cfg := flows.DefaultConfig()
	cfg.Backend, cfg.NATS.URL, cfg.Namespace = config.BackendNATS, srv.URL, "restart"
	e, _ := h.start(t, cfg)
	ids := h.horseRaces(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	before, err := e.ProcessRaces(ctx, ids, len(ids))
	require.NoError(t, err)
	require.NoError(t, srv.Stop())

	down, downCancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = e.ProcessRace(down, ids[0])
	downCancel()
	require.Error(t, err, "no poll completes while NATS is down")

	require.NoError(t, srv.Start())
	var after []handlers.ProcessResult
	require.Eventually(t, func() bool {
		try, tryCancel := context.WithTimeout(ctx, 10*time.Second)
		defer tryCancel()
		after, err = e.ProcessRaces(try, ids, len(ids))
		return err == nil
	}, 2*time.Minute, 100*time.Millisecond, "polls complete again once NATS is back: %v", err)
	for _, r := range append(before, after...) {
		require.Equal(t, handlers.StatusSuccess, r.Status)
	}
	var polls []string
	for _, r := range append(before, after...) {
		polls = append(polls, r.PollID)
	}
	require.Equal(t, len(polls), h.count(t, `SELECT count(*) FROM race_polls WHERE poll_id = ANY($1)`, polls), "each poll written once")
}
