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
	"github.com/raceflow/raceflow/stages/baseline"
)

// pollKey orders a race's stored polls: by observation instant, then by
// where they are stored, which is a total order however shards changed. A
// meetings list's key is its instant and listTopic.
type pollKey struct {
	at     time.Time
	topic  string
	offset int64
}

func (k pollKey) compare(o pollKey) int {
	return cmp.Or(k.at.Compare(o.at), strings.Compare(k.topic, o.topic), cmp.Compare(k.offset, o.offset))
}

// listTopic is where the stored meetings lists are kept (the table of
// stages/baseline's Store), as a list event's key names it.
const listTopic = "baseline_responses"

// storedPoll is one stored fetch as the plan sees it (metadata only).
type storedPoll struct {
	key    pollKey
	topic  driver.Topic
	raceID string
	pollID string
	// bad explains metadata that makes the poll unreplayable.
	bad string
}

// event is one step of a run: a stored poll, or (poll nil) the meetings
// list stored at key.at.
type event struct {
	key  pollKey
	poll *storedPoll
}

// compareEvents is the order of a run: by observation instant; at one
// instant a meetings list goes before the polls, as the list the baseline
// fetched at that instant was in the database before any poll observed
// after it.
func compareEvents(a, b event) int {
	if c := a.key.at.Compare(b.key.at); c != 0 {
		return c
	}
	if (a.poll == nil) != (b.poll == nil) {
		if a.poll == nil {
			return -1
		}
		return 1
	}
	return a.key.compare(b.key)
}

// raceWork is one race of a rebuild with its stored polls in order.
type raceWork struct {
	raceID string
	polls  []storedPoll
}

// runPlan is what a run does.
type runPlan struct {
	// events is a replay's sequence: polls and lists in run order.
	events []event
	// races are a rebuild's races, earliest first, and lists every stored
	// meetings list (rebuild applies those that name each race).
	races []*raceWork
	lists []time.Time
}

// polls is the number of polls the plan replays.
func (p runPlan) polls() int {
	n := 0
	for _, e := range p.events {
		if e.poll != nil {
			n++
		}
	}
	for _, w := range p.races {
		n += len(w.polls)
	}
	return n
}

// instants are the observation instants of the plan's polls.
func (p runPlan) instants() []time.Time {
	var out []time.Time
	for _, e := range p.events {
		if e.poll != nil {
			out = append(out, e.key.at)
		}
	}
	for _, w := range p.races {
		for _, sp := range w.polls {
			out = append(out, sp.key.at)
		}
	}
	return out
}

// plan reads the metadata of the stored polls (not their payloads) and the
// instants of the stored meetings lists, applies the filter and the run's
// progress, and returns what the run does. A replay takes the polls and
// lists the filter selects; a rebuild takes every stored poll of each race
// the filter selects a poll of.
func (r *Replayer) plan(ctx context.Context, sum *Summary, topics []driver.Topic, filter Filter, rebuild bool) (runPlan, error) {
	byRace := map[string][]storedPoll{}
	selected := map[string]bool{}
	for _, topic := range topics {
		name := topic.String()
		err := r.stored.Scan(ctx, topic, filter.RaceIDs, func(sp driver.StoredPoll) {
			p := storedPoll{key: pollKey{topic: name, offset: sp.Offset}, topic: topic, raceID: sp.RaceID, pollID: sp.PollID}
			if sp.RaceID == "" {
				sum.Failures = append(sum.Failures, Failure{Topic: name, Offset: sp.Offset, PollID: sp.PollID,
					Stage: handlers.StageTransform, Kind: handlers.KindMetadata, Reason: "stored poll has no race_id"})
				return
			}
			at, err := time.Parse(time.RFC3339Nano, sp.ObservedAt)
			in := err == nil && filter.inRange(at)
			if err != nil {
				// Unorderable: replayed first, where it is reported and
				// skipped; it selects its race for a rebuild only when no
				// time bounds the selection.
				p.bad = fmt.Sprintf("missing or bad %s %q", handlers.KeyObservedAt, sp.ObservedAt)
				in = !filter.timeBound()
				if !rebuild {
					in = true
				}
			}
			if !in && !rebuild {
				return
			}
			selected[sp.RaceID] = selected[sp.RaceID] || in
			// The progress row keeps the instant in PostgreSQL's microseconds
			// (pgx truncates); keys carry the same precision so a stored key
			// compares equal to the poll it came from.
			p.key.at = at.Truncate(time.Microsecond)
			byRace[sp.RaceID] = append(byRace[sp.RaceID], p)
		})
		if err != nil {
			return runPlan{}, fmt.Errorf("replay: read %s: %w", topic, err)
		}
	}
	for id := range byRace {
		if !selected[id] {
			delete(byRace, id)
		}
	}
	if filter.MeetingID != "" {
		if err := r.keepMeeting(ctx, byRace, filter.MeetingID); err != nil {
			return runPlan{}, err
		}
	}
	done, err := r.progressOf(ctx)
	if err != nil {
		return runPlan{}, err
	}
	lists, err := baseline.Stored(ctx, r.deps.Pool, time.Time{}, time.Time{})
	if err != nil {
		return runPlan{}, fmt.Errorf("replay: %w", err)
	}
	for i := range lists {
		lists[i] = lists[i].Truncate(time.Microsecond)
	}
	if rebuild {
		return r.planRebuild(sum, byRace, done, lists), nil
	}

	var pl runPlan
	races := map[string]bool{}
	for raceID, polls := range byRace {
		sum.Stored += len(polls)
		for _, p := range polls {
			if last, ok := done[raceID]; ok && p.key.compare(last) <= 0 {
				sum.AlreadyDone++
				continue
			}
			pl.events = append(pl.events, event{key: p.key, poll: &p})
			races[raceID] = true
		}
	}
	sum.Races = len(races)
	last, listsDone := done[listsRaceID]
	for _, at := range lists {
		if !filter.inRange(at) {
			continue
		}
		sum.Lists.Stored++
		k := pollKey{at: at, topic: listTopic}
		if !listsDone || k.compare(last) > 0 {
			pl.events = append(pl.events, event{key: k})
		}
	}
	slices.SortFunc(pl.events, compareEvents)
	return pl, nil
}

// planRebuild makes the races of byRace not rebuilt yet by the run (done)
// a rebuild plan. A race the run has rebuilt is not rebuilt again: its polls
// up to where it was rebuilt are already done, those stored since are left
// to the live flow.
func (r *Replayer) planRebuild(sum *Summary, byRace map[string][]storedPoll, done map[string]pollKey, lists []time.Time) runPlan {
	pl := runPlan{lists: lists}
	sum.Lists.Stored = len(lists)
	for raceID, polls := range byRace {
		slices.SortFunc(polls, func(a, b storedPoll) int { return a.key.compare(b.key) })
		sum.Stored += len(polls)
		if last, ok := done[raceID]; ok {
			for _, p := range polls {
				if p.key.compare(last) <= 0 {
					sum.AlreadyDone++
				}
			}
			continue
		}
		pl.races = append(pl.races, &raceWork{raceID: raceID, polls: polls})
	}
	slices.SortFunc(pl.races, func(a, b *raceWork) int {
		return cmp.Or(a.polls[0].key.compare(b.polls[0].key), strings.Compare(a.raceID, b.raceID))
	})
	sum.Races = len(pl.races)
	return pl
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

// ensurePartitions creates the history partitions of the days of instants,
// in their own transactions before any data transaction.
func (r *Replayer) ensurePartitions(ctx context.Context, instants []time.Time) error {
	var first, last time.Time
	for _, at := range instants {
		if at.IsZero() {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
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
