// Package replay re-derives the domain tables from what the flow stored: the
// raw event fetches of its stored topic (race.fetched, read through the
// flow's driver) and the raw meetings lists the daily baseline stored
// (stages/baseline). It applies them in their observation order through the
// paths the live flow takes, the write stage's (handlers.WritePolls, the
// batch form of handlers.WritePoll) and the baseline's (baseline.Upsert),
// without a router, the API or a result message, so the live scheduler never
// sees a replayed poll.
//
// A run is one sequence of stored polls and meetings lists in observation
// order (filter, plan). Payloads are read and transformed ahead of the
// writer, several at a time; the writer applies the sequence in order,
// consecutive polls (of any races) in one transaction per batch, each list
// in its own, and every transaction also records how far each race got in
// the run's ledger (replay_progress), which makes a run resumable without
// writing any poll twice (execute, ledger). A rebuild (Config.Rebuild)
// instead empties the derived rows of each selected race and re-derives
// them, one transaction per race (rebuild).
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
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/baseline"
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
	// Rebuild empties the derived rows of every race the filter selects
	// and re-derives them from all of the race's stored polls (and the
	// stored meetings lists), one transaction per race; see rebuild.go for
	// what a race's derived rows are. The filter selects races: a race with
	// at least one stored poll it selects is rebuilt whole.
	Rebuild bool
	// Concurrency is how many stored polls are decoded and transformed at
	// once (a rebuild: how many races are rebuilt at once, one race per
	// meeting at a time). Writes always follow the observation order.
	Concurrency int
	// BatchSize is how many stored polls one read loads and, at most, one
	// write transaction holds.
	BatchSize int
	// Writers is how many write transactions run at once, each holding the
	// polls of other meetings than the others (a rebuild: see Concurrency).
	// More writers use more database connections, and more statements per
	// poll (a statement of a batch serves the polls of its meetings), so
	// past the database's spare cores they cost more than they bring.
	Writers int
	// Meetings selects the meetings of the stored meetings lists as the
	// live baseline did (its default, baseline.DefaultFilter, when zero).
	Meetings baseline.Filter
	// DryRun transforms everything and counts the rows the snapshots carry,
	// writing nothing (no progress either).
	DryRun bool
	// WriteRetries retries a write transaction on transient errors
	// (deadlock, serialization, lost connection) before its races are
	// stopped.
	WriteRetries int
	// WriteTimeout bounds one write transaction. Interrupting a run lets
	// the write in flight finish, so its commit is never in doubt.
	WriteTimeout time.Duration
	// Alerts are the rules every written poll is judged by in its
	// transaction, as the detect stage judges it (handlers.DetectPoll), so
	// the same stored polls store the same alerts.
	Alerts alerts.Config
	// Notify publishes the alerts a run stores to the flow's alerts topic
	// once their transaction has committed, for a running flow's notifier
	// to deliver. Off, a replay calls no webhook.
	Notify bool
}

// DefaultConfig replays everything retained, in batches of 256 polls
// written by two transactions at once, two stored polls transformed at
// once: the fastest of the settings measured on two cores
// (docs/BENCHMARKS.md), where the writes, not the transforms, bound a run.
func DefaultConfig() Config {
	return Config{Concurrency: 2, BatchSize: 256, Writers: 2, WriteRetries: 3, WriteTimeout: time.Minute,
		Meetings: baseline.DefaultFilter(), Alerts: alerts.DefaultConfig()}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	errs := []error{c.Filter.Validate(), c.Meetings.Validate(), c.Alerts.Validate()}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("replay: concurrency %d must be within 1..256", c.Concurrency))
	}
	if c.BatchSize < 1 || c.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("replay: batch size %d must be within 1..10000", c.BatchSize))
	}
	if c.Writers < 1 || c.Writers > 64 {
		errs = append(errs, fmt.Errorf("replay: writers %d must be within 1..64", c.Writers))
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
	// Progress, when set, is called for every poll once its transaction
	// has committed (or it was skipped), one call at a time; it must not
	// block for long (it runs on the writer).
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
	// run goes on), "write" (a snapshot the write stage refuses before the
	// database: skipped; a write that failed: the race stopped here),
	// "read" (a rebuilt race's stored polls could not be read: stopped),
	// "baseline" (a stored meetings list, RaceID empty, Topic
	// "baseline_responses": unreadable or refused rows skipped, a failed
	// write stops the lists) or "rebuild" (a race left as it was because
	// its ledger holds polls that are no longer stored: stopped).
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
	// Rebuild says the run rebuilds races (Config.Rebuild).
	Rebuild bool
	// Races is the number of races with polls left to replay (a rebuild:
	// races to rebuild).
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
	Rows write.Rows
	// Alerts counts the alerts the replayed polls stored (0 in a dry run).
	Alerts int
	// Notified counts the alerts published for delivery (Config.Notify).
	Notified int
	// Lists is what the stored meetings lists did.
	Lists    Lists
	Failures []Failure
	// Complete says every selected poll has been handled; the run is marked
	// finished.
	Complete bool
	Duration time.Duration
}

// Lists counts the stored meetings lists a run applied and the rows they
// changed (baseline.Counts; in a dry run, the rows they carry).
type Lists struct {
	// Stored is the number of stored lists the run selects.
	Stored int
	// Applied counts lists applied now (in a dry run, decoded); a rebuild
	// applies a list once for every race it rebuilds that the list names.
	Applied  int
	Meetings int
	Races    int
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

// Run replays the selected polls and meetings lists (or rebuilds the
// selected races). Interrupted (ctx ended), it lets the write in flight
// finish and returns ctx's error with the summary so far; running the same
// run id again continues after the last poll written.
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
	filter, rebuild, resumed, err := r.openRun(ctx)
	if err != nil {
		return finish(err)
	}
	sum.Resumed, sum.Rebuild = resumed, rebuild
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
	pl, err := r.plan(ctx, &sum, topics, filter, rebuild)
	if err != nil {
		return finish(err)
	}
	if !r.cfg.DryRun {
		if err := r.ensurePartitions(ctx, pl.instants()); err != nil {
			return finish(err)
		}
	}
	total := pl.polls()
	r.log.WithFields(logrus.Fields{
		"topics": len(sum.Topics), "races": sum.Races, "stored": sum.Stored, "already_done": sum.AlreadyDone,
		"polls": total, "lists": sum.Lists.Stored, "dry_run": r.cfg.DryRun, "resumed": sum.Resumed, "rebuild": rebuild,
	}).Info("replay start")

	st := newRunState(r, &sum, start, total)
	var runErr error
	if rebuild {
		r.rebuild(ctx, st, pl)
	} else {
		runErr = r.execute(ctx, st, pl.events)
	}

	stopped := 0
	for _, f := range sum.Failures {
		if f.Stopped {
			stopped++
		}
	}
	switch {
	case ctx.Err() != nil:
		runErr = ctx.Err()
	case runErr != nil:
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
		"polls": sum.Polls, "lists": sum.Lists.Applied, "failures": len(sum.Failures), "complete": sum.Complete,
		"duration_ms": sum.Duration.Milliseconds(), "polls_per_s": sum.PollsPerSecond(),
		"rows_meetings": sum.Rows.Meetings, "rows_races": sum.Rows.Races, "rows_entrants": sum.Rows.Entrants,
		"rows_race_pools": sum.Rows.RacePools, "rows_money_flow": sum.Rows.MoneyFlow, "rows_odds": sum.Rows.Odds,
		"rows_results": sum.Rows.Results, "rows_polls": sum.Rows.Polls,
		"list_meetings": sum.Lists.Meetings, "list_races": sum.Lists.Races,
	}).Info("replay end")
	return sum, runErr
}
