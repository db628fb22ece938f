package replay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// pollKey orders a race's stored polls: by observation instant, then by
// where they are stored, which is a total order however shards changed.
type pollKey struct {
	at     time.Time
	topic  string
	offset int64
}

func (k pollKey) compare(o pollKey) int {
	return cmp.Or(k.at.Compare(o.at), strings.Compare(k.topic, o.topic), cmp.Compare(k.offset, o.offset))
}

// storedPoll is one stored fetch as the plan sees it (metadata only).
type storedPoll struct {
	key    pollKey
	topic  driver.Topic
	raceID string
	pollID string
	// bad explains metadata that makes the poll unreplayable.
	bad string
}

type raceWork struct {
	raceID string
	polls  []storedPoll
}

// plan reads the metadata of the stored polls (not their payloads), applies
// the filter and the run's progress, and returns the races to replay, each
// with its polls in replay order, earliest race first.
func (r *Replayer) plan(ctx context.Context, sum *Summary, topics []driver.Topic, filter Filter) ([]*raceWork, error) {
	byRace := map[string][]storedPoll{}
	for _, topic := range topics {
		name := topic.String()
		err := r.stored.Scan(ctx, topic, filter.RaceIDs, func(sp driver.StoredPoll) {
			p := storedPoll{key: pollKey{topic: name, offset: sp.Offset}, topic: topic, raceID: sp.RaceID, pollID: sp.PollID}
			if sp.RaceID == "" {
				sum.Failures = append(sum.Failures, Failure{Topic: name, Offset: sp.Offset, PollID: sp.PollID,
					Stage: handlers.StageTransform, Kind: "metadata", Reason: "stored poll has no race_id"})
				return
			}
			at, err := time.Parse(time.RFC3339Nano, sp.ObservedAt)
			if err != nil {
				// Unorderable: replayed first, where it is reported and skipped.
				p.bad = fmt.Sprintf("missing or bad %s %q", handlers.KeyObservedAt, sp.ObservedAt)
			} else if !filter.inRange(at) {
				return
			}
			// The progress row keeps the instant in PostgreSQL's microseconds
			// (pgx truncates); keys carry the same precision so a stored key
			// compares equal to the poll it came from.
			p.key.at = at.Truncate(time.Microsecond)
			byRace[sp.RaceID] = append(byRace[sp.RaceID], p)
		})
		if err != nil {
			return nil, fmt.Errorf("replay: read %s: %w", topic, err)
		}
	}
	if filter.MeetingID != "" {
		if err := r.keepMeeting(ctx, byRace, filter.MeetingID); err != nil {
			return nil, err
		}
	}
	done, err := r.progressOf(ctx)
	if err != nil {
		return nil, err
	}
	var work []*raceWork
	for raceID, polls := range byRace {
		slices.SortFunc(polls, func(a, b storedPoll) int { return a.key.compare(b.key) })
		sum.Stored += len(polls)
		if last, ok := done[raceID]; ok {
			i := 0
			for i < len(polls) && polls[i].key.compare(last) <= 0 {
				i++
			}
			sum.AlreadyDone += i
			polls = polls[i:]
		}
		if len(polls) > 0 {
			work = append(work, &raceWork{raceID: raceID, polls: polls})
		}
	}
	slices.SortFunc(work, func(a, b *raceWork) int {
		return cmp.Or(a.polls[0].key.compare(b.polls[0].key), strings.Compare(a.raceID, b.raceID))
	})
	sum.Races = len(work)
	return work, nil
}

// keepMeeting drops the races of other meetings.
func (r *Replayer) keepMeeting(ctx context.Context, byRace map[string][]storedPoll, meetingID string) error {
	ids := make([]string, 0, len(byRace))
	for id := range byRace {
		ids = append(ids, id)
	}
	rows, err := r.deps.Pool.Query(ctx, `SELECT race_id, meeting_id FROM races WHERE race_id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("replay: races of meeting %s: %w", meetingID, err)
	}
	known := map[string]string{}
	var raceID, mID string
	if _, err := pgx.ForEachRow(rows, []any{&raceID, &mID}, func() error {
		known[raceID] = mID
		return nil
	}); err != nil {
		return fmt.Errorf("replay: races of meeting %s: %w", meetingID, err)
	}
	for id, polls := range byRace {
		m, ok := known[id]
		if !ok {
			if m, err = r.probeMeeting(ctx, polls); err != nil {
				return err
			}
		}
		if m != meetingID {
			delete(byRace, id)
		}
	}
	return nil
}

// probeMeeting reads the meeting of a race the database does not know from
// its earliest stored poll that transforms.
func (r *Replayer) probeMeeting(ctx context.Context, polls []storedPoll) (string, error) {
	polls = slices.Clone(polls)
	slices.SortFunc(polls, func(a, b storedPoll) int { return a.key.compare(b.key) })
	for _, p := range polls {
		if p.bad != "" {
			continue
		}
		got, err := r.load(ctx, []storedPoll{p})
		if err != nil {
			return "", err
		}
		row, ok := got[p.key.store()]
		if !ok || row.err != nil {
			continue
		}
		if snap, err := handlers.SnapshotFromFetched(row.msg); err == nil {
			return snap.Race.MeetingID, nil
		}
	}
	return "", nil
}

// ensurePartitions creates the history partitions of the replayed days, in
// their own transactions before any data transaction.
func (r *Replayer) ensurePartitions(ctx context.Context, work []*raceWork) error {
	var first, last time.Time
	for _, w := range work {
		for _, p := range w.polls {
			if p.key.at.IsZero() {
				continue
			}
			if first.IsZero() || p.key.at.Before(first) {
				first = p.key.at
			}
			if p.key.at.After(last) {
				last = p.key.at
			}
		}
	}
	if first.IsZero() {
		return nil
	}
	if err := r.parts.EnsureRange(ctx, first, last); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// stored is a stored fetch as loaded for replay, or why it cannot be read.
type stored struct {
	msg *message.Message
	err error
}

// storeKey is where a poll is stored.
type storeKey struct {
	topic  string
	offset int64
}

func (k pollKey) store() storeKey { return storeKey{k.topic, k.offset} }

// load reads the payloads of polls, one read per topic.
func (r *Replayer) load(ctx context.Context, polls []storedPoll) (map[storeKey]stored, error) {
	byTopic := map[driver.Topic][]int64{}
	for _, p := range polls {
		if p.bad == "" {
			byTopic[p.topic] = append(byTopic[p.topic], p.key.offset)
		}
	}
	out := make(map[storeKey]stored, len(polls))
	for topic, offsets := range byTopic {
		name := topic.String()
		if err := r.stored.Load(ctx, topic, offsets, func(offset int64, msg *message.Message, err error) {
			if msg != nil {
				msg.Metadata.Set(handlers.KeyReplay, "true")
			}
			out[storeKey{name, offset}] = stored{msg: msg, err: err}
		}); err != nil {
			return nil, fmt.Errorf("replay: load %s: %w", topic, err)
		}
	}
	return out, nil
}
