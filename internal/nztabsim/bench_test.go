package nztabsim

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkEventJSON measures rendering one event at a fresh instant (every
// iteration is another 15 s step, so nothing can be cached).
func BenchmarkEventJSON(b *testing.B) {
	clk := NewManualClock(time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC))
	s, err := New(Config{Seed: 1, Date: "2025-07-17", Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	r := s.Races()[20]
	at := r.StartTime.Add(-2 * time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(Step)
		if _, err := s.EventJSON(r.ID, at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMeetingsList measures the whole day's meetings list over the
// handler, without the network.
func BenchmarkMeetingsList(b *testing.B) {
	clk := NewManualClock(time.Date(2025, 7, 17, 1, 0, 0, 0, time.UTC))
	s, err := New(Config{Seed: 1, Date: "2025-07-17", Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/affiliates/v1/racing/meetings?date_from=2025-07-17&date_to=2025-07-17", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
