// Package replay re-derives the domain tables from a flow's stored topic:
// it reads the stored fetches (race.fetched, handled or not) through the
// flow's driver, plans them race by race in their original order, and
// applies each one through the same transform and write path the live flow
// takes, without a router, the API or a result message, so the live
// scheduler never sees a replayed poll. Each poll is written in its own
// short transaction together with the run's progress row in the ledger
// (replay_progress), which makes a run resumable without writing any poll
// twice.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/partitions"
	"github.com/raceflow/raceflow/stages/write"
)

// Errors of a replay run.
var (
	// ErrRunMismatch: the run id exists with another filter; a resumed run
	// must replay the same selection.
	ErrRunMismatch = errors.New("replay: run exists with a different filter")
	// ErrRunNotFound: resume of a run id that was never started.
	ErrRunNotFound = errors.New("replay: no such run")
	// ErrRunBusy: another process is running the same run.
	ErrRunBusy = errors.New("replay: run is being run by another process")
	// ErrNoStoredTopic: there is no stored topic of the namespace (its
	// backend never ran there, or another namespace or backend).
	ErrNoStoredTopic = errors.New("replay: no stored topic (race.fetched) to replay")
	// ErrIncomplete: some races stopped at a write failure; their remaining
	// polls are replayed when the run is resumed.
	ErrIncomplete = errors.New("replay: incomplete")
)

// Config shapes one replay run. Start from DefaultConfig.
type Config struct {
	Filter Filter
	// RunID names the run; empty starts a new run with a generated id. An
	// existing id continues that run after the last poll it wrote, provided
	// the filter is the same.
	RunID string
	// Resume continues RunID with the filter stored with it (Filter must be
	// zero or equal); the run must exist.
	Resume bool
	// Concurrency is how many races are replayed at once; each race's polls
	// are always replayed one after another in their original order.
	Concurrency int
	// BatchSize is how many stored payloads one read loads.
	BatchSize int
	// DryRun transforms everything and counts the rows the snapshots carry,
	// writing nothing (no progress either).
	DryRun bool
	// WriteRetries retries a poll's write on transient errors (deadlock,
	// serialization, lost connection) before the race is stopped.
	WriteRetries int
	// WriteTimeout bounds one poll's write. Interrupting a run lets the
	// writes in flight finish, so their commit is never in doubt.
	WriteTimeout time.Duration
}

// DefaultConfig replays everything retained, four races at a time.
func DefaultConfig() Config {
	return Config{Concurrency: 4, BatchSize: 64, WriteRetries: 3, WriteTimeout: time.Minute}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	errs := []error{c.Filter.Validate()}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("replay: concurrency %d must be within 1..256", c.Concurrency))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("replay: batch size must be at least 1"))
	}
	if c.WriteRetries < 0 {
		errs = append(errs, errors.New("replay: write retries must not be negative"))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("replay: write timeout must be positive"))
	}
	if c.Resume && c.RunID == "" {
		errs = append(errs, errors.New("replay: resume needs a run id"))
	}
	return errors.Join(errs...)
}

// Deps are what a replay runs on.
type Deps struct {
	// Pool is the database of record: the tables replayed into and the
	// run's ledger.
	Pool *pgxpool.Pool
	// Driver is the flow's driver, whose stored topic is replayed.
	Driver driver.Driver
	Logger logrus.FieldLogger
	// Progress, when set, is called after every poll, one call at a time;
	// it must not block for long (it runs on a replay worker).
	Progress func(Progress)
}

// Progress is where a run stands.
type Progress struct {
	RunID string
	// Total is the number of polls this invocation has to replay (polls an
	// earlier invocation of the run did are not included).
	Total int
	// Done counts polls handled so far, Failed included.
	Done    int
	Failed  int
	Elapsed time.Duration
	// Last is the poll just handled, marked Replay.
	Last handlers.ProcessResult
}

// Failure is a stored poll that could not be replayed.
type Failure struct {
	RaceID     string
	PollID     string
	Topic      string
	Offset     int64
	ObservedAt time.Time
	// Stage is "transform" (a bad stored payload or metadata: skipped, the
	// run goes on), "write" or "read" (the race stopped here).
	Stage  string
	Kind   string
	Reason string
	// Stopped says the race's remaining polls were not replayed; resuming
	// the run retries from this poll.
	Stopped bool
}

// Summary is what a replay run did.
type Summary struct {
	RunID  string
	DryRun bool
	// Resumed says the run existed and continued where it had stopped.
	Resumed bool
	Topics  []string
	// Races is the number of races with polls left to replay.
	Races int
	// Stored is the number of stored polls the filter selects.
	Stored int
	// AlreadyDone counts selected polls an earlier invocation of the run
	// handled; they are not replayed again.
	AlreadyDone int
	// Polls counts polls replayed now (written; in a dry run, transformed).
	Polls int
	// Rows sums write.Rows over the replayed polls: rows really inserted or
	// changed. In a dry run it counts the rows the snapshots carry instead,
	// an upper bound of what a write could change.
	Rows     write.Rows
	Failures []Failure
	// Complete says every selected poll has been handled; the run is marked
	// finished.
	Complete bool
	Duration time.Duration
}

// PollsPerSecond is the replay throughput.
func (s Summary) PollsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Polls) / s.Duration.Seconds()
}

// Replayer replays a stored topic into the domain tables.
type Replayer struct {
	cfg    Config
	deps   Deps
	log    logrus.FieldLogger
	parts  *partitions.Manager
	stored driver.StoredTopic
}

// New validates cfg; nothing runs until Run. A driver that keeps no stored
// topic is ErrNoStoredTopic.
func New(cfg Config, deps Deps) (*Replayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.Driver == nil || deps.Logger == nil {
		return nil, errors.New("replay: Deps needs Pool, Driver and Logger")
	}
	stored, err := deps.Driver.Stored()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoStoredTopic, err)
	}
	parts, err := partitions.New(deps.Pool, partitions.DefaultConfig())
	if err != nil {
		return nil, err
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID(time.Now())
	}
	return &Replayer{cfg: cfg, deps: deps, parts: parts, stored: stored,
		log: deps.Logger.WithFields(logrus.Fields{"replay": true, "run_id": cfg.RunID})}, nil
}

// RunID is the id of the run, generated when the config had none.
func (r *Replayer) RunID() string { return r.cfg.RunID }

// Run replays the selected polls. Interrupted (ctx ended), it lets the
// writes in flight finish and returns ctx's error with the summary so far;
// running the same run id again continues after the last poll written.
func (r *Replayer) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	sum := Summary{RunID: r.cfg.RunID, DryRun: r.cfg.DryRun}
	finish := func(err error) (Summary, error) {
		sum.Duration = time.Since(start)
		return sum, err
	}
	if !r.cfg.DryRun {
		release, err := r.lockRun(ctx)
		if err != nil {
			return finish(err)
		}
		defer release()
	}
	filter, resumed, err := r.openRun(ctx)
	if err != nil {
		return finish(err)
	}
	sum.Resumed = resumed
	topics, err := r.stored.Topics(ctx)
	if err != nil {
		return finish(err)
	}
	if len(topics) == 0 {
		return finish(ErrNoStoredTopic)
	}
	for _, t := range topics {
		sum.Topics = append(sum.Topics, t.String())
	}
	work, err := r.plan(ctx, &sum, topics, filter)
	if err != nil {
		return finish(err)
	}
	if !r.cfg.DryRun {
		if err := r.ensurePartitions(ctx, work); err != nil {
			return finish(err)
		}
	}
	total := 0
	for _, w := range work {
		total += len(w.polls)
	}
	r.log.WithFields(logrus.Fields{
		"topics": len(sum.Topics), "races": sum.Races, "stored": sum.Stored, "already_done": sum.AlreadyDone,
		"polls": total, "dry_run": r.cfg.DryRun, "resumed": sum.Resumed,
	}).Info("replay start")

	st := newRunState(r, &sum, start, total)
	r.execute(ctx, st, work)

	stopped := 0
	for _, f := range sum.Failures {
		if f.Stopped {
			stopped++
		}
	}
	var runErr error
	switch {
	case ctx.Err() != nil:
		runErr = ctx.Err()
	case stopped > 0:
		runErr = fmt.Errorf("%w: %d races stopped at a failure; resume run %s to retry them", ErrIncomplete, stopped, r.cfg.RunID)
	default:
		sum.Complete = true
		if !r.cfg.DryRun {
			runErr = r.finishRun(ctx)
		}
	}
	sum.Duration = time.Since(start)
	r.log.WithFields(logrus.Fields{
		"polls": sum.Polls, "failures": len(sum.Failures), "complete": sum.Complete,
		"duration_ms": sum.Duration.Milliseconds(), "polls_per_s": sum.PollsPerSecond(),
		"rows_meetings": sum.Rows.Meetings, "rows_races": sum.Rows.Races, "rows_entrants": sum.Rows.Entrants,
		"rows_race_pools": sum.Rows.RacePools, "rows_money_flow": sum.Rows.MoneyFlow, "rows_odds": sum.Rows.Odds,
		"rows_results": sum.Rows.Results, "rows_polls": sum.Rows.Polls,
	}).Info("replay end")
	return sum, runErr
}
