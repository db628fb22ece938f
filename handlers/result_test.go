package handlers_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
)

func TestResultTimingsAddUpStageAndQueueTime(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	poll, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1", PollID: "p1", RequestedAt: at(0)}, false)
	require.NoError(t, err)
	// fetch waits 5 ms in the queue and runs 40 ms; transform waits 3, runs 2;
	// write waits 7, runs 13: queue 15 ms, total 70 ms.
	handlers.MarkStage(poll.Metadata, handlers.StageFetch, at(5), at(45))
	handlers.MarkStage(poll.Metadata, handlers.StageTransform, at(48), at(50))
	handlers.MarkStage(poll.Metadata, handlers.StageWrite, at(57), at(70))
	res, err := handlers.NewResultMessage(poll, handlers.StatusSuccess, "open", handlers.RowCounts{MoneyFlow: 8, Odds: 32}, nil)
	require.NoError(t, err)

	got, err := handlers.DecodeResult(res, at(500))
	require.NoError(t, err)
	require.Equal(t, "r1", got.RaceID)
	require.Equal(t, "p1", got.PollID)
	require.Equal(t, handlers.StatusSuccess, got.Status)
	require.Equal(t, "open", got.RaceStatus)
	require.Equal(t, 8, got.Rows.MoneyFlow)
	require.InDelta(t, 40, got.Timings.FetchMS, 1e-9)
	require.InDelta(t, 2, got.Timings.TransformMS, 1e-9)
	require.InDelta(t, 13, got.Timings.WriteMS, 1e-9)
	require.InDelta(t, 70, got.Timings.TotalMS, 1e-9, "total runs from request to the last stage's end, not to decode time")
	require.InDelta(t, 15, got.Timings.QueueMS, 1e-9)
	require.NoError(t, got.Err())
	require.Equal(t, "p1", res.Metadata.Get(handlers.KeyCorrelationID), "every message of a poll carries its poll id as correlation id")
}

func TestFailedResultBecomesTypedError(t *testing.T) {
	t.Parallel()
	poll, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1", PollID: "p1", RequestedAt: time.Now()}, false)
	require.NoError(t, err)
	for _, tc := range []struct {
		stage string
		check func(error) bool
	}{
		{handlers.StageFetch, func(err error) bool { var e *handlers.FetchError; return errors.As(err, &e) }},
		{handlers.StageTransform, func(err error) bool { var e *handlers.TransformError; return errors.As(err, &e) }},
		{handlers.StageWrite, func(err error) bool { var e *handlers.WriteError; return errors.As(err, &e) }},
	} {
		msg, err := handlers.NewResultMessage(poll, handlers.StatusFailed, "", handlers.RowCounts{},
			&handlers.ErrorInfo{Stage: tc.stage, Kind: "boom", Message: "it broke", Retryable: true})
		require.NoError(t, err)
		res, err := handlers.DecodeResult(msg, time.Now())
		require.NoError(t, err)
		rerr := res.Err()
		require.True(t, tc.check(rerr), "stage %s gives its typed error, got %T", tc.stage, rerr)
		var se *handlers.StageError
		require.ErrorAs(t, rerr, &se)
		require.True(t, se.Retryable)
		require.Equal(t, tc.stage, se.Stage)
		require.Contains(t, rerr.Error(), "it broke")
	}
}

func TestPollMessageRejectsMissingIDs(t *testing.T) {
	t.Parallel()
	_, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1"}, false)
	require.Error(t, err)
}
