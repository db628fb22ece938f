package write

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxOddsCents bounds odds as numeric(10,2) holds them: eight digits before
// the point. PostgreSQL refuses a larger value with "numeric field
// overflow".
const maxOddsCents = 1e10

// errOddsRange is the cast's refusal of a value numeric(10,2) cannot hold.
var errOddsRange = errors.New("outside numeric(10,2)")

// oddsCents is v in hundredths exactly as PostgreSQL stores
// v::float8::numeric(10,2), so change detection in Go compares the values the
// database compares, without asking it: PostgreSQL turns a float8 into
// numeric through its text form with 15 significant digits (printf's %.15g,
// rounding the binary value to nearest, ties to even), then rounds that
// decimal to two places, halves away from zero. 1.005 is the binary
// 1.00499999999999989..., 1.00500000000000 at 15 digits, and so 1.01;
// math.Round(v*100) would say 1.00. TestOddsCentsAreWhatPostgreSQLStores
// holds the two to the same results.
func oddsCents(v float64) (int64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("odds %v: %w", v, errOddsRange)
	}
	// strconv rounds exactly as printf does: to nearest, ties to even.
	s := strconv.FormatFloat(math.Abs(v), 'e', 14, 64) // d.dddddddddddddde±XX
	mant, exp, _ := strings.Cut(s, "e")
	m, err := strconv.ParseInt(strings.Replace(mant, ".", "", 1), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("odds %v: %w", v, err)
	}
	e, err := strconv.Atoi(exp)
	if err != nil {
		return 0, fmt.Errorf("odds %v: %w", v, err)
	}
	// v = m·10^(e-14), so v in hundredths is m/10^(12-e).
	var c int64
	switch k := 12 - e; {
	case k <= 0: // v ≥ 10^12
		return 0, fmt.Errorf("odds %v: %w", v, errOddsRange)
	case k <= 18:
		d := int64(1)
		for range k {
			d *= 10
		}
		c = m / d
		if 2*(m%d) >= d {
			c++
		}
	default: // m < 10^15, under half of 10^k: rounds to zero
	}
	if c >= maxOddsCents {
		return 0, fmt.Errorf("odds %v: %w", v, errOddsRange)
	}
	if v < 0 {
		c = -c
	}
	return c, nil
}
