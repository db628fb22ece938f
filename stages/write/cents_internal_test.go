package write

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/pgtest"
)

// TestOddsCentsAreWhatPostgreSQLStores holds oddsCents to PostgreSQL's own
// float8 → numeric(10,2) cast, value for value: the append path decides in Go
// which odds rows are changes, and must decide as the database would.
func TestOddsCentsAreWhatPostgreSQLStores(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()

	values := []float64{
		0, math.Copysign(0, -1), 1, 2.5, 1.005, 2.675, 0.125, 0.135, 1.015, 1.025, 1.095, 2.345, 8.365,
		-1.005, -2.675, 0.005, 0.0049999999999999, 0.00499999999999999999, 1e-20, 5e-324, 3.14159,
		12345678.125, 99999999.99, 99999999.994, 1.0000000000000002, 4.35, 101.005, 1000.015,
	}
	rng := rand.New(rand.NewPCG(21, 2026))
	for range 5000 {
		// Odds quoted to two or three places (three puts ties at the
		// rounding digit), as the API's float64 carries them.
		values = append(values, float64(rng.IntN(100000))/100, float64(rng.IntN(1000000))/1000)
		// Any magnitude the column holds, with full binary noise.
		values = append(values, math.Pow(10, rng.Float64()*14-6)*(1-2*float64(rng.IntN(2))))
	}

	var stored []string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT array_agg(u.v::numeric(10,2)::text ORDER BY u.i)
		FROM unnest($1::float8[]) WITH ORDINALITY AS u(v, i)`, values).Scan(&stored))
	require.Len(t, stored, len(values))
	for i, v := range values {
		want, err := parseCents(stored[i])
		require.NoError(t, err)
		got, err := oddsCents(v)
		require.NoError(t, err, "odds %v", v)
		require.Equal(t, want, got, "odds %v (%.17g): PostgreSQL stores %s", v, v, stored[i])
	}
}

func TestOddsCentsRefusesWhatNumericCannotHold(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, v := range []float64{99999999.995, 1e8, -1e8, 1e12, 1e300, math.Inf(1), math.Inf(-1)} {
		_, err := oddsCents(v)
		require.ErrorIs(t, err, errOddsRange, "odds %v", v)
		var text string
		err = db.Pool.QueryRow(context.Background(), `SELECT $1::float8::numeric(10,2)::text`, v).Scan(&text)
		require.ErrorContains(t, err, "numeric field overflow", "PostgreSQL should refuse %v too", v)
	}
	// PostgreSQL would store NaN; no API response carries one, and the
	// stage refuses it rather than compare it.
	_, err := oddsCents(math.NaN())
	require.ErrorIs(t, err, errOddsRange)
}
