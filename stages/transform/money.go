package transform

import (
	"math"
	"math/bits"
	"strconv"
)

// maxScaled is the largest |x| whose ×100 value still fits an int64 with room
// for the rounding carry; anything larger is garbage, not money.
const maxScaled = 9e16

// hundredths returns x×100 rounded half away from zero, computed on the
// shortest decimal representation of x — i.e. on the number as the API wrote
// it. Multiplying the binary float instead gets ties wrong (1.005×100 is
// 100.49999… in float64, yet the API said 1.005 and the cent is 101). ok is
// false for NaN, ±Inf and values too large for int64 cents.
func hundredths(x float64) (v int64, ok bool) {
	if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) >= maxScaled {
		return 0, false
	}
	neg := x < 0
	if neg {
		x = -x
	}
	var buf [40]byte
	s := strconv.AppendFloat(buf[:0], x, 'f', -1, 64)
	i := 0
	for ; i < len(s) && s[i] != '.'; i++ {
		v = v*10 + int64(s[i]-'0')
	}
	v *= 100
	if i < len(s) { // s[i] == '.'
		frac := s[i+1:]
		if len(frac) > 0 {
			v += int64(frac[0]-'0') * 10
		}
		if len(frac) > 1 {
			v += int64(frac[1] - '0')
		}
		if len(frac) > 2 && frac[2] >= '5' {
			v++
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

// mulDivHalfUp returns round_half_up(a×b/d) for a, b ≥ 0 and d > 0 in exact
// 128-bit arithmetic, so pool cents × hold basis points can never overflow
// or lose a cent to float rounding. ok is false when an input is out of
// domain or the result does not fit an int64.
func mulDivHalfUp(a, b, d int64) (int64, bool) {
	if a < 0 || b < 0 || d <= 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	lo, carry := bits.Add64(lo, uint64(d)/2, 0)
	hi += carry
	if hi >= uint64(d) {
		return 0, false // quotient would not fit 64 bits (and Div64 would panic)
	}
	q, _ := bits.Div64(hi, lo, uint64(d))
	if q > math.MaxInt64 {
		return 0, false
	}
	return int64(q), true
}

// poolAmount is a runner's share of a pool in cents: round_half_up(cents ×
// hold%/100), where holdBP is hold% in hundredths (15.5 % → 1550), so the
// divisor is 100 (for %) × 100 (for hundredths).
func poolAmount(cents, holdBP int64) (int64, bool) {
	return mulDivHalfUp(cents, holdBP, 10000)
}

// poolPercentage is amount/cents×100 rounded half-up to 2 decimals, returned
// as hundredths of a percent; ok is false when the pool is empty.
func poolPercentage(amount, cents int64) (int64, bool) {
	if cents <= 0 {
		return 0, false
	}
	return mulDivHalfUp(amount, 10000, cents)
}
