package replay

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/detect"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// runState is what the writers of one run share.
type runState struct {
	r     *Replayer
	start time.Time

	mu       sync.Mutex // guards sum, progress, stopped, locks; serialises Progress calls
	sum      *Summary
	progress Progress
	// stopped are the races (listsRaceID: the lists) stopped at a failure:
	// their later events are left to a resumed run.
	stopped map[string]bool
	locks   map[string]*sync.Mutex
}

func newRunState(r *Replayer, sum *Summary, start time.Time, total int) *runState {
	return &runState{r: r, sum: sum, start: start, stopped: map[string]bool{}, locks: map[string]*sync.Mutex{},
		progress: Progress{RunID: r.cfg.RunID, Total: total}}
}

// report records one handled poll and tells the Progress hook.
func (s *runState) report(res handlers.ProcessResult, rows write.Rows, fail *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.progress.Done++
	if fail != nil {
		s.progress.Failed++
		s.sum.Failures = append(s.sum.Failures, *fail)
	} else {
		s.sum.Polls++
		addRows(&s.sum.Rows, rows)
		s.sum.Alerts += res.Rows.Alerts
	}
	s.progress.Elapsed = time.Since(s.start)
	s.progress.Last = res
	if s.r.deps.Progress != nil {
		s.r.deps.Progress(s.progress)
	}
}

// notified counts alerts published for delivery.
func (s *runState) notified(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Notified += n
}

// reportList records one handled meetings list.
func (s *runState) reportList(meetings, races int, fails []Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Lists.Applied++
	s.sum.Lists.Meetings += meetings
	s.sum.Lists.Races += races
	s.sum.Failures = append(s.sum.Failures, fails...)
}

// stop records a failure that stops a race (its event is not counted as
// handled) and leaves the race's later events to a resumed run.
func (s *runState) stop(raceID string, fail Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail.Stopped = true
	s.sum.Failures = append(s.sum.Failures, fail)
	s.stopped[raceID] = true
}

func (s *runState) isStopped(raceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped[raceID]
}

// meetingLock serialises the rebuilds of one meeting's races, so the
// meeting row they share sees their polls one race after another.
func (s *runState) meetingLock(meetingID string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[meetingID]
	if !ok {
		l = &sync.Mutex{}
		s.locks[meetingID] = l
	}
	return l
}

func addRows(dst *write.Rows, src write.Rows) {
	dst.Meetings += src.Meetings
	dst.Races += src.Races
	dst.Entrants += src.Entrants
	dst.RacePools += src.RacePools
	dst.MoneyFlow += src.MoneyFlow
	dst.MoneyFlowCorrected += src.MoneyFlowCorrected
	dst.Odds += src.Odds
	dst.OddsDeleted += src.OddsDeleted
	dst.Results += src.Results
	dst.Polls += src.Polls
}

// candidateRows are the rows a snapshot carries: what a dry run reports.
func candidateRows(s transform.RaceSnapshot) write.Rows {
	one := func(ok bool) int {
		if ok {
			return 1
		}
		return 0
	}
	return write.Rows{
		Meetings: one(s.Meeting != nil), Races: 1, Entrants: len(s.Entrants), RacePools: one(s.RacePools != nil),
		MoneyFlow: len(s.MoneyFlow), Odds: len(s.Odds), Results: one(s.Results != nil), Polls: 1,
	}
}

// execute replays a run's sequence in order: the polls between two
// meetings lists in batches of consecutive polls (see writeRun), and every
// list in its own transaction.
func (r *Replayer) execute(ctx context.Context, st *runState, events []event) error {
	lists := newListCache(r, keepOf(r.cfg.Filter))
	return r.pipeline(ctx, events, lists, func(items []prepared) error {
		from := 0
		for i, it := range items {
			if it.ev.poll != nil {
				continue
			}
			if err := r.writeRun(ctx, st, items[from:i]); err != nil {
				return err
			}
			if err := r.applyList(ctx, st, it); err != nil {
				return err
			}
			from = i + 1
		}
		return r.writeRun(ctx, st, items[from:])
	})
}

// writeRun writes consecutive polls in up to Writers transactions at once,
// each holding the polls of different meetings (each race's polls, and each
// meeting's, in their order). Polls of different meetings share no row, not
// even a ledger row, so their order does not matter; the next run starts
// once all of them have committed, so the ledger always holds a prefix of
// the sequence.
func (r *Replayer) writeRun(ctx context.Context, st *runState, items []prepared) error {
	groups := splitByMeeting(items, r.cfg.Writers)
	if len(groups) == 1 {
		return r.writeBatch(ctx, st, groups[0])
	}
	var g errgroup.Group
	for _, group := range groups {
		g.Go(func() error { return r.writeBatch(ctx, st, group) })
	}
	return g.Wait()
}

// splitByMeeting splits items into at most n groups, keeping each meeting's
// polls (and every poll of their races) together and in order, the groups
// about even in size. A race with no poll to write among items (only
// skipped ones) is a group of its own.
func splitByMeeting(items []prepared, n int) [][]prepared {
	if n <= 1 || len(items) < 2 {
		return [][]prepared{items}
	}
	meetingOf := map[string]string{}
	for _, it := range items {
		if it.fail == nil {
			meetingOf[it.raceID()] = "m\x00" + it.snap.Race.MeetingID
		}
	}
	var keys []string
	members := map[string][]prepared{}
	for _, it := range items {
		k, ok := meetingOf[it.raceID()]
		if !ok {
			k = "r\x00" + it.raceID()
		}
		if _, seen := members[k]; !seen {
			keys = append(keys, k)
		}
		members[k] = append(members[k], it)
	}
	if len(keys) == 1 {
		return [][]prepared{items}
	}
	// Largest first onto the smallest group.
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(len(members[b]), len(members[a])) })
	groups := make([][]prepared, min(n, len(keys)))
	for _, k := range keys {
		small := 0
		for i := range groups {
			if len(groups[i]) < len(groups[small]) {
				small = i
			}
		}
		groups[small] = append(groups[small], members[k]...)
	}
	// Each group in sequence order again.
	for _, g := range groups {
		slices.SortStableFunc(g, func(a, b prepared) int { return compareEvents(a.ev, b.ev) })
	}
	return groups
}

// writeBatch writes consecutive polls (and the ledger rows of the skipped
// ones among them) in one transaction. A batch the database refuses for
// good is written again one poll per transaction, so the poll at fault is
// found: it stops its race, the others are written. Only an interruption
// is returned; every other failure is in the summary.
func (r *Replayer) writeBatch(ctx context.Context, st *runState, items []prepared) error {
	live := items[:0:0]
	for _, it := range items {
		if !st.isStopped(it.raceID()) {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return nil
	}
	if r.cfg.DryRun {
		for _, it := range live {
			r.reportPoll(st, it, candidateRows(it.snap), detect.Result{}, 0)
		}
		return nil
	}
	var polls []write.Poll
	for _, it := range live {
		if it.fail == nil {
			polls = append(polls, write.Poll{Snapshot: it.snap, PollID: it.ev.poll.pollID})
		}
	}
	var (
		written write.BatchRows
		judged  []detect.Result
	)
	t0 := time.Now()
	err := r.withRetry(ctx, func(wctx context.Context) error {
		return r.inTx(wctx, func(tx pgx.Tx) error {
			if len(polls) > 0 {
				var err error
				if written, err = handlers.WritePolls(wctx, tx, polls); err != nil {
					return err
				}
				if judged, err = r.judge(wctx, tx, polls); err != nil {
					return err
				}
			}
			return r.saveProgress(wctx, tx, progressOfItems(live))
		})
	})
	if err == nil {
		perPoll := time.Since(t0) / time.Duration(max(len(polls), 1))
		i := 0
		for _, it := range live {
			var (
				rows  write.Rows
				found detect.Result
			)
			if it.fail == nil {
				rows, found = written.Polls[i], judged[i]
				i++
			}
			r.reportPoll(st, it, rows, found, perPoll)
		}
		return r.notify(ctx, st, polls, judged)
	}
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return ctx.Err() // interrupted before the write: a resumed run does it
	case retryable(err):
		// Still failing after the retries: the database, not a poll. The
		// batch's races stop here and a resumed run takes them up.
		for _, row := range progressOfItems(live) {
			it := firstOf(live, row.raceID)
			st.stop(row.raceID, r.failure(it, handlers.StageWrite, kindOf(err), err))
		}
		r.log.WithError(err).Error("replay: batch write failed; its races stopped")
		return nil
	}
	r.log.WithError(err).Warn("replay: batch refused; writing its polls one by one")
	for _, it := range live {
		if err := r.writeOne(ctx, st, it); err != nil {
			return err
		}
	}
	return nil
}

// writeOne writes one poll (or a skipped poll's ledger row) in its own
// transaction; a failure stops the poll's race.
func (r *Replayer) writeOne(ctx context.Context, st *runState, it prepared) error {
	raceID := it.raceID()
	if st.isStopped(raceID) {
		return nil
	}
	var (
		rows   write.Rows
		judged []detect.Result
		polls  []write.Poll
	)
	if it.fail == nil {
		polls = []write.Poll{{Snapshot: it.snap, PollID: it.ev.poll.pollID}}
	}
	t0 := time.Now()
	err := r.withRetry(ctx, func(wctx context.Context) error {
		return r.inTx(wctx, func(tx pgx.Tx) error {
			if it.fail == nil {
				var err error
				if rows, err = handlers.WritePoll(wctx, tx, it.snap, it.ev.poll.pollID); err != nil {
					return err
				}
				if judged, err = r.judge(wctx, tx, polls); err != nil {
					return err
				}
			}
			return r.saveProgress(wctx, tx, progressOfItems([]prepared{it}))
		})
	})
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err()
		}
		st.stop(raceID, r.failure(it, handlers.StageWrite, kindOf(err), err))
		r.log.WithFields(logrus.Fields{"race_id": raceID, "poll_id": it.ev.poll.pollID}).WithError(err).
			Error("replay: write failed; race stopped")
		return nil
	}
	var found detect.Result
	if len(judged) > 0 {
		found = judged[0]
	}
	r.reportPoll(st, it, rows, found, time.Since(t0))
	return r.notify(ctx, st, polls, judged)
}

// reportPoll reports a handled poll: written (rows) and judged (found),
// or skipped (it.fail).
func (r *Replayer) reportPoll(st *runState, it prepared, rows write.Rows, found detect.Result, writeTime time.Duration) {
	p := it.ev.poll
	res := handlers.ProcessResult{RaceID: p.raceID, PollID: p.pollID, Replay: true, Status: handlers.StatusSuccess}
	res.Timings.TransformMS = it.transformMS
	entry := func() *logrus.Entry {
		return r.log.WithFields(logrus.Fields{"race_id": p.raceID, "poll_id": p.pollID, "topic": p.key.topic, "offset": p.key.offset})
	}
	if it.fail != nil {
		res.Status = handlers.StatusFailed
		res.Error = &handlers.ErrorInfo{Stage: it.fail.Stage, Kind: it.fail.Kind, Message: it.fail.Reason}
		entry().WithField("kind", it.fail.Kind).WithField("reason", it.fail.Reason).Warn("replay: stored poll skipped")
		st.report(res, write.Rows{}, it.fail)
		return
	}
	res.RaceStatus = it.snap.Race.Status
	res.Rows = handlers.RowCountsOf(rows)
	res.Rows.Alerts = found.Inserted
	res.Timings.WriteMS = ms(writeTime)
	res.Timings.TotalMS = res.Timings.TransformMS + res.Timings.WriteMS
	if debugEnabled(r.log) {
		entry().WithFields(logrus.Fields{
			"transform_ms": res.Timings.TransformMS, "write_ms": res.Timings.WriteMS, "dry_run": r.cfg.DryRun,
			"rows_money_flow": rows.MoneyFlow, "rows_odds": rows.Odds, "rows_entrants": rows.Entrants,
		}).Debug("replay poll")
	}
	st.report(res, rows, nil)
}

// debugEnabled says whether l logs debug entries, so a run does not build
// the fields of a thousand per-poll entries a second that nobody logs.
func debugEnabled(l logrus.FieldLogger) bool {
	switch l := l.(type) {
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

// applyList applies a stored meetings list in its own transaction, as the
// live baseline did (baseline.Upsert), with the lists' ledger row. A list
// that cannot be read is reported and skipped; one the database fails on
// for good stops the lists (a resumed run retries it).
func (r *Replayer) applyList(ctx context.Context, st *runState, it prepared) error {
	if st.isStopped(listsRaceID) {
		return nil
	}
	progress := progressOfItems([]prepared{it})
	if it.fail != nil {
		r.log.WithField("observed_at", it.ev.key.at).WithError(errors.New(it.fail.Reason)).Warn("replay: stored meetings list skipped")
		if !r.cfg.DryRun {
			if err := r.withRetry(ctx, func(wctx context.Context) error {
				return r.inTx(wctx, func(tx pgx.Tx) error { return r.saveProgress(wctx, tx, progress) })
			}); err != nil {
				if errors.Is(err, context.Canceled) && ctx.Err() != nil {
					return ctx.Err()
				}
				st.stop(listsRaceID, r.failure(it, stageBaseline, handlers.KindDatabase, err))
				return nil
			}
		}
		st.mu.Lock()
		st.sum.Failures = append(st.sum.Failures, *it.fail)
		st.mu.Unlock()
		return nil
	}
	if it.list == nil {
		return nil
	}
	if r.cfg.DryRun {
		st.reportList(len(it.list.Meetings), len(it.list.Races), nil)
		return nil
	}
	var c baseline.Counts
	err := r.withRetry(ctx, func(wctx context.Context) error {
		return r.inTx(wctx, func(tx pgx.Tx) error {
			var err error
			if c, err = baseline.Upsert(wctx, tx, it.list.Meetings, it.list.Races); err != nil {
				return err
			}
			return r.saveProgress(wctx, tx, progress)
		})
	})
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err()
		}
		st.stop(listsRaceID, r.failure(it, stageBaseline, handlers.KindDatabase, err))
		r.log.WithError(err).Error("replay: meetings list failed; lists stopped")
		return nil
	}
	st.reportList(c.Meetings(), c.Races(), rejections(it, c))
	return nil
}

// rejections are the meetings of a list the database refused (and the
// live baseline left out alike), as failures that do not stop the run.
func rejections(it prepared, c baseline.Counts) []Failure {
	var out []Failure
	for _, rj := range c.Rejected {
		out = append(out, Failure{Topic: listTopic, ObservedAt: it.ev.key.at, Stage: stageBaseline, Kind: "rejected",
			Reason: rj.Error()})
	}
	return out
}

// failure describes an event that failed at stage.
func (r *Replayer) failure(it prepared, stage, kind string, err error) Failure {
	f := Failure{Topic: it.ev.key.topic, Offset: it.ev.key.offset, ObservedAt: it.ev.key.at, Stage: stage, Kind: kind,
		Reason: err.Error()}
	if p := it.ev.poll; p != nil {
		f.RaceID, f.PollID = p.raceID, p.pollID
	}
	return f
}

// firstOf is the first item of race raceID.
func firstOf(items []prepared, raceID string) prepared {
	for _, it := range items {
		if it.raceID() == raceID {
			return it
		}
	}
	return prepared{}
}

// kindOf names a failed write's kind: the write stage's for the write
// itself, "database" for the begin, ledger or commit around it.
func kindOf(err error) string {
	if se := (*handlers.StageError)(nil); errors.As(err, &se) {
		return se.Kind
	}
	return handlers.KindDatabase
}

// retryable says whether a failed transaction may succeed if tried again:
// as the write stage classified it, else as the database error says.
func retryable(err error) bool {
	if se := (*handlers.StageError)(nil); errors.As(err, &se) {
		return se.Retryable
	}
	return write.IsRetryable(err)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// withRetry runs fn, retrying transient errors with backoff. fn gets a
// context that an interruption does not cancel, bounded by WriteTimeout,
// so a commit is never in doubt.
func (r *Replayer) withRetry(ctx context.Context, fn func(context.Context) error) error {
	attempt := func() (struct{}, error) {
		if err := ctx.Err(); err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
		defer cancel()
		err := fn(wctx)
		if err != nil && !retryable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	_, err := backoff.Retry(ctx, attempt,
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.2,
			Multiplier: 2, MaxInterval: 2 * time.Second}),
		backoff.WithMaxTries(uint(r.cfg.WriteRetries)+1), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			r.log.WithError(err).WithField("retry_in_ms", next.Milliseconds()).Warn("replay: transient error, retrying")
		}))
	return err
}
