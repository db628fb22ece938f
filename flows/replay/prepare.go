package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// prepared is an event read and transformed, ready for the writer.
type prepared struct {
	ev event
	// snap is a poll's snapshot, validated for the write stage.
	snap transform.RaceSnapshot
	// list is a meetings list's rows that the run selects.
	list *baseline.Plan
	// fail, when set, skips the event: it is reported, and the ledger
	// moves past it so a resumed run does not report it again.
	fail        *Failure
	transformMS float64
}

// raceID is the ledger row the event moves.
func (it prepared) raceID() string {
	if it.ev.poll == nil {
		return listsRaceID
	}
	return it.ev.poll.raceID
}

// pipeline reads and transforms the events ahead of the writer, chunk by
// chunk of BatchSize: one goroutine loads the payloads of a chunk while
// Concurrency workers transform the chunk before it, and write is called
// with the chunk before that, chunks in order. An error of write, or of a
// read, stops it and is returned; an interruption (ctx) stops it after the
// chunk write is handling.
func (r *Replayer) pipeline(ctx context.Context, events []event, lists *listCache, write func([]prepared) error) error {
	g, gctx := errgroup.WithContext(ctx)
	type loadedChunk struct {
		events []event
		rows   map[storeKey]stored
	}
	loaded := make(chan loadedChunk, 1)
	ready := make(chan []prepared, 1)
	g.Go(func() error {
		defer close(loaded)
		for chunk := range slices.Chunk(events, r.cfg.BatchSize) {
			rows, err := r.loadEvents(gctx, chunk)
			if err != nil {
				return err
			}
			select {
			case loaded <- loadedChunk{chunk, rows}:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	g.Go(func() error {
		defer close(ready)
		for c := range loaded {
			items := r.prepare(gctx, c.events, c.rows, lists)
			if gctx.Err() != nil {
				return nil // items may be half prepared
			}
			select {
			case ready <- items:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	g.Go(func() error {
		for items := range ready {
			if ctx.Err() != nil {
				return nil
			}
			if err := write(items); err != nil {
				return err
			}
		}
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// loadEvents reads the payloads of a chunk's polls, retrying transient
// errors.
func (r *Replayer) loadEvents(ctx context.Context, chunk []event) (map[storeKey]stored, error) {
	var polls []storedPoll
	for _, e := range chunk {
		if e.poll != nil {
			polls = append(polls, *e.poll)
		}
	}
	var rows map[storeKey]stored
	err := r.withRetry(ctx, func(context.Context) error {
		// A read, unlike a write, stops at an interruption.
		rctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
		defer cancel()
		var err error
		rows, err = r.load(rctx, polls)
		return err
	})
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("replay: read stored polls: %w", err)
	}
	return rows, err
}

// prepare transforms a chunk's polls, Concurrency at a time, and plans its
// meetings lists.
func (r *Replayer) prepare(ctx context.Context, chunk []event, rows map[storeKey]stored, lists *listCache) []prepared {
	out := make([]prepared, len(chunk))
	var g errgroup.Group
	g.SetLimit(r.cfg.Concurrency)
	for i, e := range chunk {
		out[i].ev = e
		if ctx.Err() != nil {
			break
		}
		if e.poll == nil {
			out[i].list, out[i].fail = lists.get(ctx, e.key)
			continue
		}
		g.Go(func() error {
			out[i] = r.preparePoll(e, rows)
			return nil
		})
	}
	_ = g.Wait() // failures are in the items
	return out
}

// preparePoll transforms and validates one stored poll.
func (r *Replayer) preparePoll(e event, rows map[storeKey]stored) prepared {
	p := e.poll
	it := prepared{ev: e}
	t0 := time.Now()
	snap, kind, err := r.snapshot(*p, rows)
	it.transformMS = ms(time.Since(t0))
	stage := handlers.StageTransform
	if err == nil {
		// A snapshot the write stage refuses would fail a whole batch; it
		// is classified as the write stage does and skipped.
		if verr := write.Validate(snap); verr != nil {
			err = handlers.WriteFailure(p.raceID, p.pollID, verr)
			stage, kind = handlers.StageWrite, handlers.ErrorKind(err)
		}
	}
	if err != nil {
		it.fail = &Failure{RaceID: p.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset,
			ObservedAt: p.key.at, Stage: stage, Kind: kind, Reason: err.Error()}
		return it
	}
	it.snap = snap
	return it
}

// snapshot turns a stored poll into a snapshot; on failure it names the kind.
func (r *Replayer) snapshot(p storedPoll, rows map[storeKey]stored) (transform.RaceSnapshot, string, error) {
	if p.bad != "" {
		return transform.RaceSnapshot{}, handlers.KindMetadata, errors.New(p.bad)
	}
	row, ok := rows[p.key.store()]
	if !ok {
		return transform.RaceSnapshot{}, "missing", errors.New("stored poll no longer exists (pruned?)")
	}
	if row.err != nil {
		return transform.RaceSnapshot{}, handlers.KindMetadata, row.err
	}
	snap, err := handlers.SnapshotFromFetched(row.msg)
	if err != nil {
		return transform.RaceSnapshot{}, handlers.ErrorKind(err), err
	}
	if snap.RaceID != p.raceID {
		return transform.RaceSnapshot{}, handlers.KindMetadata, fmt.Errorf("stored poll of race %q holds race %q", p.raceID, snap.RaceID)
	}
	return snap, "", nil
}

// listCache loads and plans each stored meetings list once per run, with
// the meetings filter of the live baseline, and hands out the rows a
// selection keeps.
type listCache struct {
	r *Replayer
	// keep selects the races of a list the run applies (nil: all); the
	// meetings kept are theirs.
	keep func(baseline.RaceRow) bool
	mu   sync.Mutex
	byAt map[time.Time]*listEntry
}

type listEntry struct {
	once     sync.Once
	plan     baseline.Plan
	err      error
	reported bool // the failure was handed out (guarded by listCache.mu)
}

func newListCache(r *Replayer, keep func(baseline.RaceRow) bool) *listCache {
	return &listCache{r: r, keep: keep, byAt: map[time.Time]*listEntry{}}
}

// get returns the rows of the list stored at key.at that the run keeps, or
// why it cannot be applied.
func (c *listCache) get(ctx context.Context, key pollKey) (*baseline.Plan, *Failure) {
	return c.getKeeping(ctx, key, c.keep)
}

// getKeeping is get with another selection of races. A list that cannot be
// applied yields its failure once per run and nil rows after that.
func (c *listCache) getKeeping(ctx context.Context, key pollKey, keep func(baseline.RaceRow) bool) (*baseline.Plan, *Failure) {
	c.mu.Lock()
	e, ok := c.byAt[key.at]
	if !ok {
		e = &listEntry{}
		c.byAt[key.at] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		var resp baseline.Response
		if e.err = c.r.withRetry(ctx, func(wctx context.Context) error {
			var err error
			resp, err = baseline.Load(wctx, c.r.deps.Pool, key.at)
			return err
		}); e.err != nil {
			return
		}
		e.plan, e.err = baseline.PlanOf(resp, c.r.cfg.Meetings)
	})
	if e.err != nil {
		c.mu.Lock()
		first := !e.reported
		e.reported = true
		c.mu.Unlock()
		if !first {
			return nil, nil
		}
		return nil, &Failure{Topic: listTopic, ObservedAt: key.at, Stage: stageBaseline, Kind: "decode", Reason: e.err.Error()}
	}
	p := selectRows(e.plan, keep)
	return &p, nil
}

// stageBaseline names a stored meetings list's step in a Failure.
const stageBaseline = "baseline"

// selectRows keeps the races keep selects and their meetings (all rows
// when keep is nil).
func selectRows(p baseline.Plan, keep func(baseline.RaceRow) bool) baseline.Plan {
	if keep == nil {
		return baseline.Plan{Meetings: p.Meetings, Races: p.Races}
	}
	var out baseline.Plan
	meetings := map[string]bool{}
	for _, rr := range p.Races {
		if keep(rr) {
			out.Races = append(out.Races, rr)
			meetings[rr.MeetingID] = true
		}
	}
	for _, m := range p.Meetings {
		if meetings[m.MeetingID] {
			out.Meetings = append(out.Meetings, m)
		}
	}
	return out
}

// keepOf is the selection of list rows a replay filter makes: the races it
// names, or those of its meeting; nil (everything) when it names neither.
func keepOf(f Filter) func(baseline.RaceRow) bool {
	if !f.selectsRaces() {
		return nil
	}
	ids := map[string]bool{}
	for _, id := range f.RaceIDs {
		ids[id] = true
	}
	return func(rr baseline.RaceRow) bool {
		return (len(ids) == 0 || ids[rr.RaceID]) && (f.MeetingID == "" || rr.MeetingID == f.MeetingID)
	}
}
