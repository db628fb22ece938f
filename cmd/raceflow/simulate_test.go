package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSimulateServesUntilTheContextEnds(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	a := &app{stdout: pw, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runSimulate(ctx, a, []string{"--addr", "127.0.0.1:0", "--date", "2025-07-17", "--speed", "60"})
		pw.Close()
	}()

	lines := bufio.NewScanner(pr)
	require.True(t, lines.Scan())
	first := lines.Text()
	_, base, ok := strings.Cut(first, ": ")
	require.True(t, ok, first)
	require.True(t, strings.HasSuffix(base, "/affiliates/v1"), first)
	go func() {
		for lines.Scan() { // drain the rest so the command never blocks on stdout
		}
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/racing/meetings?date_from=2025-07-17&date_to=2025-07-17", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `"meetings"`)

	// A request hung by a timeout fault must not hold up shutdown.
	hung := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/racing/meetings", nil)
		req.Header.Set("X-Sim-Fault", "timeout")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(simulateShutdownTimeout):
		t.Fatal("simulate did not stop when its context ended")
	}
	<-hung
}

func TestSimulateRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"bad date", []string{"--date", "17/07/2025"}},
		{"bad start", []string{"--start", "noon"}},
		{"zero speed", []string{"--speed", "0"}},
		{"rates above one", []string{"--error-rate", "0.7", "--malformed-rate", "0.7"}},
		{"stray argument", []string{"extra"}},
		{"unknown flag", []string{"--nope"}},
	}
	for _, tt := range tests {
		a := &app{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
		err := runSimulate(context.Background(), a, append([]string{"--addr", "127.0.0.1:0"}, tt.args...))
		require.ErrorIs(t, err, errUsage, tt.name)
	}
}

func TestSimulateDayDefaults(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 7, 16, 13, 0, 0, 0, time.UTC) // 01:00 on 17 July in NZ
	tests := []struct {
		name, date, start string
		wantDay           string
		wantStart         time.Time
	}{
		{"both from now", "", "", "2025-07-17", time.Date(2025, 7, 16, 23, 30, 0, 0, time.UTC)},
		{"start from date", "2025-12-01", "", "2025-12-01", time.Date(2025, 11, 30, 22, 30, 0, 0, time.UTC)},
		{"date from start", "", "2025-07-17T02:00:00Z", "2025-07-17", time.Date(2025, 7, 17, 2, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		day, start, err := simulateDay(tt.date, tt.start, now)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.wantDay, day.String(), tt.name)
		require.True(t, tt.wantStart.Equal(start), "%s: %s", tt.name, start)
	}
}
