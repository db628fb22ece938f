package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func okRun(iteration int, race string, total float64) RaceRun {
	return RaceRun{Iteration: iteration, RaceID: race, Status: "success", Success: true,
		TotalMS: total, FetchMS: total / 4, TransformMS: total / 8, WriteMS: total / 2, DetectMS: total / 16, QueueMS: total / 16}
}

func TestSummarizeCountsOnlySuccessfulPollsWithNearestRankPercentiles(t *testing.T) {
	t.Parallel()
	var runs []RaceRun
	for i := 1; i <= 100; i++ {
		runs = append(runs, okRun(1, "r", float64(i)))
	}
	runs = append(runs, RaceRun{Iteration: 1, RaceID: "bad", Status: "failed", TotalMS: 10_000})
	s := Summarize(runs, []Iteration{{Iteration: 1, WallMS: 40}, {Iteration: 2, WallMS: 20}})

	require.Equal(t, Stats{N: 100, Min: 1, Avg: 50.5, P50: 50, P95: 95, P99: 99, Max: 100}, s.Total)
	require.Equal(t, 100, s.Fetch.N)
	require.InDelta(t, 25.0, s.Fetch.Max, 1e-9)
	require.Equal(t, Stats{N: 2, Min: 20, Avg: 30, P50: 20, P95: 40, P99: 40, Max: 40}, s.BatchWall)
}

func TestChecks(t *testing.T) {
	t.Parallel()
	iters := []Iteration{{Iteration: 1, WallMS: 30}, {Iteration: 2, WallMS: 45}}
	runs := []RaceRun{okRun(1, "a", 12), okRun(2, "a", 44)}
	tests := []struct {
		name       string
		cfg        Config
		want       []Check
		wantPassed bool
	}{
		{"no targets, no checks", Config{Races: 1}, nil, true},
		{"single target met by the worst poll",
			Config{Races: 1, SingleTarget: 44 * time.Millisecond},
			[]Check{{Name: CheckSingle, TargetMS: 44, ObservedMS: 44, Applicable: true, Passed: true}}, true},
		{"single target missed by one poll",
			Config{Races: 1, SingleTarget: 20 * time.Millisecond},
			[]Check{{Name: CheckSingle, TargetMS: 20, ObservedMS: 44, Applicable: true, Passed: false}}, false},
		{"single target does not apply to batches of several races",
			Config{Races: 5, SingleTarget: 20 * time.Millisecond},
			[]Check{{Name: CheckSingle, TargetMS: 20, ObservedMS: 44, Applicable: false, Passed: true, Note: "applies to --races 1 only"}}, true},
		{"batch target holds for the worst batch wall time",
			Config{Races: 5, BatchTarget: 45 * time.Millisecond},
			[]Check{{Name: CheckBatch, TargetMS: 45, ObservedMS: 45, Applicable: true, Passed: true}}, true},
		{"batch target missed by one batch",
			Config{Races: 5, BatchTarget: 40 * time.Millisecond},
			[]Check{{Name: CheckBatch, TargetMS: 40, ObservedMS: 45, Applicable: true, Passed: false}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := &Report{Runs: runs, Iterations: iters}
			rep.finish(tt.cfg, 0, 0)
			require.Equal(t, tt.want, rep.Checks)
			require.Equal(t, tt.wantPassed, rep.Passed(), rep.Failures())
		})
	}
}

func TestBatchTargetJudgesWallTimeNotTheSlowestRace(t *testing.T) {
	t.Parallel()
	// A race whose own total exceeds the target does not fail a batch whose
	// wall time is within it (and vice versa): callers wait for the batch.
	rep := &Report{Runs: []RaceRun{okRun(1, "a", 80)}, Iterations: []Iteration{{Iteration: 1, WallMS: 50, Polls: 1}}}
	rep.finish(Config{Races: 2, BatchTarget: 60 * time.Millisecond}, 0, 0)
	require.True(t, rep.Passed(), rep.Failures())

	rep = &Report{Runs: []RaceRun{okRun(1, "a", 10)}, Iterations: []Iteration{{Iteration: 1, WallMS: 70, Polls: 1}}}
	rep.finish(Config{Races: 2, BatchTarget: 60 * time.Millisecond}, 0, 0)
	require.Equal(t, []string{"batch_wall: 70.0 ms > target 60.0 ms"}, rep.Failures())
}

func TestFinishComputesThroughputAndCPUPerPoll(t *testing.T) {
	t.Parallel()
	rep := &Report{
		Runs:       []RaceRun{okRun(1, "a", 10), okRun(1, "b", 10), {Iteration: 2, RaceID: "a", Status: "failed"}, okRun(2, "b", 10)},
		Iterations: []Iteration{{Iteration: 1, WallMS: 1500, Polls: 2}, {Iteration: 2, WallMS: 500, Polls: 2, Failed: 1}},
	}
	rep.finish(Config{Races: 2}, 40*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, Throughput{Polls: 4, Succeeded: 3, Failed: 1, WallSeconds: 2, PollsPerSecond: 2}, rep.Throughput)
	require.InDelta(t, 10.0, rep.Resources.CPUMSPerPoll, 1e-9)
	require.InDelta(t, 7.5, rep.Resources.PipelineCPUMSPerPoll, 1e-9)
	require.InDelta(t, 10.0, rep.Resources.APICPUMS, 1e-9)
	require.Equal(t, []string{"1 of 4 polls failed"}, rep.Failures())

	rep.Warmup = WarmupStats{Iterations: 1, Polls: 2, Failed: 2}
	require.Equal(t, []string{"1 of 4 polls failed", "2 of 2 warm-up polls failed"}, rep.Failures())
}

func TestParseFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"json,csv", []string{"json", "csv"}, false},
		{" CSV , json,csv ", []string{"csv", "json"}, false},
		{"", nil, false},
		{"json,xml", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFormats(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrUnknownFormat)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func sampleReport() *Report {
	rep := &Report{
		Metadata: Metadata{StartedAt: time.Date(2025, 7, 17, 1, 2, 3, 0, time.UTC), Backend: "memory", Races: 2, Iterations: 1, Concurrency: 2},
		Runs: []RaceRun{okRun(1, "a", 12.3456), {Iteration: 1, RaceID: "b", Status: "failed", ErrorType: "fetch/not_found",
			ErrorMessage: `event "b", not found`}},
		Iterations: []Iteration{{Iteration: 1, WallMS: 20, Polls: 2, Failed: 1}},
	}
	rep.finish(Config{Races: 2}, 0, 0)
	return rep
}

func TestWriteCSVWritesOneRowPerPoll(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, WriteCSV(&buf, sampleReport()))
	rows, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		CSVHeader,
		{"1", "a", "success", "true", "12.346", "3.086", "1.543", "6.173", "0.772", "0.772", "", ""},
		{"1", "b", "failed", "false", "0.000", "0.000", "0.000", "0.000", "0.000", "0.000", "fetch/not_found", `event "b", not found`},
	}, rows)
}

func TestWriteJSONHasTheSummaryInMilliseconds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, sampleReport()))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	summary := doc["summary"].(map[string]any)
	for _, measure := range []string{"fetch", "transform", "write", "detect", "queue", "total", "batch_wall"} {
		m, ok := summary[measure].(map[string]any)
		require.True(t, ok, measure)
		for _, stat := range []string{"min", "avg", "p50", "p95", "p99", "max"} {
			require.Contains(t, m, stat, measure)
		}
	}
	require.InDelta(t, 12.3456, summary["total"].(map[string]any)["p50"], 1e-9)
	require.Len(t, doc["runs"], 2)
	require.Equal(t, "memory", doc["metadata"].(map[string]any)["backend"])
}

func TestWriteFilesNamesFilesByStartAndShape(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := WriteFiles(dir, []string{FormatJSON, FormatCSV}, sampleReport())
	require.NoError(t, err)
	require.Equal(t, []string{
		filepath.Join(dir, "bench-20250717T010203Z-memory-r2-i1-c2.json"),
		filepath.Join(dir, "bench-20250717T010203Z-memory-r2-i1-c2.csv"),
	}, paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NotEmpty(t, b)
	}
}

func TestWriteTableShowsEveryMeasureAndTheVerdict(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	rep.Checks = []Check{{Name: CheckBatch, TargetMS: 10, ObservedMS: 20, Applicable: true}}
	rep.Metadata.Database, rep.Metadata.DBConnection = "postgres://127.0.0.1:5432/x", ConnTCPWithTLS
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, rep))
	out := buf.String()
	for _, want := range []string{"fetch", "transform", "write", "queue", "total", "batch_wall", "polls/s",
		"target batch_wall ≤ 10.0 ms: worst 20.0 ms: FAIL", "FAILED: 1 of 2 polls failed",
		"database: postgres://127.0.0.1:5432/x, over TCP with TLS\n"} {
		require.True(t, strings.Contains(out, want), "missing %q in:\n%s", want, out)
	}
}

func TestPluralAndRunnerRange(t *testing.T) {
	t.Parallel()
	require.Equal(t, "1 race", Plural(1, "race"))
	require.Equal(t, "0 races", Plural(0, "race"))
	require.Equal(t, "50 iterations", Plural(50, "iteration"))
	tests := []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{16}, "16"},
		{[]int{16, 16}, "16"},
		{[]int{16, 14, 15}, "14–16"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, RunnerRange(tt.in), "%v", tt.in)
	}
}
