package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/replay"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/write"
)

// RequestPoll publishes a poll of raceID and returns its poll id.
func (e *Engine) RequestPoll(ctx context.Context, raceID, reason string) (string, error) {
	req := e.newPoll(raceID, reason)
	return req.PollID, e.publishPoll(ctx, req)
}

// newPoll is a poll request of raceID. Its id reads in the flow's clock (the
// scheduler's, simulated in the demo); its request instant, from which the
// poll's total and queue times are measured, is always the real clock, like
// every stage's timing, so latencies are real whatever clock the flow runs on.
func (e *Engine) newPoll(raceID, reason string) handlers.PollRequest {
	return handlers.PollRequest{RaceID: raceID, PollID: write.PollID(raceID, e.deps.Now()), RequestedAt: time.Now(), Reason: reason}
}

// publishPoll publishes req. A race id no API id can be is refused here,
// before it enters the flow: it could not be fetched, and a backend that
// carries metadata in protocol headers (nats) could not even carry it.
func (e *Engine) publishPoll(ctx context.Context, req handlers.PollRequest) error {
	if err := nztab.ValidateRaceID(req.RaceID); err != nil {
		return &handlers.FetchError{StageError: handlers.StageError{Stage: handlers.StageFetch, RaceID: fmt.Sprintf("%q", req.RaceID),
			PollID: req.PollID, Kind: handlers.KindValidation, Err: err}}
	}
	msg, err := handlers.NewPollMessage(req, false)
	if err != nil {
		return err
	}
	msg.SetContext(ctx)
	if err := e.pub.Publish(e.topic(driver.Poll, driver.Shard(req.RaceID, e.cfg.Shards)), msg); err != nil {
		return fmt.Errorf("flows: publish poll of %s: %w", req.RaceID, err)
	}
	e.log.WithFields(logrus.Fields{"race_id": req.RaceID, "poll_id": req.PollID, "reason": req.Reason}).Debug("pipeline start")
	return nil
}

// deliver consumes race.processed: logs the end of the pipeline and hands
// the result to waiters and observers.
func (e *Engine) deliver(msg *message.Message) error {
	res, err := handlers.DecodeResult(msg, time.Now())
	if err != nil {
		e.log.WithError(err).Error("undecodable result dropped")
		return nil // nothing to retry: the payload will never decode
	}
	fields := logrus.Fields{
		"race_id": res.RaceID, "poll_id": res.PollID, "status": res.Status,
		"fetch_ms": res.Timings.FetchMS, "transform_ms": res.Timings.TransformMS, "write_ms": res.Timings.WriteMS,
		"detect_ms": res.Timings.DetectMS, "queue_ms": res.Timings.QueueMS, "duration_ms": res.Timings.TotalMS,
		"rows_money_flow": res.Rows.MoneyFlow, "rows_odds": res.Rows.Odds, "rows_entrants": res.Rows.Entrants,
		"alerts": res.Rows.Alerts,
	}
	own := e.ownResult(msg)
	entry := e.log.WithFields(fields).WithField("produced_here", own)
	switch {
	case !own:
		// Where results reach every instance, the one that produced it says
		// so; the others note it.
		entry.Debug("pipeline end")
	case res.Error != nil:
		entry.WithField("stage", res.Error.Stage).WithField("error", res.Error.Message).Warn("pipeline end")
	case res.Timings.TotalMS >= float64(e.cfg.SlowPoll/time.Millisecond):
		entry.Warn("pipeline end: slow poll")
	default:
		entry.Info("pipeline end")
	}
	e.mu.Lock()
	ch := e.waiters[res.PollID]
	delete(e.waiters, res.PollID)
	obs := e.observers
	if own {
		obs = append(slices.Clip(obs), e.ownObservers...)
	}
	e.mu.Unlock()
	// Observers first: when ProcessRace returns, metrics and the scheduler
	// have already seen the result.
	for _, fn := range obs {
		fn(res)
	}
	if ch != nil {
		ch <- res // buffered
	}
	return nil
}

// ProcessRace polls one race now and waits for its result. A failed poll
// returns its result and the typed FetchError, TransformError or WriteError.
func (e *Engine) ProcessRace(ctx context.Context, raceID string) (handlers.ProcessResult, error) {
	req := e.newPoll(raceID, "process")
	ch := make(chan handlers.ProcessResult, 1)
	e.mu.Lock()
	e.waiters[req.PollID] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.waiters, req.PollID)
		e.mu.Unlock()
	}()
	if err := e.publishPoll(ctx, req); err != nil {
		res := handlers.ProcessResult{RaceID: raceID, PollID: req.PollID, Status: handlers.StatusFailed}
		var se *handlers.StageError
		if errors.As(err, &se) {
			res.Error = &handlers.ErrorInfo{Stage: se.Stage, Kind: se.Kind, Message: err.Error()}
		}
		return res, err
	}
	select {
	case res := <-ch:
		return res, res.Err()
	case <-ctx.Done():
		return handlers.ProcessResult{RaceID: raceID, PollID: req.PollID, Status: handlers.StatusFailed}, ctx.Err()
	}
}

// ProcessRaces processes races with at most concurrency in flight (a sliding
// window, not fixed chunks) and returns results in the order of ids. The
// error joins every failed race's typed error.
func (e *Engine) ProcessRaces(ctx context.Context, ids []string, concurrency int) ([]handlers.ProcessResult, error) {
	results := make([]handlers.ProcessResult, len(ids))
	errs := make([]error, len(ids))
	var g errgroup.Group
	g.SetLimit(max(concurrency, 1))
	for i, id := range ids {
		g.Go(func() error {
			if errs[i] = ctx.Err(); errs[i] == nil { // not started once ctx has ended
				results[i], errs[i] = e.ProcessRace(ctx, id)
			}
			return nil
		})
	}
	_ = g.Wait() // every race's outcome is in errs
	return results, errors.Join(errs...)
}

// Replay replays this engine's stored topic (replay.Replayer), in the
// engine's namespace, database and backend, alongside the running flow or
// instead of it; its polls are judged by the engine's alert rules.
func (e *Engine) Replay(ctx context.Context, cfg replay.Config, progress func(replay.Progress)) (replay.Summary, error) {
	cfg.Alerts = e.cfg.Alerts
	r, err := replay.New(cfg, replay.Deps{Pool: e.deps.Pool, Driver: e.drv, Logger: e.log, Progress: progress})
	if err != nil {
		return replay.Summary{}, err
	}
	return r.Run(ctx)
}
