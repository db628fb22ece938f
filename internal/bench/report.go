package bench

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raceflow/raceflow/internal/stats"
)

// Report is one benchmark run: what ran, the summaries, and every poll.
type Report struct {
	Metadata   Metadata    `json:"metadata"`
	Summary    Summary     `json:"summary"`
	Throughput Throughput  `json:"throughput"`
	Resources  Resources   `json:"resources"`
	Pool       PoolStats   `json:"pool"`
	Checks     []Check     `json:"checks"`
	Warmup     WarmupStats `json:"warmup"`
	Iterations []Iteration `json:"iterations"`
	Runs       []RaceRun   `json:"runs"`
}

// Metadata says what was measured, where and how. The command fills the
// environment fields (API, Database, Seed, ...) the runner cannot know.
type Metadata struct {
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	Command        string    `json:"command,omitempty"`
	Backend        string    `json:"backend"`
	Shards         int       `json:"shards"`
	PollIntervalMS float64   `json:"poll_interval_ms"`
	Races          int       `json:"races"`
	Iterations     int       `json:"iterations"`
	Concurrency    int       `json:"concurrency"`
	Warmup         int       `json:"warmup"`
	SingleTargetMS float64   `json:"single_target_ms,omitempty"`
	BatchTargetMS  float64   `json:"batch_target_ms,omitempty"`
	API            string    `json:"api,omitempty"`
	APILatencyMS   float64   `json:"api_latency_ms,omitempty"`
	Seeds          []int64   `json:"seeds,omitempty"`
	Runners        string    `json:"runners,omitempty"` // field sizes of the races polled, e.g. "16" or "14–16"
	Database       string    `json:"database,omitempty"`
	// DBConnection is how the connections reach the server: ConnUnixSocket,
	// ConnTCP or ConnTCPWithTLS.
	DBConnection string `json:"db_connection,omitempty"`
	DBMaxConns   int    `json:"db_max_conns,omitempty"`
	GoVersion    string `json:"go_version"`
	GOOS         string `json:"goos"`
	GOARCH       string `json:"goarch"`
	NumCPU       int    `json:"num_cpu"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	// LoadAvg is the machine's 1, 5 and 15 minute load average when the
	// measured batches began; figures taken on a busy machine say so.
	LoadAvg string `json:"load_avg,omitempty"`
}

// Stats summarise one measure in milliseconds: nearest-rank percentiles.
type Stats struct {
	N   int     `json:"n"`
	Min float64 `json:"min"`
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summary holds the stage latencies of the successful polls and the
// batches' wall time, in milliseconds.
type Summary struct {
	Fetch     Stats `json:"fetch"`
	Transform Stats `json:"transform"`
	Write     Stats `json:"write"`
	Detect    Stats `json:"detect"`
	Queue     Stats `json:"queue"`
	Total     Stats `json:"total"`
	BatchWall Stats `json:"batch_wall"`
}

// Throughput is polls per second of batch wall time.
type Throughput struct {
	Polls          int     `json:"polls"`
	Succeeded      int     `json:"succeeded"`
	Failed         int     `json:"failed"`
	WallSeconds    float64 `json:"wall_seconds"`
	PollsPerSecond float64 `json:"polls_per_second"`
}

// Resources are the process's cost over the measured batches. CPU is user
// plus system time of this process; the database server is another
// process and not included, an in-process simulator is (APICPUMS says how
// much of it was the simulator's).
type Resources struct {
	CPUMS                float64 `json:"cpu_ms"`
	CPUMSPerPoll         float64 `json:"cpu_ms_per_poll"`
	APICPUMS             float64 `json:"api_cpu_ms"`
	PipelineCPUMSPerPoll float64 `json:"pipeline_cpu_ms_per_poll"`
	// DBCPUMSPerPoll is the CPU the database server's backends of the
	// benchmark's database spent per poll, where /proc shows them (a server
	// on this machine); DBCPUMeasured says whether it could be read.
	DBCPUMS        float64 `json:"db_cpu_ms"`
	DBCPUMSPerPoll float64 `json:"db_cpu_ms_per_poll"`
	DBCPUMeasured  bool    `json:"db_cpu_measured"`
	// MachineBusyPct is how busy all the machine's CPUs were during the
	// measured batches (this process, the database server and anything
	// else): near 100 means the run was bound by CPU.
	MachineBusyPct float64 `json:"machine_busy_pct"`
	StartRSSMB     float64 `json:"start_rss_mb"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	// PeakRSSMeasuredPhase is false when the kernel's peak could not be
	// reset: PeakRSSMB is then the process's lifetime peak.
	PeakRSSMeasuredPhase bool `json:"peak_rss_measured_phase"`
}

// PoolStats show whether polls waited for a database connection during
// the measured batches: a pool too small for the concurrency stalls them.
type PoolStats struct {
	MaxConns int32 `json:"max_conns"`
	// PeakAcquired is the most connections in use at once (sampled).
	PeakAcquired int32 `json:"peak_acquired"`
	Acquires     int64 `json:"acquires"`
	// WaitedAcquires had to wait because no connection was idle; WaitMS is
	// the time they waited in all.
	WaitedAcquires int64   `json:"waited_acquires"`
	WaitMS         float64 `json:"wait_ms"`
}

// Check is one threshold and whether the run met it.
type Check struct {
	Name       string  `json:"name"`
	TargetMS   float64 `json:"target_ms"`
	ObservedMS float64 `json:"observed_ms"`
	Applicable bool    `json:"applicable"`
	Passed     bool    `json:"passed"`
	Note       string  `json:"note,omitempty"`
}

// WarmupStats count the unrecorded warm-up polls.
type WarmupStats struct {
	Iterations int `json:"iterations"`
	Polls      int `json:"polls"`
	Failed     int `json:"failed"`
}

// Iteration is one measured batch.
type Iteration struct {
	Iteration int     `json:"iteration"`
	WallMS    float64 `json:"wall_ms"`
	Polls     int     `json:"polls"`
	Failed    int     `json:"failed"`
}

// RaceRun is one poll of one race.
type RaceRun struct {
	Iteration    int     `json:"iteration"`
	RaceID       string  `json:"race_id"`
	PollID       string  `json:"poll_id,omitempty"`
	Status       string  `json:"status"`
	RaceStatus   string  `json:"race_status,omitempty"`
	Success      bool    `json:"success"`
	TotalMS      float64 `json:"total_ms"`
	FetchMS      float64 `json:"fetch_ms"`
	TransformMS  float64 `json:"transform_ms"`
	WriteMS      float64 `json:"write_ms"`
	DetectMS     float64 `json:"detect_ms"`
	QueueMS      float64 `json:"queue_ms"`
	ErrorType    string  `json:"error_type,omitempty"`
	ErrorMessage string  `json:"error_message,omitempty"`
}

// Check names.
const (
	CheckSingle = "single_race_total"
	CheckBatch  = "batch_wall"
)

// finish computes the summaries, throughput, resources and checks from
// the recorded iterations and runs.
func (r *Report) finish(cfg Config, cpu, apiCPU time.Duration) {
	r.Summary = Summarize(r.Runs, r.Iterations)
	var wall float64
	for _, it := range r.Iterations {
		wall += it.WallMS
	}
	t := Throughput{Polls: len(r.Runs), WallSeconds: wall / 1000}
	for _, run := range r.Runs {
		if run.Success {
			t.Succeeded++
		} else {
			t.Failed++
		}
	}
	if wall > 0 {
		t.PollsPerSecond = float64(t.Polls) / t.WallSeconds
	}
	r.Throughput = t
	r.Resources.CPUMS = ms(cpu)
	r.Resources.APICPUMS = ms(apiCPU)
	if t.Polls > 0 {
		r.Resources.CPUMSPerPoll = ms(cpu) / float64(t.Polls)
		r.Resources.PipelineCPUMSPerPoll = ms(cpu-apiCPU) / float64(t.Polls)
	}
	r.Checks = checks(cfg, r.Runs, r.Iterations)
}

// Summarize computes the stage summaries over the successful runs and the
// batch wall time over the iterations.
func Summarize(runs []RaceRun, iterations []Iteration) Summary {
	var fetch, transform, write, detect, queue, total, walls []float64
	for _, r := range runs {
		if !r.Success {
			continue
		}
		fetch = append(fetch, r.FetchMS)
		transform = append(transform, r.TransformMS)
		write = append(write, r.WriteMS)
		detect = append(detect, r.DetectMS)
		queue = append(queue, r.QueueMS)
		total = append(total, r.TotalMS)
	}
	for _, it := range iterations {
		walls = append(walls, it.WallMS)
	}
	return Summary{
		Fetch: statsOf(fetch), Transform: statsOf(transform), Write: statsOf(write), Detect: statsOf(detect),
		Queue: statsOf(queue), Total: statsOf(total), BatchWall: statsOf(walls),
	}
}

func statsOf(xs []float64) Stats {
	s := stats.Summarize(xs)
	return Stats{N: s.N, Min: s.Min, Avg: s.Avg, P50: s.P50, P95: s.P95, P99: s.P99, Max: s.Max}
}

// checks evaluates the targets. The single-race target applies to runs of
// one race per batch and must hold for every poll (its worst total); the
// batch target must hold for every batch's wall time, which is what a
// caller waits for, not the slowest race's own total.
func checks(cfg Config, runs []RaceRun, iterations []Iteration) []Check {
	var out []Check
	if cfg.SingleTarget > 0 {
		c := Check{Name: CheckSingle, TargetMS: ms(cfg.SingleTarget), Applicable: cfg.Races == 1}
		for _, r := range runs {
			c.ObservedMS = max(c.ObservedMS, r.TotalMS)
		}
		c.Passed = c.ObservedMS <= c.TargetMS
		if !c.Applicable {
			c.Passed = true
			c.Note = "applies to --races 1 only"
		}
		out = append(out, c)
	}
	if cfg.BatchTarget > 0 {
		c := Check{Name: CheckBatch, TargetMS: ms(cfg.BatchTarget), Applicable: true}
		for _, it := range iterations {
			c.ObservedMS = max(c.ObservedMS, it.WallMS)
		}
		c.Passed = c.ObservedMS <= c.TargetMS
		out = append(out, c)
	}
	return out
}

// Failures lists why the run does not pass: failed polls (warm-up
// included) and missed targets. Empty means it passed.
func (r *Report) Failures() []string {
	var out []string
	if r.Throughput.Failed > 0 {
		out = append(out, fmt.Sprintf("%d of %d polls failed", r.Throughput.Failed, r.Throughput.Polls))
	}
	if r.Warmup.Failed > 0 {
		out = append(out, fmt.Sprintf("%d of %d warm-up polls failed", r.Warmup.Failed, r.Warmup.Polls))
	}
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, fmt.Sprintf("%s: %.1f ms > target %.1f ms", c.Name, c.ObservedMS, c.TargetMS))
		}
	}
	return out
}

// Passed reports whether every poll succeeded and every target was met.
func (r *Report) Passed() bool { return len(r.Failures()) == 0 }

// Output formats.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// ErrUnknownFormat marks a format that is neither json nor csv.
var ErrUnknownFormat = errors.New("bench: unknown output format")

// ParseFormats reads a comma-separated list of output formats.
func ParseFormats(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case f == "" || seen[f]:
			continue
		case f != FormatJSON && f != FormatCSV:
			return nil, fmt.Errorf("%w %q (want json, csv)", ErrUnknownFormat, f)
		}
		seen[f] = true
		out = append(out, f)
	}
	return out, nil
}

// WriteJSON writes the whole report, indented.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the CSV's first row: one row per poll follows.
var CSVHeader = []string{"iteration", "race_id", "status", "success", "total_ms", "fetch_ms", "transform_ms",
	"write_ms", "detect_ms", "queue_ms", "error_type", "error_message"}

// WriteCSV writes one row per poll.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	for _, run := range r.Runs {
		if err := cw.Write([]string{
			strconv.Itoa(run.Iteration), run.RaceID, run.Status, strconv.FormatBool(run.Success),
			f(run.TotalMS), f(run.FetchMS), f(run.TransformMS), f(run.WriteMS), f(run.DetectMS), f(run.QueueMS),
			run.ErrorType, run.ErrorMessage,
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteFiles writes the report into dir in each format and returns the
// paths. The names carry the start time and the run's shape, so runs
// never overwrite each other.
func WriteFiles(dir string, formats []string, r *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: output directory: %w", err)
	}
	m := r.Metadata
	base := fmt.Sprintf("bench-%s-%s-r%d-i%d-c%d", m.StartedAt.UTC().Format("20060102T150405Z"), m.Backend,
		m.Races, m.Iterations, m.Concurrency)
	var paths []string
	for _, format := range formats {
		var write func(io.Writer, *Report) error
		switch format {
		case FormatJSON:
			write = WriteJSON
		case FormatCSV:
			write = WriteCSV
		default:
			return paths, fmt.Errorf("%w %q", ErrUnknownFormat, format)
		}
		path := filepath.Join(dir, base+"."+format)
		if err := writeFile(path, r, write); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeFile(path string, r *Report, write func(io.Writer, *Report) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := write(f, r); err != nil {
		_ = f.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// Plural is "1 race", "2 races".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// RunnerRange describes field sizes: "16", or "14–16" when they differ.
func RunnerRange(runners []int) string {
	if len(runners) == 0 {
		return ""
	}
	lo, hi := runners[0], runners[0]
	for _, n := range runners {
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

// WriteTable prints the summary for a terminal.
func WriteTable(w io.Writer, r *Report) error {
	m := r.Metadata
	fmt.Fprintf(w, "raceflow bench: %s backend, %d shards", m.Backend, m.Shards)
	fmt.Fprintf(w, ", %s × %s, concurrency %d (+%d warm-up)\n",
		Plural(m.Races, "race"), Plural(m.Iterations, "iteration"), m.Concurrency, m.Warmup)
	fmt.Fprintf(w, "machine: %d CPUs, GOMAXPROCS %d, %s", m.NumCPU, m.GOMAXPROCS, m.GoVersion)
	if m.LoadAvg != "" {
		fmt.Fprintf(w, ", load average %s", m.LoadAvg)
	}
	fmt.Fprintln(w)
	if m.API != "" {
		fmt.Fprintf(w, "API: %s", m.API)
		if m.Runners != "" {
			fmt.Fprintf(w, ", %s-runner races", m.Runners)
		}
		if m.APILatencyMS > 0 {
			fmt.Fprintf(w, " (+%.0f ms latency)", m.APILatencyMS)
		}
		fmt.Fprintln(w)
	}
	if m.Database != "" {
		fmt.Fprintf(w, "database: %s", m.Database)
		if m.DBConnection != "" {
			fmt.Fprintf(w, ", over %s", m.DBConnection)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ms\tN\tMIN\tAVG\tP50\tP95\tP99\tMAX\t")
	for _, row := range []struct {
		name string
		s    Stats
	}{
		{"fetch", r.Summary.Fetch}, {"transform", r.Summary.Transform}, {"write", r.Summary.Write},
		{"detect", r.Summary.Detect}, {"queue", r.Summary.Queue}, {"total", r.Summary.Total}, {"batch_wall", r.Summary.BatchWall},
	} {
		s := row.s
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", row.name, s.N, s.Min, s.Avg, s.P50, s.P95, s.P99, s.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t, res := r.Throughput, r.Resources
	fmt.Fprintf(w, "\nthroughput: %.1f polls/s (%d polls, %d failed, %.2f s of batch wall time)\n",
		t.PollsPerSecond, t.Polls, t.Failed, t.WallSeconds)
	fmt.Fprintf(w, "CPU: %.2f ms per poll (%.0f ms in all", res.CPUMSPerPoll, res.CPUMS)
	if res.APICPUMS > 0 {
		fmt.Fprintf(w, "; in-process simulator %.0f ms, pipeline %.2f ms per poll", res.APICPUMS, res.PipelineCPUMSPerPoll)
	}
	fmt.Fprintf(w, "); machine CPUs %.0f%% busy\n", res.MachineBusyPct)
	if res.DBCPUMeasured {
		fmt.Fprintf(w, "database server: %.2f ms CPU per poll (its backends of this database; %.0f ms in all), %.2f ms per poll with this process\n",
			res.DBCPUMSPerPoll, res.DBCPUMS, res.DBCPUMSPerPoll+res.PipelineCPUMSPerPoll)
	}
	scope := "during the measured batches"
	if !res.PeakRSSMeasuredPhase {
		scope = "process lifetime"
	}
	fmt.Fprintf(w, "memory: peak RSS %.1f MB (%s), %.1f MB at the start\n", res.PeakRSSMB, scope, res.StartRSSMB)
	p := r.Pool
	fmt.Fprintf(w, "pool: %d connections, peak %d in use; %d acquires, %d waited for a connection (%.1f ms in all)\n",
		p.MaxConns, p.PeakAcquired, p.Acquires, p.WaitedAcquires, p.WaitMS)
	for _, c := range r.Checks {
		verdict := "PASS"
		switch {
		case !c.Applicable:
			verdict = "n/a"
		case !c.Passed:
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "target %s ≤ %.1f ms: worst %.1f ms: %s", c.Name, c.TargetMS, c.ObservedMS, verdict)
		if c.Note != "" {
			fmt.Fprintf(w, " (%s)", c.Note)
		}
		fmt.Fprintln(w)
	}
	if fails := r.Failures(); len(fails) > 0 {
		fmt.Fprintf(w, "FAILED: %s\n", strings.Join(fails, "; "))
	}
	return nil
}
