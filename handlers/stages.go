package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/transform"
	"github.com/raceflow/raceflow/stages/write"
)

// Fetcher fetches one race event; *nztab.Client implements it.
type Fetcher interface {
	FetchEvent(ctx context.Context, raceID string) (*nztab.Fetched, error)
}

// Fetch returns the fetch handler: race.poll → race.fetched. The raw body
// is kept, gzip-compressed, with its observation instant, so the poll can be
// replayed without the API.
func Fetch(f Fetcher, h *Handover) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		raceID := msg.Metadata.Get(KeyRaceID)
		pollID := msg.Metadata.Get(KeyPollID)
		got, err := f.FetchEvent(msg.Context(), raceID)
		if err != nil {
			return nil, classifyFetch(raceID, pollID, err)
		}
		body, err := gzipBytes(got.Body)
		if err != nil {
			return nil, &FetchError{StageError{Stage: StageFetch, RaceID: raceID, PollID: pollID, Kind: KindCompress, Err: err}}
		}
		out := next(msg, body)
		out.Metadata.Set(KeyObservedAt, formatTime(got.ObservedAt))
		if !got.GeneratedAt.IsZero() {
			out.Metadata.Set(KeyAPIGenerated, formatTime(got.GeneratedAt))
		}
		out.Metadata.Set(KeyEncoding, "gzip")
		h.putEvent(out.Metadata, got.Event)
		return []*message.Message{out}, nil
	}
}

func classifyFetch(raceID, pollID string, err error) error {
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !nztab.IsTemporary(err):
		return err // shutdown or ack deadline: redeliver, never poison
	case errors.Is(err, nztab.ErrRaceNotFound):
		return &Skip{Stage: StageFetch, Kind: KindNotFound, Err: err}
	case nztab.IsTemporary(err):
		// The client already retried with backoff; the next tick is the retry.
		return &Skip{Stage: StageFetch, Kind: KindUnreachable, Retryable: true, Err: err}
	default:
		kind := KindInvalidResponse
		var ve *nztab.ValidationError
		var de *nztab.DecodeError
		switch {
		case errors.As(err, &ve):
			kind = KindValidation
		case errors.As(err, &de):
			kind = KindMalformedJSON
		}
		return &FetchError{StageError{Stage: StageFetch, RaceID: raceID, PollID: pollID, Kind: kind, Err: err}}
	}
}

// SnapshotFromFetched decodes a race.fetched message and transforms it; the
// replay path uses it too.
func SnapshotFromFetched(msg *message.Message) (transform.RaceSnapshot, error) {
	return snapshotFromFetched(msg, nil)
}

// snapshotFromFetched is SnapshotFromFetched with the event the fetch stage
// handed over, when there is one.
func snapshotFromFetched(msg *message.Message, h *Handover) (transform.RaceSnapshot, error) {
	observed, ok := parseTime(msg.Metadata.Get(KeyObservedAt))
	if !ok {
		return transform.RaceSnapshot{}, transformErr(msg, KindMetadata, fmt.Errorf("missing or bad %s %q", KeyObservedAt, msg.Metadata.Get(KeyObservedAt)))
	}
	ev, ok := h.takeEvent(msg.Metadata)
	if !ok {
		body, err := Body(msg.Metadata, msg.Payload)
		if err != nil {
			return transform.RaceSnapshot{}, transformErr(msg, KindDecompress, err)
		}
		if ev, err = nztab.DecodeEvent(body); err != nil {
			return transform.RaceSnapshot{}, transformErr(msg, KindDecode, err)
		}
	}
	snap, err := transform.Transform(ev, observed)
	if err != nil {
		return transform.RaceSnapshot{}, transformErr(msg, KindTransform, err)
	}
	return snap, nil
}

func transformErr(msg *message.Message, kind string, err error) error {
	return &TransformError{StageError{Stage: StageTransform, RaceID: msg.Metadata.Get(KeyRaceID),
		PollID: msg.Metadata.Get(KeyPollID), Kind: kind, Err: err}}
}

// BeginFunc gives the write handler the transaction for a message: the
// subscriber's own transaction when the backend has one (so rows and the
// next message commit together with the ack), else a new one.
type BeginFunc func(msg *message.Message) (pgx.Tx, error)

// Write returns the write handler: race.fetched → race.written. It runs
// two stages of the poll: the transform, on the event the fetch stage
// handed over in this process or else on the stored body decoded again
// (the same snapshot: the transform is a pure function of the body and
// the observation instant), then the write of the snapshot in one
// transaction. The transform has no topic of its own: a durable hop
// between a pure function and the write would cost every poll a
// transaction and buy nothing, since the stored body is what replay and a
// redelivery start from. A transform failure is a *TransformError, so the
// poll's result and the poison queue name the stage that failed; the
// output carries both stages' times (MarkStage). With groups, the write
// shares a transaction with the writes of other messages handled at the
// same time (WriteGroups); without, or when the group fails, it writes
// alone. ends, if not nil, remembers where the races' history series end
// from one write of this process to the next (write.Ends); the groups take
// theirs from their config.
func Write(begin BeginFunc, h *Handover, groups *WriteGroups, ends *write.Ends) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		snap, err := snapshotFromFetched(msg, h)
		if err != nil {
			return nil, err
		}
		transformed := time.Now()
		pollID := msg.Metadata.Get(KeyPollID)
		alone := func() (write.Rows, error) { return writeAlone(msg, begin, snap, pollID, ends) }
		var rows write.Rows
		if groups != nil && write.Validate(snap) == nil {
			rows, err = groups.write(msg, write.Poll{Snapshot: snap, PollID: pollID}, alone)
		} else {
			rows, err = alone()
		}
		if err != nil {
			return nil, err
		}
		out, err := NewResultMessage(msg, StatusSuccess, snap.Race.Status, RowCountsOf(rows), nil)
		if err != nil {
			return nil, err
		}
		MarkStage(out.Metadata, StageTransform, start, transformed)
		MarkStage(out.Metadata, StageWrite, transformed, time.Now())
		return []*message.Message{out}, nil
	}
}

// writeAlone writes the poll in a transaction of its own (begin's).
func writeAlone(msg *message.Message, begin BeginFunc, snap transform.RaceSnapshot, pollID string, ends *write.Ends) (write.Rows, error) {
	ctx := msg.Context()
	tx, err := begin(msg)
	if err != nil {
		return write.Rows{}, writeErr(snap.RaceID, pollID, KindBegin, !errors.Is(err, context.Canceled), err)
	}
	var opts []write.Option
	if ends != nil {
		opts = append(opts, write.WithEnds(ends))
	}
	rows, err := WritePoll(ctx, tx, snap, pollID, opts...)
	if err != nil {
		_ = tx.Rollback(ctx) // the write error is the one worth reporting
		return write.Rows{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return write.Rows{}, writeErr(snap.RaceID, pollID, KindCommit, !errors.Is(err, context.Canceled), err)
	}
	return rows, nil
}

// WritePoll writes one poll's snapshot inside tx: the write stage's one
// path to the database, which replay takes too. A failure is a *WriteError
// whose kind and Retryable say what a caller can do (a cancelled context is
// returned as it is).
func WritePoll(ctx context.Context, tx pgx.Tx, snap transform.RaceSnapshot, pollID string, opts ...write.Option) (write.Rows, error) {
	rows, err := write.Write(ctx, tx, write.Poll{Snapshot: snap, PollID: pollID}, opts...)
	if err != nil {
		return rows, WriteFailure(snap.RaceID, pollID, err)
	}
	return rows, nil
}

// WritePolls writes several polls inside tx with write.WriteBatch, with the
// rows and counts of writing them one by one with WritePoll in the given
// order: the bulk form of the same path, for replay. A failure is classified
// as WritePoll's; it does not say which poll caused it (write.WriteBatch).
func WritePolls(ctx context.Context, tx pgx.Tx, polls []write.Poll) (write.BatchRows, error) {
	rows, err := write.WriteBatch(ctx, tx, polls)
	if err != nil {
		return rows, WriteFailure("", "", fmt.Errorf("batch of %d polls: %w", len(polls), err))
	}
	return rows, nil
}

// WriteFailure classifies a failed write of the poll pollID of raceID (both
// empty for a batch) as the write stage does: a *WriteError of kind
// "partition_missing" or "database", retryable when the database error is.
// A cancelled context is returned as it is.
func WriteFailure(raceID, pollID string, err error) error {
	var de *write.DBError
	retry := errors.As(err, &de) && de.Retryable
	kind := KindDatabase
	if errors.Is(err, write.ErrPartitionMissing) {
		kind = KindPartitionMissing
	}
	return writeErr(raceID, pollID, kind, retry, err)
}

// RowCountsOf is what a result reports of the rows a write changed.
func RowCountsOf(w write.Rows) RowCounts {
	return RowCounts{Meetings: w.Meetings, Races: w.Races, Entrants: w.Entrants, RacePools: w.RacePools,
		MoneyFlow: w.MoneyFlow, Odds: w.Odds, Results: w.Results}
}

func writeErr(raceID, pollID, kind string, retryable bool, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &WriteError{StageError{Stage: StageWrite, RaceID: raceID, PollID: pollID, Kind: kind, Retryable: retryable, Err: err}}
}

// StageOf names the stage a handler error belongs to.
func StageOf(err error) string {
	var se *StageError
	if errors.As(err, &se) {
		return se.Stage
	}
	var sk *Skip
	if errors.As(err, &sk) {
		return sk.Stage
	}
	return ""
}

// ErrorKind is the bounded name of what went wrong in a handler error: the
// stage error's or skip's kind, "panic", "canceled", else "internal". Poll
// results and metric labels both use it.
func ErrorKind(err error) string {
	var se *StageError
	var skip *Skip
	var panicErr middleware.RecoveredPanicError
	switch {
	case errors.As(err, &se):
		return se.Kind
	case errors.As(err, &skip):
		return skip.Kind
	case errors.As(err, &panicErr):
		return "panic"
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "internal"
}

// Retryable reports whether a retry of the same message can help.
func Retryable(err error) bool {
	var se *StageError
	return errors.As(err, &se) && se.Retryable
}

// DatabaseUnavailable reports whether a stage that works in the database
// (write, detect) failed because the database could not be reached or went
// away: the message is not at fault and should be handed out again, not
// poisoned. The fetch stage's network errors are the API's, not this.
func DatabaseUnavailable(err error) bool {
	var se *StageError
	return errors.As(err, &se) && (se.Stage == StageWrite || se.Stage == StageDetect) && write.IsUnavailable(se.Err)
}

// ObservedAt returns the observation instant of a race.fetched message.
func ObservedAt(msg *message.Message) (time.Time, bool) {
	return parseTime(msg.Metadata.Get(KeyObservedAt))
}
