package write

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestErrorsAreClassifiedByWhetherARetryCanHelp(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	for _, tc := range []struct {
		name        string
		err         error
		retryable   bool
		unavailable bool
	}{
		{"serialization failure", pg("40001"), true, false},
		{"deadlock", pg("40P01"), true, false},
		{"connection failure class 08", pg("08006"), true, true},
		{"connection does not exist", pg("08003"), true, true},
		{"admin shutdown", pg("57P01"), true, true},
		{"crash shutdown", pg("57P02"), true, true},
		{"cannot connect now", pg("57P03"), true, true},
		{"too many connections", pg("53300"), true, true},
		{"lock not available", pg("55P03"), true, false},
		{"query canceled is not a shutdown", pg("57014"), false, false},
		{"numeric out of range (22)", pg("22003"), false, false},
		{"invalid text representation (22)", pg("22P02"), false, false},
		{"check violation (23)", pg("23514"), false, false},
		{"foreign key violation (23)", pg("23503"), false, false},
		{"undefined column (42)", pg("42703"), false, false},
		{"disk full", pg("53100"), false, false},
		{"wrapped server error keeps its class", fmt.Errorf("batch: %w", pg("40001")), true, false},
		{"connection attempt failed", &pgconn.ConnectError{Config: &pgconn.Config{}}, true, true},
		{"deadline exceeded", context.DeadlineExceeded, true, false},
		{"wrapped deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true, false},
		{"cancelled", context.Canceled, false, false},
		{"wrapped cancel", fmt.Errorf("x: %w", context.Canceled), false, false},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, true, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, true},
		{"EOF", io.EOF, true, true},
		{"closed network connection", net.ErrClosed, true, true},
		{"unknown", errors.New("boom"), false, false},
		{"nil", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.retryable, IsRetryable(tc.err))
			require.Equal(t, tc.unavailable, IsUnavailable(tc.err), "unavailable")
			if tc.err == nil {
				return
			}
			we := newDBError("entrants", tc.err)
			require.Equal(t, tc.retryable, we.Retryable)
			require.ErrorIs(t, we, tc.err, "the cause stays reachable")
			require.Contains(t, we.Error(), "write entrants")
		})
	}
}

func TestMissingPartitionIsRecognisedFromTheServerError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		err     error
		missing bool
	}{
		{"routing failure", &pgconn.PgError{Code: "23514", Message: `no partition of relation "odds_history" found for row`, TableName: "odds_history"}, true},
		{"check constraint", &pgconn.PgError{Code: "23514", Message: `new row violates check constraint`, ConstraintName: "race_results_result_status_check"}, false},
		{"other error", &pgconn.PgError{Code: "23505", Message: "duplicate key"}, false},
		{"not a server error", errors.New("no partition of relation"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			we := newDBError("odds_history", tc.err)
			require.Equal(t, tc.missing, errors.Is(we, ErrPartitionMissing))
			require.False(t, we.Retryable)
			var pg *pgconn.PgError
			require.Equal(t, tc.err != nil && errors.As(tc.err, &pg), errors.As(we, &pg))
		})
	}
}

func TestLayersOrderEachSeriesByTime(t *testing.T) {
	t.Parallel()
	type row struct {
		key string
		at  int
	}
	byTime := func(a, b row) int { return a.at - b.at }
	key := func(r row) string { return r.key }
	for _, tc := range []struct {
		name string
		in   []row
		want [][]row
	}{
		{"empty", nil, nil},
		{"one row per series is one layer as given", []row{{"b", 2}, {"a", 1}}, [][]row{{{"b", 2}, {"a", 1}}}},
		{"repeated series split oldest first", []row{{"a", 3}, {"b", 1}, {"a", 1}, {"a", 2}},
			[][]row{{{"a", 1}, {"b", 1}}, {{"a", 2}}, {{"a", 3}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, layers(tc.in, key, byTime))
		})
	}
}
