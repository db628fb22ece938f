package replay

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/write"
)

// judge runs the detect stage's judgement (handlers.DetectPoll) on each
// written poll, in order, inside the transaction that wrote them: each is
// judged with the history up to itself, as the live flow judged it.
func (r *Replayer) judge(ctx context.Context, tx pgx.Tx, polls []write.Poll) ([]detect.Result, error) {
	out := make([]detect.Result, len(polls))
	for i, p := range polls {
		if !detect.Judged(r.cfg.Alerts, p.Snapshot) {
			continue // fires nothing: spare the round trip
		}
		res, err := handlers.DetectPoll(ctx, tx, r.cfg.Alerts, p.Snapshot.RaceID, p.PollID, p.Snapshot.ObservedAt)
		if err != nil {
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}

// notify publishes, with Config.Notify, the alerts the committed polls
// stored to the flow's alerts topic. Their message ids derive from the
// alerts', so a backend that drops repeated ids drops a republished alert.
// A failure stops the run: the alerts are stored, and a later run with
// --notify over the same polls publishes them again.
func (r *Replayer) notify(ctx context.Context, st *runState, polls []write.Poll, judged []detect.Result) error {
	if !r.cfg.Notify {
		return nil
	}
	n := 0
	for i, res := range judged {
		if len(res.Fired) == 0 {
			continue
		}
		p := polls[i]
		poll := message.NewMessage(p.PollID, nil)
		poll.Metadata.Set(handlers.KeyRaceID, p.Snapshot.RaceID)
		poll.Metadata.Set(handlers.KeyPollID, p.PollID)
		msgs, err := handlers.AlertMessages(poll, res.Fired)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			m.SetContext(ctx)
		}
		if err := r.deps.Driver.Publisher().Publish(driver.AlertsTopic(r.deps.Driver.Namespace()).String(), msgs...); err != nil {
			return fmt.Errorf("replay: publish the alerts of poll %s: %w", p.PollID, err)
		}
		n += len(msgs)
	}
	st.notified(n)
	return nil
}
