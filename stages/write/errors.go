package write

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrPartitionMissing marks a history row whose day has no partition. The
// write stage never runs DDL inside a data transaction, so retrying the same
// poll cannot help until the partition manager has created the day; the flow
// treats it as permanent and an operator (or the manager's next run) fixes it.
var ErrPartitionMissing = errors.New("no partition for the row's day")

// ErrInvalidSnapshot marks a snapshot the write stage refuses before touching
// the database: an empty race id or observation time, rows of another race,
// or two rows with the same natural key (which would make the stored result
// depend on the order of rows within the poll).
var ErrInvalidSnapshot = errors.New("invalid snapshot")

// ErrAppendRace marks a batch whose append path (WriteBatch) met history
// rows another transaction wrote after the batch looked up its series'
// ends. Nothing of the batch is stored once it is rolled back, and trying it
// again is retryable: the series now take the general path.
var ErrAppendRace = errors.New("history rows written concurrently with a batch appending to them")

// DBError is a failed write of a poll (or of a batch, WriteBatch) to the
// database. Nothing of it is stored once the transaction is rolled back, so
// a Retryable error can be retried as a whole (the write is idempotent) and
// a permanent one belongs in the poison queue. The write handler wraps it in
// a handlers.WriteError, the stage error the flow reports.
type DBError struct {
	// Table is the table whose statement failed, or the step when no table
	// was involved: "snapshot" (validation), "begin", "batch", "commit".
	Table string
	// Retryable says whether the same poll may succeed on a later attempt
	// (serialization failure, deadlock, connection loss, timeout).
	Retryable bool
	// Err is the cause; errors.Is/As see through it (e.g. *pgconn.PgError,
	// ErrPartitionMissing, context.Canceled).
	Err error
}

// Error implements error.
func (e *DBError) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "retryable"
	}
	return fmt.Sprintf("write %s (%s): %v", e.Table, kind, e.Err)
}

// Unwrap exposes the cause for errors.Is and errors.As.
func (e *DBError) Unwrap() error { return e.Err }

// newDBError classifies err, which happened while writing table. A
// missing partition gains ErrPartitionMissing so callers can branch on it
// without knowing PostgreSQL's error codes.
func newDBError(table string, err error) *DBError {
	if isPartitionMissing(err) {
		err = fmt.Errorf("%w: %w", ErrPartitionMissing, err)
	}
	return &DBError{Table: table, Retryable: IsRetryable(err), Err: err}
}

// isPartitionMissing recognises PostgreSQL's "no partition of relation ...
// found for row". It shares SQLSTATE 23514 with CHECK violations, which
// always name their constraint; the routing failure names none.
func isPartitionMissing(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "23514" {
		return false
	}
	return pg.ConstraintName == "" || strings.Contains(pg.Message, "no partition of relation")
}

// IsRetryable reports whether a failed write may succeed if the whole poll
// is tried again: the database was unavailable (IsUnavailable), or the
// server said so (serialization failure, deadlock, lock not available), or
// a deadline or timeout ended it. A cancelled context is never retryable,
// because the caller asked to stop. Data errors (classes 22, 23, 42) and
// anything unknown are permanent.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "40001", "40P01", "55P03": // serialization failure, deadlock, lock not available
			return true
		}
		return IsUnavailable(err)
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	return IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// IsUnavailable reports whether err says the database could not be reached
// or went away, which says nothing about the poll: connection class 08,
// shutdown 57P01-57P03, too many connections, a refused or lost
// connection. The flow hands such a poll out again rather than poisoning
// it once its retries are spent. A cancelled context and a deadline are not
// unavailability (a connection attempt that ran out of time is).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return strings.HasPrefix(pg.Code, "08") || // connection exception
			pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03" || // admin/crash shutdown, cannot connect now
			pg.Code == "53300" // too many connections
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
