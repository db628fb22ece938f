package flows

import (
	"context"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// addLegacyHandlers adds, before the router runs, a write handler for every
// topic of a kind this release no longer publishes to (driver.LegacyKinds)
// that still holds messages. An installation upgraded in the middle of a
// race day has polls there that an earlier release transformed and did not
// write yet; each such message carries the stored body, which the write
// handler transforms again. A topic found empty gets no handler: once
// drained, the next start subscribes to nothing of it.
func (e *Engine) addLegacyHandlers(ctx context.Context) error {
	stats, err := e.drv.QueueStats(ctx)
	if err != nil {
		// Not worth refusing to run for: the messages stay where they
		// are, and the next start looks again.
		e.log.WithError(err).Warn("cannot look for polls an earlier release left between its transform and write stages")
		return nil
	}
	for _, st := range stats {
		if st.Backlog == 0 || !slices.Contains(driver.LegacyKinds(), st.Topic.Kind) {
			continue
		}
		sub, err := e.drv.Subscriber(st.Topic.Kind, 1)
		if err != nil {
			return fmt.Errorf("flows: %s subscriber: %w", st.Topic.Kind, err)
		}
		e.log.WithField("topic", st.Topic.String()).WithField("backlog", st.Backlog).
			Info("writing the polls an earlier release left between its transform and write stages")
		name := handlerName(handlers.StageWrite, st.Topic.Shard) + "." + string(st.Topic.Kind)
		e.router.AddConsumerHandler(name, st.Topic.String(), drainingSubscriber{sub, e}, e.legacyWrite())
	}
	return nil
}

// legacyWrite writes a message of a legacy topic and publishes the result to
// the written topic of its race's shard now (the shard count may have
// changed since it was published), in the hand-off's transaction as the
// router's handlers do (publishOutputs). A failed publish is redelivered,
// not poisoned (outcome).
func (e *Engine) legacyWrite() message.NoPublishHandlerFunc {
	write := handlers.Write(e.drv.BeginWrite, nil, nil, nil)
	return func(msg *message.Message) error {
		out, err := write(msg)
		if err != nil {
			return err
		}
		topic := e.topic(driver.Written, driver.Shard(msg.Metadata.Get(handlers.KeyRaceID), e.cfg.Shards))
		return e.publishDerived(msg, topic, out)
	}
}
