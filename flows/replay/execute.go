package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// runState is what the workers of one run share.
type runState struct {
	r     *Replayer
	start time.Time

	mu       sync.Mutex // guards sum, progress, locks; serialises Progress calls
	sum      *Summary
	progress Progress
	locks    map[string]*sync.Mutex
}

func newRunState(r *Replayer, sum *Summary, start time.Time, total int) *runState {
	return &runState{r: r, sum: sum, locks: map[string]*sync.Mutex{}, start: start,
		progress: Progress{RunID: r.cfg.RunID, Total: total}}
}

// meetingLock serialises the writes of one meeting's races. The meeting
// upsert skips polls older than the meeting's latest written poll, but two
// concurrent transactions cannot see each other's ledger rows, so an older
// poll could overwrite a newer one's meeting values; in one run, races of
// the same meeting would hit that all the time.
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
	}
	s.progress.Elapsed = time.Since(s.start)
	s.progress.Last = res
	if s.r.deps.Progress != nil {
		s.r.deps.Progress(s.progress)
	}
}

// stop records a failure that stops a race (not counted as a handled poll).
func (s *runState) stop(fail Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail.Stopped = true
	s.sum.Failures = append(s.sum.Failures, fail)
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
	if len(src.Durations) > 0 && dst.Durations == nil {
		dst.Durations = map[string]time.Duration{}
	}
	for k, d := range src.Durations {
		dst.Durations[k] += d
	}
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

// execute replays the races, Concurrency at a time, each in order.
func (r *Replayer) execute(ctx context.Context, st *runState, work []*raceWork) {
	var g errgroup.Group
	g.SetLimit(r.cfg.Concurrency)
	for _, w := range work {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			r.replayRace(ctx, st, w)
			return nil
		})
	}
	_ = g.Wait() // failures are in the summary
}

func (r *Replayer) replayRace(ctx context.Context, st *runState, w *raceWork) {
	for start := 0; start < len(w.polls); start += r.cfg.BatchSize {
		if ctx.Err() != nil {
			return
		}
		chunk := w.polls[start:min(start+r.cfg.BatchSize, len(w.polls))]
		rows, err := r.load(ctx, chunk)
		if err != nil {
			if ctx.Err() == nil {
				p := chunk[0]
				st.stop(Failure{RaceID: w.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset,
					ObservedAt: p.key.at, Stage: "read", Kind: "database", Reason: err.Error()})
				r.log.WithError(err).WithField("race_id", w.raceID).Error("replay: race stopped")
			}
			return
		}
		for _, p := range chunk {
			if ctx.Err() != nil || !r.replayPoll(ctx, st, p, rows) {
				return
			}
		}
	}
}

// replayPoll transforms and writes one stored poll; false stops the race.
func (r *Replayer) replayPoll(ctx context.Context, st *runState, p storedPoll, rows map[storeKey]stored) bool {
	res := handlers.ProcessResult{RaceID: p.raceID, PollID: p.pollID, Replay: true, Status: handlers.StatusSuccess}
	fail := Failure{RaceID: p.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset, ObservedAt: p.key.at}
	entry := r.log.WithFields(logrus.Fields{"race_id": p.raceID, "poll_id": p.pollID, "topic": p.key.topic, "offset": p.key.offset})

	t0 := time.Now()
	snap, kind, err := r.snapshot(p, rows)
	res.Timings.TransformMS = ms(time.Since(t0))
	if err != nil {
		// A bad stored payload is reported and skipped; the progress moves
		// past it so a resumed run does not report it again.
		fail.Stage, fail.Kind, fail.Reason = handlers.StageTransform, kind, err.Error()
		res.Status, res.Error = handlers.StatusFailed, &handlers.ErrorInfo{Stage: fail.Stage, Kind: kind, Message: fail.Reason}
		entry.WithField("kind", kind).WithError(err).Warn("replay: stored poll skipped")
		if !r.cfg.DryRun {
			if err := r.withRetry(ctx, nil, func(wctx context.Context) error {
				_, err := r.deps.Pool.Exec(wctx, sqlProgress, r.cfg.RunID, p.raceID, p.key.at, p.key.topic, p.key.offset)
				return err
			}); err != nil {
				if ctx.Err() == nil {
					st.stop(Failure{RaceID: p.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset,
						ObservedAt: p.key.at, Stage: handlers.StageWrite, Kind: "progress", Reason: err.Error()})
				}
				return false
			}
		}
		st.report(res, write.Rows{}, &fail)
		return true
	}
	res.RaceStatus = snap.Race.Status
	if r.cfg.DryRun {
		rows := candidateRows(snap)
		res.Rows = handlers.RowCountsOf(rows)
		res.Timings.TotalMS = res.Timings.TransformMS
		entry.WithField("dry_run", true).Debug("replay poll")
		st.report(res, rows, nil)
		return true
	}

	t1 := time.Now()
	var written write.Rows
	err = r.withRetry(ctx, st.meetingLock(snap.Race.MeetingID), func(wctx context.Context) error {
		var err error
		written, err = r.writePoll(wctx, snap, p)
		return err
	})
	res.Timings.WriteMS = ms(time.Since(t1))
	res.Timings.TotalMS = res.Timings.TransformMS + res.Timings.WriteMS
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return false // interrupted before the write: a resumed run does it
		}
		kind := "database" // begin, progress or commit
		if se := (*handlers.StageError)(nil); errors.As(err, &se) {
			kind = se.Kind // the write itself, classified as the live write stage does
		}
		fail.Stage, fail.Kind, fail.Reason = handlers.StageWrite, kind, err.Error()
		st.stop(fail)
		entry.WithField("kind", kind).WithError(err).Error("replay: write failed; race stopped")
		return false
	}
	res.Rows = handlers.RowCountsOf(written)
	entry.WithFields(logrus.Fields{
		"transform_ms": res.Timings.TransformMS, "write_ms": res.Timings.WriteMS,
		"rows_money_flow": written.MoneyFlow, "rows_odds": written.Odds, "rows_entrants": written.Entrants,
	}).Debug("replay poll")
	st.report(res, written, nil)
	return true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// snapshot turns a stored poll into a snapshot; on failure it names the kind.
func (r *Replayer) snapshot(p storedPoll, rows map[storeKey]stored) (transform.RaceSnapshot, string, error) {
	if p.bad != "" {
		return transform.RaceSnapshot{}, "metadata", errors.New(p.bad)
	}
	row, ok := rows[p.key.store()]
	if !ok {
		return transform.RaceSnapshot{}, "missing", errors.New("stored poll no longer exists (pruned?)")
	}
	if row.err != nil {
		return transform.RaceSnapshot{}, "metadata", row.err
	}
	msg := row.msg
	snap, err := handlers.SnapshotFromFetched(msg)
	if err != nil {
		kind := "transform"
		var se *handlers.StageError
		if errors.As(err, &se) {
			kind = se.Kind
		}
		return transform.RaceSnapshot{}, kind, err
	}
	if snap.RaceID != p.raceID {
		return transform.RaceSnapshot{}, "metadata", fmt.Errorf("stored poll of race %q holds race %q", p.raceID, snap.RaceID)
	}
	return snap, "", nil
}

// withRetry runs fn holding lock (when not nil), retrying transient errors
// with backoff. fn gets a context that an interruption does not cancel,
// bounded by WriteTimeout, so a commit is never in doubt.
func (r *Replayer) withRetry(ctx context.Context, lock *sync.Mutex, fn func(context.Context) error) error {
	attempt := func() (struct{}, error) {
		if err := ctx.Err(); err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		if lock != nil {
			lock.Lock()
			defer lock.Unlock()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
		defer cancel()
		err := fn(wctx)
		if err != nil && !write.IsRetryable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	_, err := backoff.Retry(ctx, attempt,
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.2,
			Multiplier: 2, MaxInterval: 2 * time.Second}),
		backoff.WithMaxTries(uint(r.cfg.WriteRetries)+1), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			r.log.WithError(err).WithField("retry_in_ms", next.Milliseconds()).Warn("replay: transient write error, retrying")
		}))
	return err
}
