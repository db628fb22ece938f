package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
)

func TestSimulateServesUntilInterrupted(t *testing.T) {
	t.Parallel()
	p := start(t, nil, "simulate", "--addr", "127.0.0.1:0", "--date", "2025-07-17", "--speed", "60")
	first := p.waitFor(t, "NZ TAB simulator: ")
	_, base, ok := strings.Cut(first, ": ")
	require.True(t, ok, first)
	require.True(t, strings.HasSuffix(base, "/affiliates/v1"), first)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/racing/meetings", nil)
		req.Header.Set("X-Sim-Fault", "timeout")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()

	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	r := p.wait(t)
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "NZ TAB simulator stopped after")
	<-hung
}

func TestSimulateRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad date", []string{"--date", "17/07/2025"}, "--date"},
		{"bad start", []string{"--start", "noon"}, "--start"},
		{"zero speed", []string{"--speed", "0"}, "--speed must be positive"},
		{"rates above one", []string{"--error-rate", "0.7", "--malformed-rate", "0.7"}, "rate"},
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--nope"}, "unknown flag: --nope"},
		{"plunge without minutes", []string{"--plunge", "r1:3"}, "--plunge"},
		{"plunge on no runner", []string{"--plunge", "r1:x:3"}, "--plunge"},
		{"plunge on an unknown race", []string{"--date", "2025-07-17", "--plunge", "nope:3:3"}, "--plunge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, nil, append([]string{"simulate", "--addr", "127.0.0.1:0"}, tt.args...)...)
			require.Equal(t, 2, r.code, r)
			require.Len(t, lines(r.stderr), 1, r)
			require.Contains(t, r.stderr, tt.want)
			require.Contains(t, r.stderr, "(see 'raceflow simulate --help')")
		})
	}
}

func TestSimulateStagesAPlunge(t *testing.T) {
	t.Parallel()
	sim, err := nztabsim.New(nztabsim.Config{Seed: 1, Date: "2025-07-17"})
	require.NoError(t, err)
	// The first race whose runner 2 runs (a plunge on a scratched runner is
	// refused).
	var race string
	for _, r := range sim.Races() {
		pl := nztabsim.Plunge{RaceID: r.ID, Runner: 2, Before: 3 * time.Minute}
		if _, err := nztabsim.New(nztabsim.Config{Seed: 1, Date: "2025-07-17", Plunges: []nztabsim.Plunge{pl}}); err == nil {
			race = r.ID
			break
		}
	}
	require.NotEmpty(t, race)
	p := start(t, nil, "simulate", "--addr", "127.0.0.1:0", "--date", "2025-07-17", "--plunge", race+":2:3")
	line := p.waitFor(t, "  plunge: ")
	require.Contains(t, line, "race "+race+" runner 2")
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	r := p.wait(t)
	require.Equal(t, 0, r.code, r)
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
