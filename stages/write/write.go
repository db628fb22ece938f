// Package write persists one poll of one race (a transform.RaceSnapshot)
// inside one PostgreSQL transaction: state-table upserts, the race_polls
// ledger row, money-flow history with incremental amounts derived in SQL,
// odds history with change detection in SQL, and results.
//
// The stored result depends only on the set of polls written, not on how
// often or in which order they arrive: redelivery is a no-op, and a late
// earlier poll is slotted into history with its neighbours corrected (see
// Write for the one documented exception in odds history). All statements of
// a poll go to the server in one pipelined batch, so a poll costs one round
// trip. The stage never runs DDL: partitions must exist beforehand.
package write

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/transform"
)

// Table names, also the keys of Rows.Durations.
const (
	TableMeetings    = "meetings"
	TableRaces       = "races"
	TableEntrants    = "entrants"
	TableRacePools   = "race_pools"
	TableRacePolls   = "race_polls"
	TableMoneyFlow   = "money_flow_history"
	TableOdds        = "odds_history"
	TableRaceResults = "race_results"
)

// Extra keys of Rows.Durations besides the table names.
const (
	// DurationTotal is the client-side wall time of the whole batch.
	DurationTotal = "total"
	// DurationCommit is the commit's wall time (WriteTx only).
	DurationCommit = "commit"
)

// Rows says what one poll changed. Counts are rows really inserted or
// changed: an upsert whose values equal the stored row counts 0, and so does
// a redelivered history row.
type Rows struct {
	Meetings  int `json:"meetings"`
	Races     int `json:"races"`
	Entrants  int `json:"entrants"`
	RacePools int `json:"race_pools"`
	// MoneyFlow counts inserted money_flow_history rows.
	MoneyFlow int `json:"money_flow"`
	// MoneyFlowCorrected counts stored later rows whose increments were
	// recomputed because this poll slotted in before them.
	MoneyFlowCorrected int `json:"money_flow_corrected"`
	// Odds counts inserted odds_history rows.
	Odds int `json:"odds"`
	// OddsDeleted counts stored later odds rows removed because, next to
	// this poll's earlier value, they are no longer changes.
	OddsDeleted int `json:"odds_deleted"`
	Results     int `json:"results"`
	// Polls is 1 when the race_polls ledger row was new, 0 on redelivery.
	Polls int `json:"polls"`
	// Durations holds each table's execution time as the server measured it
	// (keys are the Table* names; layers of one table add up), DurationTotal
	// and, from WriteTx, DurationCommit. Per-statement times rely on the
	// extended protocol, pgx's default: under the simple protocol the whole
	// batch is one query and the times accumulate.
	Durations map[string]time.Duration `json:"durations"`
}

// Options adjust one write.
type Options struct {
	// PollID is recorded in the race_polls ledger; empty derives
	// race_id + "@" + observed_at (RFC 3339, nanoseconds, UTC).
	PollID string
}

// Beginner opens a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx (for a
// savepoint) satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// PollID is the poll id Write records when none is given.
func PollID(snap transform.RaceSnapshot) string {
	return snap.RaceID + "@" + snap.ObservedAt.UTC().Format(time.RFC3339Nano)
}

// Write persists one poll inside the caller's transaction, so the flow can
// commit it together with its next message. On error the transaction is
// unusable and the caller must roll it back; the error is a *WriteError and
// the returned Rows carry no counts.
//
// Semantics:
//   - meetings, races, entrants, race_pools and race_results are upserted:
//     a row changes only when a value differs (its updated_at stays put
//     otherwise), a value the poll lacks never replaces a stored one, and a
//     poll older than the race's latest ledger entry does not update them;
//   - money_flow_history increments are the change since the latest earlier
//     poll of that race and runner, kept right when polls arrive late;
//   - odds_history gets a row only when the odds moved by more than 0.01
//     from the latest earlier row; a late earlier poll deletes later rows
//     that are no longer changes. Known residual limit: an observation
//     dropped earlier (within 0.01 of its then-predecessor) cannot be
//     resurrected when a later-arriving earlier poll would make it a change,
//     e.g. 2.50@t1, 2.51@t2, 2.52@t3 stores t1 and t3 in order but only t1
//     when they arrive t2, t3, t1.
func Write(ctx context.Context, tx pgx.Tx, snap transform.RaceSnapshot) (Rows, error) {
	return WriteWith(ctx, tx, snap, Options{})
}

// WriteWith is Write with options.
func WriteWith(ctx context.Context, tx pgx.Tx, snap transform.RaceSnapshot, opts Options) (Rows, error) {
	rows := Rows{Durations: make(map[string]time.Duration, 10)}
	if err := validate(snap); err != nil {
		return rows, &WriteError{Table: "snapshot", Err: err}
	}
	pollID := opts.PollID
	if pollID == "" {
		pollID = PollID(snap)
	}
	stmts, err := statements(snap, pollID, &rows)
	if err != nil {
		return rows, &WriteError{Table: "snapshot", Err: fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)}
	}

	start := time.Now()
	batch := &pgx.Batch{}
	for _, s := range stmts {
		batch.Queue(s.sql, s.args...)
	}
	br := tx.SendBatch(ctx, batch)
	var vals [3]int64 // up to two counters and the elapsed microseconds
	for _, s := range stmts {
		dest := make([]any, 0, len(vals))
		for i := 0; i <= len(s.counts); i++ {
			dest = append(dest, &vals[i])
		}
		if err := br.QueryRow().Scan(dest...); err != nil {
			_ = br.Close()
			return failed(rows, newWriteError(s.table, err))
		}
		// Several layers of one history table add up.
		for i, c := range s.counts {
			*c += int(vals[i])
		}
		rows.Durations[s.table] += time.Duration(vals[len(s.counts)]) * time.Microsecond
	}
	if err := br.Close(); err != nil {
		return failed(rows, newWriteError("batch", err))
	}
	rows.Durations[DurationTotal] = time.Since(start)
	return rows, nil
}

// WriteTx writes one poll in its own transaction and commits it. Any error
// rolls the whole poll back.
func WriteTx(ctx context.Context, db Beginner, snap transform.RaceSnapshot) (Rows, error) {
	return WriteTxWith(ctx, db, snap, Options{})
}

// WriteTxWith is WriteTx with options.
func WriteTxWith(ctx context.Context, db Beginner, snap transform.RaceSnapshot, opts Options) (Rows, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Rows{}, newWriteError("begin", err)
	}
	rows, err := WriteWith(ctx, tx, snap, opts)
	if err != nil {
		// The caller's context may be what failed; the rollback must still
		// reach the server so the connection returns to the pool clean.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
		return rows, err
	}
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return failed(rows, newWriteError("commit", err))
	}
	rows.Durations[DurationCommit] = time.Since(start)
	return rows, nil
}

// failed drops the counts of a write that will be rolled back (nothing of it
// is stored) but keeps the durations, which help explain the failure.
func failed(rows Rows, err error) (Rows, error) {
	return Rows{Durations: rows.Durations}, err
}

// stmt is one statement of the batch and where its counters go.
type stmt struct {
	table  string
	sql    string
	args   []any
	counts []*int // Rows fields the statement's counters add to
}

func statements(snap transform.RaceSnapshot, pollID string, rows *Rows) ([]stmt, error) {
	obs := snap.ObservedAt
	var out []stmt
	if m := snap.Meeting; m != nil {
		out = append(out, stmt{TableMeetings, sqlMeetings, []any{
			m.MeetingID, m.MeetingName, m.Country, m.State, m.RaceType, m.Category, m.Date,
			m.TrackCondition, m.ToteStatus, obs,
		}, []*int{&rows.Meetings}})
	}
	r := snap.Race
	out = append(out, stmt{TableRaces, sqlRaces, []any{
		r.RaceID, r.MeetingID, r.Name, r.RaceNumber, r.StartTime, r.Status, r.ActualStart, r.RaceDateNZ,
		r.StartTimeNZ, r.Distance, r.TrackCondition, r.TrackSurface, r.TrackDirection, r.RailPosition, r.Weather,
		r.Type, r.TotalPrizeMoney, r.EntrantCount, r.FieldSize, r.PositionsPaid, r.SilkURL, r.SilkBaseURL,
		jsonArg(r.VideoChannels), r.APIGeneratedAt, obs,
	}, []*int{&rows.Races}})
	if len(snap.Entrants) > 0 {
		out = append(out, stmt{TableEntrants, sqlEntrants, entrantArgs(snap.Entrants, obs), []*int{&rows.Entrants}})
	}
	if p := snap.RacePools; p != nil {
		out = append(out, stmt{TableRacePools, sqlRacePools, []any{
			p.RaceID, p.WinPoolTotal, p.PlacePoolTotal, p.QuinellaPoolTotal, p.TrifectaPoolTotal,
			p.ExactaPoolTotal, p.First4PoolTotal, p.TotalRacePool, p.Currency, p.DataQualityScore,
			p.ExtractedPools, p.Source, obs,
		}, []*int{&rows.RacePools}})
	}
	quality, err := json.Marshal(snap.Quality)
	if err != nil {
		return nil, fmt.Errorf("quality: %w", err)
	}
	out = append(out, stmt{TableRacePolls, sqlRacePolls, []any{
		snap.RaceID, obs, pollID, r.Status, r.APIGeneratedAt, snap.Quality.Score, string(quality),
	}, []*int{&rows.Polls}})
	mfSeries := func(m transform.MoneyFlow) [2]string { return [2]string{m.RaceID, m.EntrantID} }
	mfTime := func(a, b transform.MoneyFlow) int {
		return cmp.Or(a.PollingTimestamp.Compare(b.PollingTimestamp), a.EventTimestamp.Compare(b.EventTimestamp))
	}
	for _, l := range layers(snap.MoneyFlow, mfSeries, mfTime) {
		out = append(out, stmt{TableMoneyFlow, sqlMoneyFlow, moneyFlowArgs(l),
			[]*int{&rows.MoneyFlow, &rows.MoneyFlowCorrected}})
	}
	oddsSeries := func(o transform.Odds) [2]string { return [2]string{o.EntrantID, o.Type} }
	oddsTime := func(a, b transform.Odds) int { return a.EventTimestamp.Compare(b.EventTimestamp) }
	for _, l := range layers(snap.Odds, oddsSeries, oddsTime) {
		out = append(out, stmt{TableOdds, sqlOdds, oddsArgs(l), []*int{&rows.Odds, &rows.OddsDeleted}})
	}
	if res := snap.Results; res != nil {
		var status *string
		if res.ResultStatus != "" {
			status = &res.ResultStatus
		}
		var at *time.Time
		if !res.ResultTime.IsZero() {
			at = &res.ResultTime
		}
		out = append(out, stmt{TableRaceResults, sqlRaceResults, []any{
			res.RaceID, res.ResultsAvailable, jsonArg(res.ResultsData), jsonArg(res.DividendsData),
			jsonArg(res.FixedOddsData), status, res.PhotoFinish, res.StewardsInquiry, res.ProtestLodged, at, obs,
		}, []*int{&rows.Results}})
	}
	return out, nil
}

// jsonArg sends a JSON document as text (cast to jsonb in SQL), and an absent
// one as NULL rather than the JSON literal null.
func jsonArg(raw json.RawMessage) *string {
	if len(raw) == 0 {
		return nil
	}
	s := string(raw)
	return &s
}

// column is one unnest() array: field f of every row.
func column[R, T any](rows []R, f func(R) T) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = f(r)
	}
	return out
}

// entrantArgs are sqlEntrants' parameters: one array per column, in the
// statement's column order, then the poll's instant.
func entrantArgs(es []transform.Entrant, obs time.Time) []any {
	type E = transform.Entrant
	return []any{
		column(es, func(e E) string { return e.EntrantID }),
		column(es, func(e E) string { return e.RaceID }),
		column(es, func(e E) string { return e.Name }),
		column(es, func(e E) int { return e.RunnerNumber }),
		column(es, func(e E) *int { return e.Barrier }),
		column(es, func(e E) bool { return e.IsScratched }),
		column(es, func(e E) bool { return e.IsLateScratched }),
		column(es, func(e E) bool { return e.IsEmergency }),
		column(es, func(e E) *time.Time { return e.ScratchTime }),
		column(es, func(e E) *float64 { return e.FixedWinOdds }),
		column(es, func(e E) *float64 { return e.FixedPlaceOdds }),
		column(es, func(e E) *float64 { return e.PoolWinOdds }),
		column(es, func(e E) *float64 { return e.PoolPlaceOdds }),
		column(es, func(e E) *float64 { return e.HoldPercentage }),
		column(es, func(e E) *float64 { return e.BetPercentage }),
		column(es, func(e E) *float64 { return e.WinPoolPercentage }),
		column(es, func(e E) *float64 { return e.PlacePoolPercentage }),
		column(es, func(e E) *int64 { return e.WinPoolAmount }),
		column(es, func(e E) *int64 { return e.PlacePoolAmount }),
		column(es, func(e E) *string { return e.Jockey }),
		column(es, func(e E) *string { return e.TrainerName }),
		column(es, func(e E) *string { return e.SilkColours }),
		column(es, func(e E) *string { return e.SilkURL64 }),
		column(es, func(e E) *string { return e.SilkURL128 }),
		column(es, func(e E) bool { return e.Favourite }),
		column(es, func(e E) bool { return e.Mover }),
		column(es, func(e E) *string { return jsonArg(e.RunnerChange) }),
		obs,
	}
}

// moneyFlowArgs are sqlMoneyFlow's parameters, in its column order.
func moneyFlowArgs(ms []transform.MoneyFlow) []any {
	type M = transform.MoneyFlow
	return []any{
		column(ms, func(m M) string { return m.RaceID }),
		column(ms, func(m M) string { return m.EntrantID }),
		column(ms, func(m M) time.Time { return m.PollingTimestamp }),
		column(ms, func(m M) time.Time { return m.EventTimestamp }),
		column(ms, func(m M) int { return m.TimeToStart }),
		column(ms, func(m M) int { return m.TimeInterval }),
		column(ms, func(m M) string { return m.IntervalType }),
		column(ms, func(m M) float64 { return m.HoldPercentage }),
		column(ms, func(m M) float64 { return m.BetPercentage }),
		column(ms, func(m M) *float64 { return m.WinPoolPercentage }),
		column(ms, func(m M) *float64 { return m.PlacePoolPercentage }),
		column(ms, func(m M) int64 { return m.WinPoolAmount }),
		column(ms, func(m M) int64 { return m.PlacePoolAmount }),
		column(ms, func(m M) int64 { return m.TotalPoolAmount }),
	}
}

// oddsArgs are sqlOdds' parameters, in its column order.
func oddsArgs(in []transform.Odds) []any {
	type O = transform.Odds
	return []any{
		column(in, func(o O) string { return o.RaceID }),
		column(in, func(o O) string { return o.EntrantID }),
		column(in, func(o O) string { return o.Type }),
		column(in, func(o O) float64 { return o.Odds }),
		column(in, func(o O) time.Time { return o.EventTimestamp }),
	}
}

// layers splits history rows so that each layer holds at most one row per
// series (key) and layer k holds every series' k-th row by time. Written
// layer by layer, a series' rows are processed oldest first and each
// statement sees the rows of the layers before it, which a single statement
// cannot (it does not see its own inserts). A poll normally has one row per
// series, so this returns the rows unchanged as one layer.
func layers[T any, K comparable](rows []T, key func(T) K, byTime func(a, b T) int) [][]T {
	if len(rows) == 0 {
		return nil
	}
	series := make(map[K][]T, len(rows))
	order := make([]K, 0, len(rows))
	for _, r := range rows {
		k := key(r)
		if _, ok := series[k]; !ok {
			order = append(order, k)
		}
		series[k] = append(series[k], r)
	}
	if len(order) == len(rows) {
		return [][]T{rows}
	}
	var out [][]T
	for _, k := range order {
		s := series[k]
		slices.SortStableFunc(s, byTime)
		for i, r := range s {
			if i == len(out) {
				out = append(out, nil)
			}
			out[i] = append(out[i], r)
		}
	}
	return out
}

// validate rejects snapshots whose stored result would be ill-defined.
func validate(s transform.RaceSnapshot) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if s.RaceID == "" {
		bad("empty race_id")
	}
	if s.ObservedAt.IsZero() {
		bad("zero observed_at")
	}
	if s.Race.RaceID != s.RaceID {
		bad("race.race_id %q differs from the snapshot's %q", s.Race.RaceID, s.RaceID)
	}
	if s.Meeting != nil && s.Meeting.MeetingID != s.Race.MeetingID {
		bad("meeting %q is not the race's meeting %q", s.Meeting.MeetingID, s.Race.MeetingID)
	}
	if s.RacePools != nil && s.RacePools.RaceID != s.RaceID {
		bad("race_pools.race_id %q differs from %q", s.RacePools.RaceID, s.RaceID)
	}
	if s.Results != nil && s.Results.RaceID != s.RaceID {
		bad("results.race_id %q differs from %q", s.Results.RaceID, s.RaceID)
	}
	seenEntrant := make(map[string]bool, len(s.Entrants))
	for _, e := range s.Entrants {
		if e.RaceID != s.RaceID || e.EntrantID == "" || seenEntrant[e.EntrantID] {
			bad("entrant %q: empty, duplicate or of race %q", e.EntrantID, e.RaceID)
		}
		seenEntrant[e.EntrantID] = true
	}
	type mfKey struct {
		entrant        string
		polling, event int64
	}
	seenMF := make(map[mfKey]bool, len(s.MoneyFlow))
	for _, m := range s.MoneyFlow {
		k := mfKey{m.EntrantID, m.PollingTimestamp.UnixMicro(), m.EventTimestamp.UnixMicro()}
		if m.RaceID != s.RaceID || m.EntrantID == "" || seenMF[k] {
			bad("money_flow %q@%s: empty, duplicate or of race %q", m.EntrantID, m.PollingTimestamp.Format(time.RFC3339Nano), m.RaceID)
		}
		seenMF[k] = true
	}
	type oddsKey struct {
		entrant, typ string
		at           int64
	}
	seenOdds := make(map[oddsKey]bool, len(s.Odds))
	for _, o := range s.Odds {
		k := oddsKey{o.EntrantID, o.Type, o.EventTimestamp.UnixMicro()}
		if o.RaceID != s.RaceID || o.EntrantID == "" || seenOdds[k] {
			bad("odds %q/%s@%s: empty, duplicate or of race %q", o.EntrantID, o.Type, o.EventTimestamp.Format(time.RFC3339Nano), o.RaceID)
		}
		seenOdds[k] = true
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidSnapshot, errors.Join(errs...))
}
