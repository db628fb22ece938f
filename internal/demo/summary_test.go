package demo

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/stats"
)

func TestSummaryVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		polls       map[string]int
		interrupted bool
		want        error
	}{
		{"polls succeeded", map[string]int{handlers.StatusSuccess: 3, handlers.StatusSkipped: 1}, false, nil},
		{"a poll failed", map[string]int{handlers.StatusSuccess: 3, handlers.StatusFailed: 1}, false, ErrPollsFailed},
		{"nothing succeeded", map[string]int{handlers.StatusSkipped: 2}, false, ErrNothingSucceeded},
		{"interrupted before the first poll", map[string]int{}, true, nil},
		{"interrupted after a failure", map[string]int{handlers.StatusFailed: 1}, true, ErrPollsFailed},
	}
	for _, tt := range tests {
		s := &Summary{Polls: tt.polls, Interrupted: tt.interrupted}
		require.Equal(t, tt.want, s.Err(), tt.name)
	}
}

func TestSummarySaysWhetherTheLatencyTargetWasMet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		total stats.Summary
		want  string
	}{
		{"met", stats.Summary{N: 10, P95: 120.04}, "latency target: total p95 120.0 ms ≤ 500 ms: met"},
		{"missed", stats.Summary{N: 10, P95: 612.5}, "latency target: total p95 612.5 ms > 500 ms: MISSED"},
		{"nothing measured", stats.Summary{}, "no successful poll to measure"},
	}
	for _, tt := range tests {
		s := &Summary{Target: 500 * time.Millisecond, Stages: map[string]stats.Summary{"total": tt.total}}
		var out bytes.Buffer
		require.NoError(t, s.Write(&out))
		require.Contains(t, out.String(), tt.want, tt.name)
	}
}

func TestSummaryShowsTheMoneyOfEachFinishedRace(t *testing.T) {
	t.Parallel()
	s := &Summary{Target: time.Second, MoreRaces: 2, Races: []FinishedRace{
		{Meeting: "Awapuni", RaceNumber: 3, Status: "final",
			Top:      []RunnerHold{{4, "Ruji", 19}, {1, "Tickford", 18}, {6, "Keepitinyourwallet", 16}},
			LateMove: &MoneyMove{Number: 1, Name: "Tickford", Cents: 123456789, MinutesToStart: 2}},
		{Meeting: "Addington", RaceNumber: 1, Status: "interim", Top: []RunnerHold{{2, "Solo", 100}}},
	}}
	var out bytes.Buffer
	require.NoError(t, s.Write(&out))
	require.Regexp(t, `Awapuni R3\s+final\s+#4 Ruji 19%, #1 Tickford 18%, #6 Keepitinyourwallet 16%\s+#1 Tickford \+\$1,234,567\.89 at 2 min`, out.String())
	require.Regexp(t, `Addington R1\s+interim\s+#2 Solo 100%\s+-`, out.String())
	require.Contains(t, out.String(), "... and 2 more")
}

func TestDollars(t *testing.T) {
	t.Parallel()
	for cents, want := range map[int64]string{0: "$0.00", 5: "$0.05", 99999: "$999.99", 100000: "$1,000.00", 123456789: "$1,234,567.89"} {
		require.Equal(t, want, dollars(cents))
	}
}

func TestSummaryListsTheDaysAlerts(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 7, 17, 0, 57, 4, 0, time.UTC) // 12:57:04 NZST
	s := &Summary{Target: time.Second, MoreAlerts: 3, Alerts: []AlertLine{
		{FiredAt: at, Summary: "Awapuni R3 #7 Royal Rose steamer: fixed win 34.00 → 1.65 (2.9% → 60.6%, +57.7 pts), 3 min before the start"},
	}}
	var out bytes.Buffer
	require.NoError(t, s.Write(&out))
	require.Contains(t, out.String(), "12:57:04  Awapuni R3 #7 Royal Rose steamer: fixed win 34.00 → 1.65")
	require.Contains(t, out.String(), "... and 3 more")

	none := &Summary{Target: time.Second}
	out.Reset()
	require.NoError(t, none.Write(&out))
	require.Contains(t, out.String(), "ALERTS: none")
}
