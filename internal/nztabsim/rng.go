package nztabsim

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Purposes keep the random streams of different aspects of the simulation
// apart: each stream is seeded from (seed, day, purpose, indices), so adding a
// draw to one aspect never shifts the values of another.
const (
	purposeMeeting uint64 = iota + 1
	purposeMeetingID
	purposeRace
	purposeRaceID
	purposeEntrantID
	purposeStep
	purposeDividendID
	purposeFaults
	purposeGhostID
)

// splitmix64 is a bijective 64-bit mixer (Steele et al.); chaining it over
// the key parts gives well-spread PCG seeds from small integers.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// mixKey hashes the parts of a key into one 64-bit value.
func mixKey(salt uint64, parts []uint64) uint64 {
	h := splitmix64(salt)
	for _, p := range parts {
		h = splitmix64(h ^ p)
	}
	return h
}

// keyedRand returns a PCG generator that is a pure function of its key, so
// a value drawn from it depends on nothing but the key.
func keyedRand(parts ...uint64) *rand.Rand {
	return rand.New(rand.NewPCG(mixKey(0x243f6a8885a308d3, parts), mixKey(0x13198a2e03707344, parts)))
}

// keyedUUID formats 128 bits derived from the key as a UUID string of the
// given version (4 for TAB's random ids, 5 for its name-based dividend ids).
func keyedUUID(version byte, parts ...uint64) string {
	hi := mixKey(0xa4093822299f31d0, parts)
	lo := mixKey(0x082efa98ec4e6c89, parts)
	var b [16]byte
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | version<<4
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// uniform returns a value in [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// pick returns a random element of xs.
func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// round2 rounds to cents; round1 to one decimal place. Both return the
// shortest float that prints as such, so JSON shows 9151.38, not 9151.380000000001.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// softmax turns scores into probabilities over the entries where ok[i].
func softmax(scores []float64, ok []bool) []float64 {
	out := make([]float64, len(scores))
	m := math.Inf(-1)
	for i, s := range scores {
		if ok[i] && s > m {
			m = s
		}
	}
	var sum float64
	for i, s := range scores {
		if ok[i] {
			out[i] = math.Exp(s - m)
			sum += out[i]
		}
	}
	if sum > 0 {
		for i := range out {
			out[i] /= sum
		}
	}
	return out
}
