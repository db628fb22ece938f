package flows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// timing records each stage's start, end and duration in the metadata of
// the messages it produces, so the timings travel with the poll, and logs
// the completion of each stage the handler ran. A handler that runs
// several stages (the write handler transforms first) marks them itself.
func (e *Engine) timing(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		stage := stageOfHandler(message.HandlerNameFromCtx(msg.Context()))
		if stage == "results" {
			return h(msg)
		}
		start := time.Now()
		out, err := h(msg)
		end := time.Now()
		for _, m := range out {
			if !handlers.Marked(m.Metadata, stage) {
				handlers.MarkStage(m.Metadata, stage, start, end)
			}
		}
		if err != nil {
			return out, err
		}
		var ran map[string]float64
		if len(out) > 0 {
			ran = handlers.StagesRun(msg.Metadata, out[0].Metadata)
		} else {
			ran = map[string]float64{stage: float64(end.Sub(start).Microseconds()) / 1000}
		}
		for _, st := range handlers.Stages() {
			if ms, ok := ran[st]; ok {
				e.log.WithFields(logrus.Fields{
					"race_id": msg.Metadata.Get(handlers.KeyRaceID), "poll_id": msg.Metadata.Get(handlers.KeyPollID),
					"stage": st, "duration_ms": ms,
				}).Debug("stage complete")
			}
		}
		return out, nil
	}
}

// outcome turns a handler's final error into a poll result: a Skip (race
// unknown, API unreachable) becomes a "skipped" result and the message is
// acknowledged; any other error becomes a "failed" result and goes on to
// the poison queue. A cancelled context, and a database stage's failure to
// reach the database, are neither: the message is redelivered.
func (e *Engine) outcome(h message.HandlerFunc) message.HandlerFunc {
	pub := e.drv.HandlerPublisher()
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		// Shutdown, the ack deadline, or a database that is down or
		// restarting once the retries are spent: none is the message's
		// fault, so it is handed out again (the delivery bound still
		// applies) rather than failed and poisoned.
		var again *redeliver
		if errors.As(err, &again) {
			return nil, err // a handler that publishes itself could not (legacyWrite)
		}
		if msg.Context().Err() != nil || errors.Is(err, context.Canceled) || handlers.DatabaseUnavailable(err) {
			return nil, &redeliver{err}
		}
		stage := stageOfHandler(message.HandlerNameFromCtx(msg.Context()))
		if stage == "results" {
			return out, err
		}
		// One handler runs the transform and the write: the error names
		// the stage that failed.
		stage = cmp.Or(handlers.StageOf(err), stage)
		info := &handlers.ErrorInfo{Stage: stage, Kind: handlers.ErrorKind(err), Message: err.Error(), Retryable: handlers.Retryable(err)}
		status := handlers.StatusFailed
		var skip *handlers.Skip
		if errors.As(err, &skip) {
			status, info.Kind, info.Retryable = handlers.StatusSkipped, skip.Kind, skip.Retryable
		}
		res, encErr := handlers.NewResultMessage(msg, status, "", handlers.RowCounts{}, info)
		if encErr != nil {
			return nil, errors.Join(err, encErr)
		}
		handlers.MarkStage(res.Metadata, stage, start, time.Now())
		res.UUID = derivedUUID(msg.UUID, "failure-result")
		res.Metadata.Set(keyProducer, e.instance)
		raceID := msg.Metadata.Get(handlers.KeyRaceID)
		if pubErr := pub.Publish(e.topic(driver.Processed, driver.Shard(raceID, e.cfg.Shards)), res); pubErr != nil {
			return nil, errors.Join(err, pubErr)
		}
		if status == handlers.StatusSkipped {
			return nil, nil
		}
		msg.Metadata.Set(handlers.KeyStage, stage)
		msg.Metadata.Set(handlers.KeyErrorKind, info.Kind)
		return nil, err
	}
}

// redeliver marks an error that must not poison the message: the message's
// context ended (shutdown, ack deadline), so it is nacked and delivered again.
type redeliver struct{ err error }

func (r *redeliver) Error() string { return "redeliver: " + r.err.Error() }
func (r *redeliver) Unwrap() error { return r.err }

// shouldPoison keeps shutdowns and deadlines out of the poison queue.
func shouldPoison(err error) bool {
	var r *redeliver
	return !errors.As(err, &r)
}

// bound ends the handing out of a message that was delivered more than
// MaxDeliveries times without an outcome: its handling never returned
// (a crash), or returned only to be redelivered (a lost connection, a
// deadline). It fails, without running the handler again, so that outcome
// gives the poll a failed result and the poison middleware keeps the
// message, with the reason of its last failure.
func (e *Engine) bound(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		n, last := e.drv.Delivery(msg)
		if n <= e.cfg.MaxDeliveries {
			return h(msg)
		}
		why := fmt.Sprintf("delivered %d times without an outcome", n-1)
		if last != "" {
			why += "; last error: " + last
		}
		stage := stageOfHandler(message.HandlerNameFromCtx(msg.Context()))
		return nil, &handlers.StageError{Stage: stage, RaceID: msg.Metadata.Get(handlers.KeyRaceID),
			PollID: msg.Metadata.Get(handlers.KeyPollID), Kind: KindRedelivered, Err: errors.New(why)}
	}
}

// KindRedelivered is the error kind of a message poisoned for being
// delivered too often.
const KindRedelivered = "redelivered"
