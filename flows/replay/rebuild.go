package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/write"
)

// A rebuild empties the derived rows of each selected race and re-derives
// them from the race's stored polls and the stored meetings lists, in
// observation order, one transaction per race: a race is either rebuilt
// whole or left as it was, and a resumed run skips the races it rebuilt.
//
// A race's derived rows are the rows its polls write and nothing else
// does: its races row and with it its entrants, race_pools and race_results
// rows, its money_flow_history and odds_history rows, its race_polls
// ledger rows, and its alerts, which the detect stage's judgement of its
// polls stores again. The race's row in races is also written by the meetings
// lists, which are stored, so it is re-derived too. The meetings row is
// shared with the meeting's other races and the lists: it is not emptied
// but written again, under the same per-row guards as live, by the stored
// lists (the rows of the race and its meeting) and the race's polls, so it
// ends as the latest observation made it. A race whose ledger holds a poll
// the rebuild would not write (its stored fetch pruned, or unreadable now)
// is not touched: emptying it would lose that poll's rows.

// ErrNotStored marks a race a rebuild leaves alone because its ledger holds
// polls it could not write again.
var ErrNotStored = errors.New("replay: the race's ledger holds polls that are no longer stored or readable")

// stageRebuild names a race a rebuild refused in a Failure.
const stageRebuild = "rebuild"

// rebuild rebuilds the plan's races, Concurrency at a time, one race of a
// meeting at a time.
func (r *Replayer) rebuild(ctx context.Context, st *runState, pl runPlan) {
	lists := newListCache(r, nil)
	var g errgroup.Group
	g.SetLimit(r.cfg.Concurrency)
	for _, w := range pl.races {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			r.rebuildRace(ctx, st, lists, pl.lists, w)
			return nil
		})
	}
	_ = g.Wait() // failures are in the summary
}

// raceOutcome is what re-deriving a race wrote: per item, the rows of a
// poll or the counts of a list.
type raceOutcome struct {
	rows   []write.Rows
	found  []detect.Result
	counts []baseline.Counts
}

// pollFailure names the poll a race's re-derivation failed at.
type pollFailure struct {
	item prepared
	err  error
}

func (e *pollFailure) Error() string { return e.err.Error() }
func (e *pollFailure) Unwrap() error { return e.err }

func (r *Replayer) rebuildRace(ctx context.Context, st *runState, lists *listCache, listAt []time.Time, w *raceWork) {
	items, ok := r.raceItems(ctx, st, lists, listAt, w)
	if !ok {
		return
	}
	meeting := ""
	for _, it := range items {
		if it.fail == nil && it.ev.poll != nil {
			meeting = it.snap.Race.MeetingID
			break
		}
		if it.list != nil && len(it.list.Races) > 0 {
			meeting = it.list.Races[0].MeetingID
		}
	}
	lock := st.meetingLock(meeting)
	lock.Lock()
	defer lock.Unlock()
	log := r.log.WithField("race_id", w.raceID)

	if r.cfg.DryRun {
		r.reportRace(st, items, raceOutcome{}, 0)
		return
	}
	t0 := time.Now()
	var out raceOutcome
	rederive := func(oneByOne bool) error {
		return r.withRetry(ctx, func(wctx context.Context) error {
			return r.inTx(wctx, func(tx pgx.Tx) error {
				var err error
				out, err = r.rederive(wctx, tx, w.raceID, items, oneByOne)
				return err
			})
		})
	}
	err := rederive(false)
	if err != nil && !retryable(err) && !errors.Is(err, ErrNotStored) && !errors.Is(err, context.Canceled) {
		// Refused for good: again one poll at a time, to find the poll at
		// fault (nothing of the race changes unless all of it is written).
		log.WithError(err).Warn("replay: race refused; rebuilding it one poll at a time")
		err = rederive(true)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return
		}
		fail := Failure{RaceID: w.raceID, Stage: handlers.StageWrite, Kind: kindOf(err), Reason: err.Error()}
		var pf *pollFailure
		switch {
		case errors.As(err, &pf):
			fail = r.failure(pf.item, handlers.StageWrite, kindOf(err), err)
		case errors.Is(err, ErrNotStored):
			fail.Stage, fail.Kind = stageRebuild, "not_stored"
		}
		st.stop(w.raceID, fail)
		log.WithError(err).Error("replay: race not rebuilt; it is as it was")
		return
	}
	r.reportRace(st, items, out, time.Since(t0))
	log.WithField("duration_ms", time.Since(t0).Milliseconds()).Debug("replay: race rebuilt")
	var polls []write.Poll
	var found []detect.Result
	for i, it := range items {
		if it.ev.poll != nil && it.fail == nil {
			polls = append(polls, write.Poll{Snapshot: it.snap, PollID: it.ev.poll.pollID})
			found = append(found, out.found[i])
		}
	}
	if err := r.notify(ctx, st, polls, found); err != nil {
		st.mu.Lock()
		st.sum.Failures = append(st.sum.Failures, Failure{RaceID: w.raceID, Stage: handlers.StageDetect, Kind: handlers.KindPublish, Reason: err.Error()})
		st.mu.Unlock()
		log.WithError(err).Error("replay: the race's alerts are stored but could not be published")
	}
}

// raceItems reads and transforms a race's stored polls and merges them
// with the rows of the stored lists that name the race, in run order.
func (r *Replayer) raceItems(ctx context.Context, st *runState, lists *listCache, listAt []time.Time, w *raceWork) ([]prepared, bool) {
	var items []prepared
	for chunk := range slices.Chunk(w.polls, r.cfg.BatchSize) {
		events := make([]event, len(chunk))
		for i := range chunk {
			events[i] = event{key: chunk[i].key, poll: &chunk[i]}
		}
		rows, err := r.loadEvents(ctx, events)
		if err != nil {
			if ctx.Err() == nil {
				st.stop(w.raceID, Failure{RaceID: w.raceID, Stage: "read", Kind: handlers.KindDatabase, Reason: err.Error()})
			}
			return nil, false
		}
		for _, e := range events {
			items = append(items, r.preparePoll(e, rows))
		}
	}
	keep := func(rr baseline.RaceRow) bool { return rr.RaceID == w.raceID }
	for _, at := range listAt {
		plan, fail := lists.getKeeping(ctx, pollKey{at: at, topic: listTopic}, keep)
		if fail != nil {
			st.mu.Lock()
			st.sum.Failures = append(st.sum.Failures, *fail)
			st.mu.Unlock()
			continue
		}
		if plan != nil && len(plan.Races) > 0 {
			items = append(items, prepared{ev: event{key: pollKey{at: at, topic: listTopic}}, list: plan})
		}
	}
	slices.SortStableFunc(items, func(a, b prepared) int { return compareEvents(a.ev, b.ev) })
	return items, true
}

// rederive empties the race's derived rows and writes them again from
// items, inside tx: the polls between two lists as one batch (or, oneByOne,
// each on its own, so a failure names its poll), the lists as the baseline
// did, then the race's ledger row.
func (r *Replayer) rederive(ctx context.Context, tx pgx.Tx, raceID string, items []prepared, oneByOne bool) (raceOutcome, error) {
	out := raceOutcome{rows: make([]write.Rows, len(items)), found: make([]detect.Result, len(items)),
		counts: make([]baseline.Counts, len(items))}
	if err := r.checkLedger(ctx, tx, raceID, items); err != nil {
		return out, err
	}
	if err := r.empty(ctx, tx, raceID, items); err != nil {
		return out, err
	}
	var run []int // indexes of the polls since the last list
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		defer func() { run = run[:0] }()
		polls := make([]write.Poll, len(run))
		for k, i := range run {
			polls[k] = write.Poll{Snapshot: items[i].snap, PollID: items[i].ev.poll.pollID}
		}
		if oneByOne {
			for k, i := range run {
				it := items[i]
				rows, err := handlers.WritePoll(ctx, tx, it.snap, it.ev.poll.pollID)
				if err == nil {
					var found []detect.Result
					found, err = r.judge(ctx, tx, polls[k:k+1])
					if err == nil {
						out.found[i] = found[0]
					}
				}
				if err != nil {
					return &pollFailure{item: it, err: err}
				}
				out.rows[i] = rows
			}
			return nil
		}
		written, err := handlers.WritePolls(ctx, tx, polls)
		if err != nil {
			return err
		}
		found, err := r.judge(ctx, tx, polls)
		if err != nil {
			return err
		}
		for k, i := range run {
			out.rows[i], out.found[i] = written.Polls[k], found[k]
		}
		return nil
	}
	var polls []prepared
	for i, it := range items {
		switch {
		case it.ev.poll == nil:
			if err := flush(); err != nil {
				return out, err
			}
			c, err := baseline.Upsert(ctx, tx, it.list.Meetings, it.list.Races)
			if err != nil {
				return out, fmt.Errorf("replay: meetings list of %s: %w", it.ev.key.at.Format(time.RFC3339), err)
			}
			out.counts[i] = c
		case it.fail == nil:
			run = append(run, i)
			polls = append(polls, it)
		default:
			polls = append(polls, it)
		}
	}
	if err := flush(); err != nil {
		return out, err
	}
	return out, r.saveProgress(ctx, tx, progressOfItems(polls))
}

// checkLedger refuses (ErrNotStored) a race whose ledger holds a poll that
// items would not write again.
func (r *Replayer) checkLedger(ctx context.Context, tx pgx.Tx, raceID string, items []prepared) error {
	rows, err := tx.Query(ctx, `SELECT observed_at FROM race_polls WHERE race_id = $1`, raceID)
	if err != nil {
		return fmt.Errorf("replay: ledger of %s: %w", raceID, err)
	}
	ledger, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return fmt.Errorf("replay: ledger of %s: %w", raceID, err)
	}
	written := map[time.Time]bool{}
	for _, it := range items {
		if it.ev.poll != nil && it.fail == nil {
			written[it.snap.ObservedAt.Truncate(time.Microsecond).UTC()] = true
		}
	}
	missing := 0
	for _, at := range ledger {
		if !written[at.UTC()] {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%w: %d of the %d polls in race_polls of race %s", ErrNotStored, missing, len(ledger), raceID)
	}
	return nil
}

// empty deletes the race's derived rows. History rows are found by race
// and runner: odds_history is keyed by runner, so the runners are those the
// entrants table and the stored polls know.
func (r *Replayer) empty(ctx context.Context, tx pgx.Tx, raceID string, items []prepared) error {
	rows, err := tx.Query(ctx, `SELECT entrant_id FROM entrants WHERE race_id = $1`, raceID)
	if err != nil {
		return fmt.Errorf("replay: runners of %s: %w", raceID, err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("replay: runners of %s: %w", raceID, err)
	}
	runners := map[string]bool{}
	for _, id := range stored {
		runners[id] = true
	}
	for _, it := range items {
		for _, e := range it.snap.Entrants {
			runners[e.EntrantID] = true
		}
		for _, o := range it.snap.Odds {
			runners[o.EntrantID] = true
		}
	}
	ids := make([]string, 0, len(runners))
	for id := range runners {
		ids = append(ids, id)
	}
	for _, q := range []struct{ table, sql string }{
		{"odds_history", `DELETE FROM odds_history WHERE race_id = $1 AND entrant_id = ANY($2)`},
		{"money_flow_history", `DELETE FROM money_flow_history WHERE race_id = $1`},
		{"race_polls", `DELETE FROM race_polls WHERE race_id = $1`},
		{"alerts", `DELETE FROM alerts WHERE race_id = $1`},
		// entrants, race_pools and race_results go with the race (ON DELETE CASCADE).
		{"races", `DELETE FROM races WHERE race_id = $1`},
	} {
		args := []any{raceID}
		if q.table == "odds_history" {
			args = append(args, ids)
		}
		if _, err := tx.Exec(ctx, q.sql, args...); err != nil {
			return fmt.Errorf("replay: empty %s of %s: %w", q.table, raceID, err)
		}
	}
	return nil
}

// reportRace reports a rebuilt race's polls and lists.
func (r *Replayer) reportRace(st *runState, items []prepared, out raceOutcome, took time.Duration) {
	n := 0
	for _, it := range items {
		if it.ev.poll != nil && it.fail == nil {
			n++
		}
	}
	perPoll := took / time.Duration(max(n, 1))
	for i, it := range items {
		switch {
		case it.ev.poll == nil && r.cfg.DryRun:
			st.reportList(len(it.list.Meetings), len(it.list.Races), nil)
		case it.ev.poll == nil:
			st.reportList(out.counts[i].Meetings(), out.counts[i].Races(), rejections(it, out.counts[i]))
		case r.cfg.DryRun && it.fail == nil:
			r.reportPoll(st, it, candidateRows(it.snap), detect.Result{}, 0)
		case r.cfg.DryRun:
			r.reportPoll(st, it, write.Rows{}, detect.Result{}, 0)
		default:
			r.reportPoll(st, it, out.rows[i], out.found[i], perPoll)
		}
	}
}
