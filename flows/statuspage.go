package flows

import (
	"context"
	"errors"
	"fmt"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/status"
)

// The status page reads the flow through the read model's small interfaces
// (status.Schedule, Queues, Poison, APIStats); the adapters below map the
// service's own parts to them.

// newStatusModel builds the read model of s: its recorder sees every result.
func (s *Service) newStatusModel() (*status.Model, error) {
	now := s.deps.Clock.Now
	rcfg := status.DefaultRecorderConfig()
	rcfg.Now = now
	rec, err := status.NewRecorder(rcfg)
	if err != nil {
		return nil, err
	}
	s.engine.OnResult(rec.Observe)
	mcfg := status.DefaultConfig()
	mcfg.Now = now
	return status.New(mcfg, status.Deps{
		DB:       s.deps.Pool,
		Recorder: rec,
		Schedule: scheduleState{s.scheduler},
		Queues:   queueState{s.queues},
		Poison:   poisonState{s.engine.Driver().Poison()},
		API:      s.metrics,
		Pool:     s.deps.Pool,
		Leader:   s.leader,
	})
}

// Status is the read model of the status page.
func (s *Service) Status() *status.Model { return s.status }

// scheduleState adapts the scheduler.
type scheduleState struct{ s *schedule.Scheduler }

func (a scheduleState) Tracked(ctx context.Context) ([]status.TrackedRace, error) {
	list, err := a.s.Tracked(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]status.TrackedRace, len(list))
	for i, tr := range list {
		out[i] = status.TrackedRace{RaceID: tr.ID, Status: tr.Status, Start: tr.Start, Cadence: tr.Cadence,
			Polls: tr.Polls, LastRequest: tr.LastRequest, NextPoll: tr.NextPoll, InFlight: tr.InFlight, Lost: tr.Lost}
	}
	return out, nil
}

// queueState adapts the queue statistics, read through the collector's
// cache so the page and /metrics share one reading.
type queueState struct{ c *QueueCollector }

func (a queueState) QueueStats(ctx context.Context) ([]status.QueueStat, error) {
	stats, err := a.c.Stats(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]status.QueueStat, 0, len(stats))
	for _, st := range stats {
		if st.Topic.Kind == driver.Poison {
			continue
		}
		out = append(out, status.QueueStat{Kind: string(st.Topic.Kind), Shard: st.Topic.Shard, Backlog: st.Backlog,
			OldestAge: st.OldestAge})
	}
	return out, nil
}

// poisonState adapts the driver's poison queue.
type poisonState struct{ q driver.PoisonQueue }

func (a poisonState) PoisonStats(ctx context.Context) (status.PoisonStats, error) {
	sum, err := a.q.Summary(ctx)
	if err != nil {
		return status.PoisonStats{}, err
	}
	return status.PoisonStats{Count: sum.Count, Oldest: sum.Oldest, ByRace: sum.ByRace}, nil
}

func (a poisonState) RecentPoison(ctx context.Context, n int) ([]status.PoisonEntry, error) {
	msgs, err := a.q.List(ctx, driver.PoisonFilter{Limit: n})
	if err != nil {
		return nil, err
	}
	out := make([]status.PoisonEntry, len(msgs))
	for i, m := range msgs {
		out[i] = poisonEntry(m)
	}
	return out, nil
}

func (a poisonState) PoisonMessage(ctx context.Context, id int64) (status.PoisonEntry, error) {
	m, err := a.q.Get(ctx, id)
	if errors.Is(err, driver.ErrPoisonNotFound) {
		return status.PoisonEntry{}, fmt.Errorf("%w: %w", status.ErrPoisonNotFound, err)
	}
	if err != nil {
		return status.PoisonEntry{}, err
	}
	e := poisonEntry(m)
	body, err := m.DecodedPayload()
	if err != nil {
		body = []byte("(the payload could not be decoded: " + err.Error() + ")")
	}
	e.Payload = string(body)
	return e, nil
}

func poisonEntry(m driver.PoisonMessage) status.PoisonEntry {
	return status.PoisonEntry{ID: m.ID, PoisonedAt: m.CreatedAt, RaceID: m.RaceID, PollID: m.PollID, Stage: m.Stage,
		Kind: m.Kind, Reason: m.Reason, Topic: m.Topic, Requeued: m.Requeued, Metadata: m.Metadata}
}
