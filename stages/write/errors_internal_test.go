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
		name      string
		err       error
		retryable bool
	}{
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"connection failure class 08", pg("08006"), true},
		{"connection does not exist", pg("08003"), true},
		{"admin shutdown", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"too many connections", pg("53300"), true},
		{"lock not available", pg("55P03"), true},
		{"query canceled is not a shutdown", pg("57014"), false},
		{"numeric out of range (22)", pg("22003"), false},
		{"invalid text representation (22)", pg("22P02"), false},
		{"check violation (23)", pg("23514"), false},
		{"foreign key violation (23)", pg("23503"), false},
		{"undefined column (42)", pg("42703"), false},
		{"disk full", pg("53100"), false},
		{"wrapped server error keeps its class", fmt.Errorf("batch: %w", pg("40001")), true},
		{"deadline exceeded", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, false},
		{"wrapped cancel", fmt.Errorf("x: %w", context.Canceled), false},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"closed network connection", net.ErrClosed, true},
		{"unknown", errors.New("boom"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.retryable, IsRetryable(tc.err))
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
