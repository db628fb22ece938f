package handlers_test

import (
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
)

func TestOnlyADatabaseStageThatCouldNotReachTheDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	stage := func(name string, err error) error {
		return &handlers.StageError{Stage: name, RaceID: "r", PollID: "p", Kind: handlers.KindDatabase, Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"write: connection refused", stage(handlers.StageWrite, refused), true},
		{"detect: server shutting down", stage(handlers.StageDetect, &pgconn.PgError{Code: "57P01"}), true},
		{"write: check violation", stage(handlers.StageWrite, &pgconn.PgError{Code: "23514"}), false},
		{"write: serialization failure (retried, then poisoned)", stage(handlers.StageWrite, &pgconn.PgError{Code: "40001"}), false},
		{"fetch: the API refused the connection", stage(handlers.StageFetch, refused), false},
		{"not a stage error", refused, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, handlers.DatabaseUnavailable(tc.err))
		})
	}
}
