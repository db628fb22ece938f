package pgtest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/partitions"
)

// EnsureDays makes the daily history partitions of the NZ day date
// (YYYY-MM-DD) and of the days either side, for tests whose data lies on a
// day other than the few around today that New makes.
func (db *DB) EnsureDays(t testing.TB, date string) {
	t.Helper()
	pm, err := partitions.New(db.Pool, partitions.DefaultConfig())
	require.NoError(t, err)
	d, err := nzday.Parse(date)
	require.NoError(t, err)
	require.NoError(t, pm.EnsureDays(context.Background(), d.AddDays(-1), d.AddDays(1)))
}
