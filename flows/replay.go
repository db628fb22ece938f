package flows

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/partitions"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// Replay feeds stored fetches (race.fetched rows, acked or not) through
// transform and write again, straight from their tables: no router, no API,
// no race.processed message, so the live scheduler never sees a replayed
// poll. Each poll is written in its own short transaction together with the
// run's progress row, which is what makes a run resumable without writing
// any poll twice.

// Replay errors.
var (
	// ErrReplayRunMismatch: the run id exists with another filter; a resumed
	// run must replay the same selection.
	ErrReplayRunMismatch = errors.New("flows: replay run exists with a different filter")
	// ErrReplayRunNotFound: resume of a run id that was never started.
	ErrReplayRunNotFound = errors.New("flows: no such replay run")
	// ErrReplayRunBusy: another process is running the same replay run.
	ErrReplayRunBusy = errors.New("flows: replay run is being run by another process")
	// ErrNoStoredTopic: there is no stored topic of the namespace (its
	// backend never ran there, or another namespace or backend).
	ErrNoStoredTopic = errors.New("flows: no stored topic (race.fetched) to replay")
	// ErrReplayIncomplete: some races stopped at a write failure; their
	// remaining polls are replayed when the run is resumed.
	ErrReplayIncomplete = errors.New("flows: replay incomplete")
)

// ReplayFilter selects stored polls. Zero fields select everything retained.
type ReplayFilter struct {
	// From and To bound the observation instant, both inclusive; zero is open.
	From, To time.Time
	// RaceIDs limits the replay to these races.
	RaceIDs []string
	// MeetingID limits the replay to the races of one meeting: as the races
	// table says, or, for races the database does not know (a new
	// database), as their first stored poll says.
	MeetingID string
}

// Validate checks the filter.
func (f ReplayFilter) Validate() error {
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return fmt.Errorf("flows: replay filter: to %s is before from %s", f.To.Format(time.RFC3339), f.From.Format(time.RFC3339))
	}
	for _, id := range f.RaceIDs {
		if strings.TrimSpace(id) == "" {
			return errors.New("flows: replay filter: empty race id")
		}
	}
	return nil
}

// IsZero reports whether the filter selects everything.
func (f ReplayFilter) IsZero() bool {
	return f.From.IsZero() && f.To.IsZero() && len(f.RaceIDs) == 0 && f.MeetingID == ""
}

func (f ReplayFilter) inRange(t time.Time) bool {
	return (f.From.IsZero() || !t.Before(f.From)) && (f.To.IsZero() || !t.After(f.To))
}

// storedFilter is how a filter is kept with its run (replay_runs.filter).
type storedFilter struct {
	From      *time.Time `json:"from,omitempty"`
	To        *time.Time `json:"to,omitempty"`
	RaceIDs   []string   `json:"race_ids,omitempty"`
	MeetingID string     `json:"meeting_id,omitempty"`
}

// canonical renders the filter the same way whatever the order of its race
// ids or the zone of its instants, so a resumed run can be compared.
func (f ReplayFilter) canonical() storedFilter {
	s := storedFilter{MeetingID: f.MeetingID}
	if !f.From.IsZero() {
		t := f.From.UTC()
		s.From = &t
	}
	if !f.To.IsZero() {
		t := f.To.UTC()
		s.To = &t
	}
	if len(f.RaceIDs) > 0 {
		s.RaceIDs = slices.Compact(slices.Sorted(slices.Values(f.RaceIDs)))
	}
	return s
}

func (s storedFilter) filter() ReplayFilter {
	f := ReplayFilter{RaceIDs: s.RaceIDs, MeetingID: s.MeetingID}
	if s.From != nil {
		f.From = *s.From
	}
	if s.To != nil {
		f.To = *s.To
	}
	return f
}

func (s storedFilter) equal(o storedFilter) bool {
	a, errA := json.Marshal(s)
	b, errB := json.Marshal(o)
	return errA == nil && errB == nil && string(a) == string(b)
}

// ReplayConfig shapes one replay run. Start from DefaultReplayConfig.
type ReplayConfig struct {
	// Namespace of the flow whose stored topic is replayed.
	Namespace string
	Filter    ReplayFilter
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
	// BatchSize is how many stored payloads one query loads.
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
	// Backend is where the stored topic is: postgres (its tables) or nats
	// (its streams, on NATS).
	Backend string
	NATS    NATSConfig
}

// DefaultReplayConfig replays everything retained of namespace "race", four
// races at a time.
func DefaultReplayConfig() ReplayConfig {
	return ReplayConfig{
		Namespace:    DefaultConfig().Namespace,
		Concurrency:  4,
		BatchSize:    64,
		WriteRetries: 3,
		WriteTimeout: time.Minute,
		Backend:      BackendPostgres,
		NATS:         DefaultNATSConfig(),
	}
}

// Validate checks the configuration.
func (c ReplayConfig) Validate() error {
	errs := []error{c.Filter.Validate()}
	if err := validNamespace(c.Namespace); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("flows: replay concurrency %d must be within 1..256", c.Concurrency))
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("flows: replay batch size must be at least 1"))
	}
	if c.WriteRetries < 0 {
		errs = append(errs, errors.New("flows: replay write retries must not be negative"))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("flows: replay write timeout must be positive"))
	}
	switch c.Backend {
	case BackendPostgres:
	case BackendNATS:
		errs = append(errs, c.NATS.Validate())
	default:
		errs = append(errs, fmt.Errorf("flows: replay reads a stored topic on %s or %s, not %q", BackendPostgres, BackendNATS, c.Backend))
	}
	if c.Resume && c.RunID == "" {
		errs = append(errs, errors.New("flows: resume needs a run id"))
	}
	return errors.Join(errs...)
}

// validNamespace is Config.Validate's namespace rule, for replay and
// retention, which read the topic tables by name.
func validNamespace(ns string) error {
	if ns == "" || strings.ContainsFunc(ns, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("flows: namespace %q must be lower-case letters, digits, _ or -", ns)
	}
	return nil
}

// ReplayDeps are what a replay runs on.
type ReplayDeps struct {
	Pool   *pgxpool.Pool
	Logger logrus.FieldLogger
	// Progress, when set, is called after every poll, one call at a time;
	// it must not block for long (it runs on a replay worker).
	Progress func(ReplayProgress)
}

// ReplayProgress is where a run stands.
type ReplayProgress struct {
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

// ReplayFailure is a stored poll that could not be replayed.
type ReplayFailure struct {
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

// ReplaySummary is what a replay run did.
type ReplaySummary struct {
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
	Failures []ReplayFailure
	// Complete says every selected poll has been handled; the run is marked
	// finished.
	Complete bool
	Duration time.Duration
}

// PollsPerSecond is the replay throughput.
func (s ReplaySummary) PollsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Polls) / s.Duration.Seconds()
}

// Replayer replays a stored topic into the domain tables.
type Replayer struct {
	cfg   ReplayConfig
	deps  ReplayDeps
	log   logrus.FieldLogger
	parts *partitions.Manager
	src   storedSource
}

// NewReplayer validates cfg; nothing runs until Run.
func NewReplayer(cfg ReplayConfig, deps ReplayDeps) (*Replayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.Logger == nil {
		return nil, errors.New("flows: ReplayDeps needs Pool and Logger")
	}
	parts, err := partitions.New(deps.Pool, partitions.DefaultConfig())
	if err != nil {
		return nil, err
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID(time.Now())
	}
	r := &Replayer{cfg: cfg, deps: deps, parts: parts, src: pgSource{deps.Pool},
		log: deps.Logger.WithFields(logrus.Fields{"replay": true, "run_id": cfg.RunID})}
	if cfg.Backend == BackendNATS {
		r.src = &natsSource{cfg: cfg.NATS}
	}
	return r, nil
}

// Replay runs a replay of this engine's stored topic, in the engine's
// namespace and database, alongside the running flow or instead of it.
func (e *Engine) Replay(ctx context.Context, cfg ReplayConfig, progress func(ReplayProgress)) (ReplaySummary, error) {
	cfg.Namespace, cfg.NATS = e.cfg.Namespace, e.cfg.NATS
	cfg.Backend = e.cfg.Backend
	if cfg.Backend == BackendMemory {
		return ReplaySummary{}, fmt.Errorf("%w: the memory backend stores nothing", ErrNoStoredTopic)
	}
	r, err := NewReplayer(cfg, ReplayDeps{Pool: e.deps.Pool, Logger: e.log, Progress: progress})
	if err != nil {
		return ReplaySummary{}, err
	}
	return r.Run(ctx)
}

// RunID is the id of the run, generated when the config had none.
func (r *Replayer) RunID() string { return r.cfg.RunID }

func newRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "replay-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

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
	raceID string
	pollID string
	// bad explains metadata that makes the poll unreplayable.
	bad string
}

type raceWork struct {
	raceID string
	polls  []storedPoll
}

// Run replays the selected polls. Interrupted (ctx ended), it lets the
// writes in flight finish and returns ctx's error with the summary so far;
// running the same run id again continues after the last poll written.
func (r *Replayer) Run(ctx context.Context) (ReplaySummary, error) {
	start := time.Now()
	sum := ReplaySummary{RunID: r.cfg.RunID, DryRun: r.cfg.DryRun}
	finish := func(err error) (ReplaySummary, error) {
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
	defer r.src.close()
	if sum.Topics, err = r.src.topics(ctx, r.cfg.Namespace); err != nil {
		return finish(err)
	}
	if len(sum.Topics) == 0 {
		return finish(fmt.Errorf("%w: namespace %q on the %s backend", ErrNoStoredTopic, r.cfg.Namespace, r.cfg.Backend))
	}
	work, err := r.plan(ctx, &sum, filter)
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

	st := &runState{r: r, sum: &sum, locks: map[string]*sync.Mutex{}, start: start,
		progress: ReplayProgress{RunID: r.cfg.RunID, Total: total}}
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
		runErr = fmt.Errorf("%w: %d races stopped at a failure; resume run %s to retry them", ErrReplayIncomplete, stopped, r.cfg.RunID)
	default:
		sum.Complete = true
		if !r.cfg.DryRun {
			if _, err := r.deps.Pool.Exec(ctx, `UPDATE replay_runs SET finished_at = now() WHERE run_id = $1`, r.cfg.RunID); err != nil {
				runErr = fmt.Errorf("flows: replay: mark run finished: %w", err)
			}
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

// lockRun makes sure one process at a time runs a run id: two would each
// replay the polls the other has not committed yet.
func (r *Replayer) lockRun(ctx context.Context) (func(), error) {
	conn, err := r.deps.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("flows: replay: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "raceflow.replay:"+r.cfg.RunID).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("flows: replay: lock run: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, fmt.Errorf("%w: %s", ErrReplayRunBusy, r.cfg.RunID)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, "raceflow.replay:"+r.cfg.RunID); err != nil {
			// A session lock must not outlive the run on a pooled connection.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}

// openRun finds or records the run and returns the filter it replays.
func (r *Replayer) openRun(ctx context.Context) (ReplayFilter, bool, error) {
	want := r.cfg.Filter.canonical()
	var raw []byte
	err := r.deps.Pool.QueryRow(ctx, `SELECT filter::text FROM replay_runs WHERE run_id = $1`, r.cfg.RunID).Scan(&raw)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if r.cfg.Resume {
			return ReplayFilter{}, false, fmt.Errorf("%w: %s", ErrReplayRunNotFound, r.cfg.RunID)
		}
		if !r.cfg.DryRun {
			doc, err := json.Marshal(want)
			if err != nil {
				return ReplayFilter{}, false, fmt.Errorf("flows: replay: encode filter: %w", err)
			}
			if _, err := r.deps.Pool.Exec(ctx, `INSERT INTO replay_runs (run_id, filter) VALUES ($1, $2::jsonb)`, r.cfg.RunID, string(doc)); err != nil {
				return ReplayFilter{}, false, fmt.Errorf("flows: replay: record run: %w", err)
			}
		}
		return want.filter(), false, nil
	case err != nil:
		return ReplayFilter{}, false, fmt.Errorf("flows: replay: read run: %w", err)
	}
	var stored storedFilter
	if err := json.Unmarshal(raw, &stored); err != nil {
		return ReplayFilter{}, false, fmt.Errorf("flows: replay: run %s: stored filter: %w", r.cfg.RunID, err)
	}
	if (!r.cfg.Resume || !r.cfg.Filter.IsZero()) && !stored.equal(want) {
		return ReplayFilter{}, false, fmt.Errorf("%w: run %s replays %s", ErrReplayRunMismatch, r.cfg.RunID, raw)
	}
	return stored.filter(), true, nil
}

// storedTopics lists the stored topic (race.fetched) of every shard that
// has a table, whatever the shard count is now: polls stored under an
// earlier shard count are still there.
func storedTopics(ctx context.Context, pool *pgxpool.Pool, namespace string) ([]string, error) {
	prefix := "watermill_" + namespace + "." + kindFetched + "."
	like := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(prefix) + "%"
	rows, err := pool.Query(ctx, `
		SELECT c.relname FROM pg_class c
		WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace AND c.relname LIKE $1`, like)
	if err != nil {
		return nil, fmt.Errorf("flows: stored topics: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("flows: stored topics: %w", err)
	}
	type shardTopic struct {
		shard int
		topic string
	}
	var found []shardTopic
	for _, n := range names {
		shard, err := strconv.Atoi(strings.TrimPrefix(n, prefix))
		if err != nil || shard < 0 || strconv.Itoa(shard) != strings.TrimPrefix(n, prefix) {
			continue // not a shard table of ours
		}
		found = append(found, shardTopic{shard, strings.TrimPrefix(n, "watermill_")})
	}
	slices.SortFunc(found, func(a, b shardTopic) int { return cmp.Compare(a.shard, b.shard) })
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.topic
	}
	return out, nil
}

func topicTable(topic string) string { return pgx.Identifier{"watermill_" + topic}.Sanitize() }

// plan reads the metadata of the stored polls (not their payloads), applies
// the filter and the run's progress, and returns the races to replay, each
// with its polls in replay order, earliest race first.
func (r *Replayer) plan(ctx context.Context, sum *ReplaySummary, filter ReplayFilter) ([]*raceWork, error) {
	byRace := map[string][]storedPoll{}
	for _, topic := range sum.Topics {
		err := r.src.scan(ctx, topic, filter.RaceIDs, func(offset int64, raceID, pollID, observedS string) {
			p := storedPoll{key: pollKey{topic: topic, offset: offset}, raceID: raceID, pollID: pollID}
			if raceID == "" {
				sum.Failures = append(sum.Failures, ReplayFailure{Topic: topic, Offset: offset, PollID: pollID,
					Stage: handlers.StageTransform, Kind: "metadata", Reason: "stored poll has no race_id"})
				return
			}
			at, err := time.Parse(time.RFC3339Nano, observedS)
			if err != nil {
				// Unorderable: replayed first, where it is reported and skipped.
				p.bad = fmt.Sprintf("missing or bad %s %q", handlers.KeyObservedAt, observedS)
			} else if !filter.inRange(at) {
				return
			}
			// The progress row keeps the instant in PostgreSQL's microseconds
			// (pgx truncates); keys carry the same precision so a stored key
			// compares equal to the poll it came from.
			p.key.at = at.Truncate(time.Microsecond)
			byRace[raceID] = append(byRace[raceID], p)
		})
		if err != nil {
			return nil, fmt.Errorf("flows: replay: read %s: %w", topic, err)
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
		return fmt.Errorf("flows: replay: races of meeting %s: %w", meetingID, err)
	}
	known := map[string]string{}
	var raceID, mID string
	if _, err := pgx.ForEachRow(rows, []any{&raceID, &mID}, func() error {
		known[raceID] = mID
		return nil
	}); err != nil {
		return fmt.Errorf("flows: replay: races of meeting %s: %w", meetingID, err)
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
		if !ok {
			continue
		}
		msg, err := row.message()
		if err != nil {
			continue
		}
		if snap, err := handlers.SnapshotFromFetched(msg); err == nil {
			return snap.Race.MeetingID, nil
		}
	}
	return "", nil
}

// progressOf returns the last poll handled of every race of the run.
func (r *Replayer) progressOf(ctx context.Context) (map[string]pollKey, error) {
	rows, err := r.deps.Pool.Query(ctx, `
		SELECT race_id, last_observed_at, last_topic, last_offset FROM replay_progress WHERE run_id = $1`, r.cfg.RunID)
	if err != nil {
		return nil, fmt.Errorf("flows: replay: read progress: %w", err)
	}
	out := map[string]pollKey{}
	var (
		raceID string
		k      pollKey
	)
	if _, err := pgx.ForEachRow(rows, []any{&raceID, &k.at, &k.topic, &k.offset}, func() error {
		out[raceID] = k
		return nil
	}); err != nil {
		return nil, fmt.Errorf("flows: replay: read progress: %w", err)
	}
	return out, nil
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
		return fmt.Errorf("flows: replay: %w", err)
	}
	return nil
}

// fetchedRow is a stored fetch as loaded for replay.
type fetchedRow struct {
	uuid     string
	payload  []byte
	metadata string
}

func (f fetchedRow) message() (*message.Message, error) {
	md := message.Metadata{}
	if err := json.Unmarshal([]byte(f.metadata), &md); err != nil {
		return nil, fmt.Errorf("stored metadata: %w", err)
	}
	msg := message.NewMessage(f.uuid, f.payload)
	msg.Metadata = md
	msg.Metadata.Set(handlers.KeyReplay, "true")
	return msg, nil
}

// storeKey is where a poll is stored.
type storeKey struct {
	topic  string
	offset int64
}

func (k pollKey) store() storeKey { return storeKey{k.topic, k.offset} }

// load reads the payloads of polls, one query per topic.
func (r *Replayer) load(ctx context.Context, polls []storedPoll) (map[storeKey]fetchedRow, error) {
	byTopic := map[string][]int64{}
	for _, p := range polls {
		if p.bad == "" {
			byTopic[p.key.topic] = append(byTopic[p.key.topic], p.key.offset)
		}
	}
	out := make(map[storeKey]fetchedRow, len(polls))
	for topic, offsets := range byTopic {
		if err := r.src.load(ctx, topic, offsets, func(offset int64, row fetchedRow) {
			out[storeKey{topic, offset}] = row
		}); err != nil {
			return nil, fmt.Errorf("flows: replay: load %s: %w", topic, err)
		}
	}
	return out, nil
}

// runState is what the workers of one run share.
type runState struct {
	r     *Replayer
	start time.Time

	mu       sync.Mutex // guards sum, progress, locks; serialises Progress calls
	sum      *ReplaySummary
	progress ReplayProgress
	locks    map[string]*sync.Mutex
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
func (s *runState) report(res handlers.ProcessResult, rows write.Rows, fail *ReplayFailure) {
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
func (s *runState) stop(fail ReplayFailure) {
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
	jobs := make(chan *raceWork)
	var wg sync.WaitGroup
	for i := 0; i < min(r.cfg.Concurrency, len(work)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range jobs {
				r.replayRace(ctx, st, w)
			}
		}()
	}
feed:
	for _, w := range work {
		select {
		case jobs <- w:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
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
				st.stop(ReplayFailure{RaceID: w.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset,
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
func (r *Replayer) replayPoll(ctx context.Context, st *runState, p storedPoll, rows map[storeKey]fetchedRow) bool {
	res := handlers.ProcessResult{RaceID: p.raceID, PollID: p.pollID, Replay: true, Status: handlers.StatusSuccess}
	fail := ReplayFailure{RaceID: p.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset, ObservedAt: p.key.at}
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
				_, err := r.deps.Pool.Exec(wctx, sqlReplayProgress, r.cfg.RunID, p.raceID, p.key.at, p.key.topic, p.key.offset)
				return err
			}); err != nil {
				if ctx.Err() == nil {
					st.stop(ReplayFailure{RaceID: p.raceID, PollID: p.pollID, Topic: p.key.topic, Offset: p.key.offset,
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
		res.Rows = rowCounts(rows)
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
		kind := "database"
		if errors.Is(err, write.ErrPartitionMissing) {
			kind = "partition_missing"
		}
		fail.Stage, fail.Kind, fail.Reason = handlers.StageWrite, kind, err.Error()
		st.stop(fail)
		entry.WithField("kind", kind).WithError(err).Error("replay: write failed; race stopped")
		return false
	}
	res.Rows = rowCounts(written)
	entry.WithFields(logrus.Fields{
		"transform_ms": res.Timings.TransformMS, "write_ms": res.Timings.WriteMS,
		"rows_money_flow": written.MoneyFlow, "rows_odds": written.Odds, "rows_entrants": written.Entrants,
	}).Debug("replay poll")
	st.report(res, written, nil)
	return true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func rowCounts(w write.Rows) handlers.RowCounts {
	return handlers.RowCounts{Meetings: w.Meetings, Races: w.Races, Entrants: w.Entrants, RacePools: w.RacePools,
		MoneyFlow: w.MoneyFlow, Odds: w.Odds, Results: w.Results}
}

// snapshot turns a stored poll into a snapshot; on failure it names the kind.
func (r *Replayer) snapshot(p storedPoll, rows map[storeKey]fetchedRow) (transform.RaceSnapshot, string, error) {
	if p.bad != "" {
		return transform.RaceSnapshot{}, "metadata", errors.New(p.bad)
	}
	row, ok := rows[p.key.store()]
	if !ok {
		return transform.RaceSnapshot{}, "missing", errors.New("stored poll no longer exists (pruned?)")
	}
	msg, err := row.message()
	if err != nil {
		return transform.RaceSnapshot{}, "metadata", err
	}
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

// withRetry runs fn holding lock (when not nil),
// retrying transient errors. fn gets a context that an interruption does
// not cancel, bounded by WriteTimeout, so a commit is never in doubt.
func (r *Replayer) withRetry(ctx context.Context, lock *sync.Mutex, fn func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := func() error {
			if lock != nil {
				lock.Lock()
				defer lock.Unlock()
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
			defer cancel()
			return fn(wctx)
		}()
		if err == nil || !write.IsRetryable(err) || attempt >= r.cfg.WriteRetries {
			return err
		}
		r.log.WithError(err).WithField("attempt", attempt+1).Warn("replay: transient write error, retrying")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// sqlReplayProgress records that a poll of a race has been handled; it runs
// in the poll's write transaction.
const sqlReplayProgress = `
INSERT INTO replay_progress AS p (run_id, race_id, last_observed_at, last_topic, last_offset, polls)
VALUES ($1, $2, $3, $4, $5, 1)
ON CONFLICT (run_id, race_id) DO UPDATE SET
    last_observed_at = EXCLUDED.last_observed_at,
    last_topic       = EXCLUDED.last_topic,
    last_offset      = EXCLUDED.last_offset,
    polls            = p.polls + 1,
    updated_at       = now()`

// beginReplayTx starts a poll's transaction: READ COMMITTED like the live
// write stage, and without waiting for the WAL flush at commit. That is
// safe here: a crash can only lose the last few commits whole, data and
// progress together, and a resumed run redoes exactly those.
const beginReplayTx = `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off`

// writePoll writes one poll and its progress in one transaction.
func (r *Replayer) writePoll(ctx context.Context, snap transform.RaceSnapshot, p storedPoll) (write.Rows, error) {
	tx, err := r.deps.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginReplayTx})
	if err != nil {
		return write.Rows{}, fmt.Errorf("flows: replay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := write.WriteWith(ctx, tx, snap, write.Options{PollID: p.pollID})
	if err != nil {
		return rows, err
	}
	if _, err := tx.Exec(ctx, sqlReplayProgress, r.cfg.RunID, p.raceID, p.key.at, p.key.topic, p.key.offset); err != nil {
		return write.Rows{}, fmt.Errorf("flows: replay: progress: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return write.Rows{}, fmt.Errorf("flows: replay: commit: %w", err)
	}
	return rows, nil
}
