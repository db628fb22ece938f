package transform

import (
	"testing"

	"github.com/raceflow/raceflow/stages/nztab"
)

// BenchmarkTransform measures the transform alone on the real 400 KB event.
func BenchmarkTransform(b *testing.B) {
	ev := decodeEvent(b, fixtureBytes(b, fullEventFixture))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Transform(ev, goldenObservedAt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAndTransform is the transform stage's whole CPU cost per
// poll: decoding and validating the raw body (nztab.DecodeEvent) plus the
// transform.
func BenchmarkDecodeAndTransform(b *testing.B) {
	raw := fixtureBytes(b, fullEventFixture)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := nztab.DecodeEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Transform(ev, goldenObservedAt); err != nil {
			b.Fatal(err)
		}
	}
}
