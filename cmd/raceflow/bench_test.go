package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/bench"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
)

func TestBenchRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no races", nil, []string{"--races", "0"}, "races 0"},
		{"unknown format", nil, []string{"--formats", "json,xml"}, "xml"},
		{"unknown backend", nil, []string{"--backend", "kafka"}, "backend"},
		{"race ids for the simulator", nil, []string{"some-race"}, "race ids are for an external API"},
		{"latency for an external API", map[string]string{"NZTAB_API_URL": "http://127.0.0.1:1/affiliates/v1"},
			[]string{"--api-latency", "5ms"}, "--api-latency applies to the in-process simulator"},
		{"negative latency", nil, []string{"--api-latency", "-5ms"}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := raceflow(t, tt.env, append([]string{"bench"}, tt.args...)...)
			require.Equal(t, 2, r.code, r)
			require.Contains(t, r.stderr, tt.want)
			require.Len(t, lines(r.stderr), 1, "a usage error is one line")
		})
	}
}

// benchServer returns a PostgreSQL URL the command may create databases
// on, or skips: without pgtest.Main a private server could not be stopped,
// so this test only uses one that already runs (CI starts one).
func benchServer(t *testing.T) string {
	t.Helper()
	for _, dsn := range []string{os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"), "postgres://127.0.0.1:5432/postgres?sslmode=disable"} {
		if dsn == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return dsn
		}
	}
	t.Skip("no PostgreSQL answers (set TEST_DATABASE_URL)")
	return ""
}

// runBenchCommand runs `raceflow bench` and returns its exit code, its
// output and the JSON report it wrote.
func runBenchCommand(t *testing.T, env map[string]string, args ...string) (int, string, bench.Report) {
	t.Helper()
	out := t.TempDir()
	r := raceflow(t, env, append([]string{"bench", "--out", out}, args...)...)
	files, err := filepath.Glob(filepath.Join(out, "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 1, r)
	raw, err := os.ReadFile(files[0])
	require.NoError(t, err)
	var rep bench.Report
	require.NoError(t, json.Unmarshal(raw, &rep))
	csvs, err := filepath.Glob(filepath.Join(out, "*.csv"))
	require.NoError(t, err)
	require.Len(t, csvs, 1)
	return r.code, r.stdout + r.stderr, rep
}

// requireDropped checks that the fresh database the run made is gone.
func requireDropped(t *testing.T, admin string, rep bench.Report) {
	t.Helper()
	_, rest, ok := strings.Cut(rep.Metadata.Database, "/raceflow_bench_")
	require.True(t, ok, rep.Metadata.Database)
	digits := strings.FieldsFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	require.NotEmpty(t, digits, rep.Metadata.Database)
	name := "raceflow_bench_" + digits[0]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n))
	require.Zero(t, n, "database %s left behind", name)
}

func TestBenchCommandMeasuresInAFreshDatabaseAndDropsIt(t *testing.T) {
	t.Parallel()
	admin := benchServer(t)
	env := map[string]string{"DATABASE_URL": admin}
	code, out, rep := runBenchCommand(t, env, "--races", "2", "--iterations", "2", "--concurrency", "2",
		"--batch-target", "1m", "--backend", "postgres")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "batch_wall")
	require.Contains(t, out, "target batch_wall ≤ 60000.0 ms")
	require.Equal(t, "postgres", rep.Metadata.Backend)
	require.Len(t, rep.Runs, 4)
	require.Equal(t, 4, rep.Summary.Total.N)
	require.Equal(t, 2, rep.Summary.BatchWall.N)
	require.Equal(t, []int64{1}, rep.Metadata.Seeds)
	require.Contains(t, rep.Metadata.API, "in-process simulator")
	require.Equal(t, "16", rep.Metadata.Runners)
	require.Contains(t, rep.Metadata.Command, "raceflow bench --out ")
	require.Contains(t, rep.Metadata.Command, " --races 2 --iterations 2 ")
	requireDropped(t, admin, rep)
}

func TestBenchCommandExitsOneWhenATargetIsMissed(t *testing.T) {
	t.Parallel()
	admin := benchServer(t)
	code, out, rep := runBenchCommand(t, map[string]string{"DATABASE_URL": admin},
		"--races", "1", "--iterations", "2", "--backend", "memory", "--single-target", "1ns")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "FAIL")
	require.Len(t, rep.Checks, 1)
	require.Equal(t, bench.CheckSingle, rep.Checks[0].Name)
	require.False(t, rep.Checks[0].Passed)
	requireDropped(t, admin, rep)
}

func TestBenchCommandPollsAnExternalAPI(t *testing.T) {
	t.Parallel()
	admin := benchServer(t)
	today := nzday.Of(time.Now())
	// An hour before the first race: every race of the day is open.
	clock := nztabsim.NewManualClock(today.Start().Add(11 * time.Hour))
	sim, err := nztabsim.New(nztabsim.Config{Seed: 3, Date: today.String(), Clock: clock})
	require.NoError(t, err)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	api := srv.URL + "/affiliates/v1"
	code, out, rep := runBenchCommand(t, map[string]string{"DATABASE_URL": admin, "NZTAB_API_URL": api},
		"--races", "2", "--iterations", "1", "--concurrency", "2", "--backend", "memory")
	require.Equal(t, 0, code, out)
	require.Equal(t, api, rep.Metadata.API)
	require.NotEmpty(t, rep.Metadata.Runners, "the probed field sizes are recorded")
	require.Len(t, rep.Runs, 2)
	require.NotEqual(t, rep.Runs[0].RaceID, rep.Runs[1].RaceID)
	requireDropped(t, admin, rep)
}

func TestBenchCommandStampsPollsOnTheSimulatorsClock(t *testing.T) {
	t.Parallel()
	_, dsn := pgtest.NewEmpty(t)
	r := raceflow(t, map[string]string{"DATABASE_URL": dsn}, "bench", "--races", "1", "--iterations", "3",
		"--warmup", "0", "--fresh-db=false", "--backend", "memory", "--formats", "")
	require.Equal(t, 0, r.code, r)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var polls []time.Time
	var start time.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT array_agg(p.observed_at ORDER BY p.observed_at), min(r.start_time)
		FROM race_polls p JOIN races r USING (race_id)`).Scan(&polls, &start))
	require.Len(t, polls, 3)
	for i := 1; i < len(polls); i++ {
		require.Equal(t, nztabsim.Step, polls[i].Sub(polls[i-1]), "polls one simulator step apart: %v", polls)
	}
	require.True(t, polls[2].Before(start), "polled before the race's start (%s): %v", start, polls)
}
