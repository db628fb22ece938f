package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

var (
	longFlag = flag.Bool("reliability.long", false, "run the long fault-injection variants (also RACEFLOW_LONG_TESTS=1)")
	seedFlag = flag.Uint64("reliability.seed", 0, "seed of the fault schedule; 0 picks one from the clock (also RACEFLOW_RELIABILITY_SEED)")
	raceFlag = flag.Bool("reliability.race", false, "build the raceflow binary under test with -race and fail on a reported data race")
)

// suite is what TestMain prepares for every test: the binary under test.
var suite struct {
	bin string
}

const (
	// shards is the shard count the subprocess and the test's poll publisher agree on.
	shards = 4
	// appName marks the subprocess's database sessions, so a fault can target
	// exactly them (pg_terminate_backend) and leave the test's own alone.
	appName = "raceflow-under-test"
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

// runSuite builds the binary once for all tests, runs them through
// pgtest.Run (which stops a private server if one was started) and removes
// the binary afterwards.
func runSuite(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "raceflow-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	suite.bin = filepath.Join(dir, "raceflow")
	if prebuilt := os.Getenv("RACEFLOW_RELIABILITY_BIN"); prebuilt != "" {
		suite.bin = prebuilt // e.g. a release binary
	} else if err := buildBinary(suite.bin, *raceFlag); err != nil {
		fmt.Fprintln(os.Stderr, "reliability: build raceflow:", err)
		return 1
	}
	return pgtest.Run(m)
}

func buildBinary(out string, race bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, "./cmd/raceflow")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, b)
	}
	return nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// long reports whether the long variants were asked for.
func long() bool { return *longFlag || os.Getenv("RACEFLOW_LONG_TESTS") == "1" }

// newRand returns the test's random source and logs its seed, so a failing
// fault schedule can be replayed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if v := os.Getenv("RACEFLOW_RELIABILITY_SEED"); seed == 0 && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "RACEFLOW_RELIABILITY_SEED")
		seed = n
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -reliability.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 0x7261636566))
}

// between returns a random duration in [lo, hi].
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// hold keeps a fault in place for d (it is the fault's duration, not a wait
// for something to happen).
func hold(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// withAppName sets application_name on a connection URL.
func withAppName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	return u.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// ---- environment ----

// envConfig describes one test's world.
type envConfig struct {
	// DSN is the database the subprocess uses (application_name is added).
	DSN string
	// Pool is the test's own pool on the same database.
	Pool *pgxpool.Pool
	// Env adds variables to the subprocess's environment.
	Env []string
	// Args adds flags to `raceflow run`.
	Args []string
	// APILatency delays every simulated API response, so fetches are in
	// flight for a realistic share of the time.
	APILatency time.Duration
	// NATS, when set, runs the flow on the nats backend instead of the
	// postgres one; the oracle then reads JetStream streams instead of
	// topic tables. JetStream refuses publishes to a subject without a
	// stream, and a subprocess creates the streams when it starts, so
	// request polls only once one is ready.
	NATS *natsEnv
}

// natsEnv is the NATS JetStream server and the flow namespace a test runs
// its subprocesses (and its poll publisher) on.
type natsEnv struct {
	URL       string
	Namespace string
}

// env is one test's world: a simulated API, a database, the binary under
// test (started and stopped as often as the test likes) and a publisher of
// poll requests that is independent of it.
type env struct {
	t      *testing.T
	cfg    envConfig
	dsn    string
	sim    *nztabsim.Sim
	api    *httptest.Server
	addr   string                // the HTTP address of start's subprocesses
	ns     string                // the flow's namespace
	js     nats.JetStreamContext // the oracle's view of the streams; nil on postgres
	http   *http.Client
	logDir string
	races  []string // horse races, by start time
	poller *flows.Engine
	runs   int
	procs  []*proc
}

// newEnv builds the world. The simulated day is yesterday's (NZ), running at
// 10x from 15 minutes before its first race: events serve open races with
// money moving, while `raceflow run`'s baseline, which asks for today's
// meetings, finds none, so its scheduler requests no polls of its own and
// every poll in the database is one the test requested.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	day := nzday.Of(time.Now()).AddDays(-1)
	clock := nztabsim.NewSpeedClock(day.Start().Add(nztabsim.DefaultFirstRaceAt-15*time.Minute), 10, time.Now)
	sim, err := nztabsim.New(nztabsim.Config{Seed: 11, Date: day.String(), Clock: clock})
	require.NoError(t, err)
	require.NoError(t, sim.SetFaults(nztabsim.Faults{Latency: cfg.APILatency}))
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)

	infos := sim.Races()
	sort.Slice(infos, func(i, j int) bool { return infos[i].StartTime.Before(infos[j].StartTime) })
	var races []string
	for _, r := range infos {
		if (r.Country == "NZ" || r.Country == "AUS") && (r.Category == "T" || r.Category == "H") {
			races = append(races, r.ID)
		}
	}
	require.NotEmpty(t, races)

	client, err := nztab.NewClient(nztab.ClientConfig{BaseURL: api.URL + "/affiliates/v1", FromEmail: "reliability@example.com",
		PartnerName: "reliability", PartnerID: "reliability"})
	require.NoError(t, err)
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	fcfg := flows.DefaultConfig()
	fcfg.Shards = shards
	var js nats.JetStreamContext
	if n := cfg.NATS; n != nil {
		fcfg.Backend = config.BackendNATS
		fcfg.NATS.URL = n.URL
		fcfg.Namespace = n.Namespace
		nc, err := nats.Connect(n.URL)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err = nc.JetStream()
		require.NoError(t, err)
	}
	// Never run: only RequestPoll is used, which publishes to the same
	// topics the subprocess consumes. (On NATS New only connects; the
	// streams are the subprocess's to create.)
	poller, err := flows.New(fcfg, flows.Deps{Pool: cfg.Pool, Fetcher: client, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, poller.Close()) })

	e := &env{
		t: t, cfg: cfg, dsn: withAppName(t, cfg.DSN), sim: sim, api: api, addr: freeAddr(t), ns: fcfg.Namespace, js: js,
		http: &http.Client{Timeout: 3 * time.Second}, logDir: t.TempDir(), races: races, poller: poller,
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("RACEFLOW_RELIABILITY_KEEP_LOGS") == "" {
			return
		}
		kept, err := os.MkdirTemp("", "raceflow-reliability-logs-")
		if err == nil {
			err = os.CopyFS(kept, os.DirFS(e.logDir))
		}
		t.Logf("subprocess logs kept in %s (copy error: %v)", kept, err)
	})
	return e
}

// racesAcrossShards picks n races so that every shard gets some.
func (e *env) racesAcrossShards(n int) []string {
	e.t.Helper()
	byShard := make([][]string, shards)
	for _, id := range e.races {
		s := driver.Shard(id, shards)
		byShard[s] = append(byShard[s], id)
	}
	var out []string
	for i := 0; len(out) < n; i++ {
		progressed := false
		for s := range byShard {
			if i < len(byShard[s]) && len(out) < n {
				out = append(out, byShard[s][i])
				progressed = true
			}
		}
		if !progressed {
			e.t.Fatalf("the simulated day has only %d horse races, want %d", len(out), n)
		}
	}
	return out
}

// ---- the subprocess ----

// proc is one incarnation of `raceflow run`.
type proc struct {
	n       int
	addr    string // its HTTP address (/readyz)
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	err     error // Wait's result, valid once done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the process's exit status, -1 when a signal ended it.
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

// start starts `raceflow run` on the env's HTTP address: one instance at a
// time.
func (e *env) start() *proc {
	e.t.Helper()
	return e.startOn(e.addr)
}

// startReplica starts another `raceflow run` alongside the running ones,
// on an HTTP address of its own: the same database, flow and namespace.
func (e *env) startReplica() *proc {
	e.t.Helper()
	return e.startOn(freeAddr(e.t))
}

func (e *env) startOn(addr string) *proc {
	t := e.t
	t.Helper()
	e.runs++
	logPath := filepath.Join(e.logDir, fmt.Sprintf("run-%03d.log", e.runs))
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(suite.bin, append([]string{"run"}, e.cfg.Args...)...)
	// A test binary killed on timeout takes its instances with it, so they
	// never keep working a database a later run measures or drops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+e.dsn,
		"NZTAB_API_URL="+e.api.URL+"/affiliates/v1",
		"NZTAB_FROM_EMAIL=reliability@example.com",
		"NZTAB_PARTNER_NAME=reliability",
		"NZTAB_PARTNER_ID=reliability",
		"RACEFLOW_HTTP_ADDR="+addr,
		"RACEFLOW_PUBSUB=postgres",
		"RACEFLOW_NAMESPACE="+e.ns,
		"RACEFLOW_SHARDS="+strconv.Itoa(shards),
		"RACEFLOW_DB_MAX_CONNS=20",
		"LOG_FORMAT=json",
		"LOG_LEVEL=debug",
	)
	if n := e.cfg.NATS; n != nil {
		cmd.Env = append(cmd.Env, "RACEFLOW_PUBSUB=nats", "NATS_URL="+n.URL)
	}
	cmd.Env = append(cmd.Env, e.cfg.Env...) // later entries win
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &proc{n: e.runs, addr: addr, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// readyz is the status of /readyz on the env's address, 0 when nothing
// answers.
func (e *env) readyz() int { return e.readyzAt(e.addr) }

// readyzAt is the status of /readyz at addr, 0 when nothing answers.
func (e *env) readyzAt(addr string) int {
	resp, err := e.http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits until /readyz answers 200 and returns how long the
// process took from start.
func (e *env) waitReady(p *proc, within time.Duration) time.Duration {
	t := e.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if e.readyzAt(p.addr) == http.StatusOK {
			return time.Since(p.started)
		}
		if time.Now().After(deadline) {
			e.diagnose(p)
			t.Fatalf("run #%d not ready within %s", p.n, within)
		}
		select {
		case <-p.done:
			t.Fatalf("run #%d exited before it was ready: %v\n%s", p.n, p.err, tail(p.logPath, 30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (e *env) kill(p *proc) {
	e.t.Helper()
	require.NoError(e.t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("run #%d survived SIGKILL", p.n)
	}
	require.Equal(e.t, -1, p.exitCode(), "run #%d ended by the signal", p.n)
}

// terminate sends SIGTERM and returns the exit code and how long the
// process took to exit. A process still running after within gets SIGQUIT
// (a goroutine dump in its log) and fails the test.
func (e *env) terminate(p *proc, within time.Duration) (code int, took time.Duration) {
	t := e.t
	t.Helper()
	sent := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		return p.exitCode(), time.Since(sent)
	case <-time.After(within):
	}
	e.diagnose(p)
	t.Fatalf("run #%d did not exit within %s of SIGTERM", p.n, within)
	return 0, 0
}

// scanLogs checks every incarnation's log for things that must never
// appear, and counts error lines.
func (e *env) scanLogs() (errorLines int, messages map[string]int) {
	t := e.t
	t.Helper()
	messages = map[string]int{}
	for _, p := range e.procs {
		b, err := os.ReadFile(p.logPath)
		require.NoError(t, err)
		require.NotContains(t, string(b), "WARNING: DATA RACE", "run #%d: the race detector reported a data race (log %s)", p.n, p.logPath)
		require.NotContains(t, string(b), "panic:", "run #%d panicked:\n%s", p.n, tail(p.logPath, 40))
		for _, line := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(line, []byte(`"level":"error"`)) {
				errorLines++
				msg := jsonField(line, "msg")
				if cause := jsonField(line, "error"); cause != "" {
					msg += ": " + cause
				}
				if len(msg) > 120 {
					msg = msg[:120]
				}
				messages[msg]++
			}
		}
	}
	return errorLines, messages
}

// jsonField extracts a string field from a JSON log line without a full
// decode (lines of a killed process may be cut short).
func jsonField(line []byte, key string) string {
	_, rest, ok := bytes.Cut(line, []byte(`"`+key+`":"`))
	if !ok {
		return ""
	}
	v, _, _ := bytes.Cut(rest, []byte(`"`))
	return string(v)
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// diagnose logs what the flow is waiting on: queue depths, the database
// sessions and their waits, and (for a live process) a goroutine dump.
func (e *env) diagnose(p *proc) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if depths, err := e.queueDepths(ctx); err == nil {
		t.Logf("queue depths: %v", depths)
	}
	rows, err := e.cfg.Pool.Query(ctx, `
		SELECT pid, coalesce(application_name, ''), coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''),
		       coalesce(left(query, 120), ''), coalesce(now() - xact_start, '0')::text
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err == nil {
		for rows.Next() {
			var pid int
			var app, state, wtype, wevent, query, age string
			if rows.Scan(&pid, &app, &state, &wtype, &wevent, &query, &age) == nil {
				t.Logf("session %d %s %s wait=%s/%s xact=%s: %s", pid, app, state, wtype, wevent, age, query)
			}
		}
		rows.Close()
	}
	if p != nil && !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	if p != nil {
		t.Logf("run #%d log tail (%s):\n%s", p.n, p.logPath, tail(p.logPath, 60))
	}
}

// ---- poll requests ----

// publish requests n polls of races chosen at random and returns their ids.
// A publish that fails is recorded as ambiguous: it may or may not have been
// stored.
func (e *env) publish(n int, races []string, rng *rand.Rand) (ok, ambiguous []string) {
	e.t.Helper()
	for range n {
		id, err := e.requestPoll(races[rng.IntN(len(races))])
		if err != nil {
			ambiguous = append(ambiguous, id)
			continue
		}
		ok = append(ok, id)
	}
	return ok, ambiguous
}

func (e *env) requestPoll(raceID string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.poller.RequestPoll(ctx, raceID, "reliability")
}

// feeder requests polls at a steady rate in the background.
type feeder struct {
	mu        sync.Mutex
	ok        []string
	ambiguous []string
	cancel    context.CancelFunc
	done      chan struct{}
}

// feed starts requesting one poll every interval until stop.
func (e *env) feed(races []string, every time.Duration, seed uint64) *feeder {
	ctx, cancel := context.WithCancel(context.Background())
	f := &feeder{cancel: cancel, done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(seed, 1))
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			id, err := e.requestPoll(races[rng.IntN(len(races))])
			f.mu.Lock()
			if err != nil {
				f.ambiguous = append(f.ambiguous, id)
			} else {
				f.ok = append(f.ok, id)
			}
			f.mu.Unlock()
		}
	}()
	e.t.Cleanup(func() { f.stop() })
	return f
}

// stop ends the feeding and returns what was requested.
func (f *feeder) stop() (ok, ambiguous []string) {
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ok...), append([]string(nil), f.ambiguous...)
}

// ---- the oracle ----

// topic is a sharded topic of the env's flow; shard < 0 is the unsharded
// poison topic.
func (e *env) topic(kind string, shard int) string {
	if shard < 0 {
		return e.ns + "." + kind
	}
	return fmt.Sprintf("%s.%s.%d", e.ns, kind, shard)
}

// topicTable is the postgres backend's table of a topic.
func topicTable(topic string) string { return pgx.Identifier{"watermill_" + topic}.Sanitize() }

// natsStream is the nats backend's stream of a topic, which is also the
// name of the topic's durable consumer (flows.natsName).
func natsStream(topic string) string {
	return "raceflow_" + strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_").Replace(topic)
}

func (e *env) topicTables(kind string) []string {
	var out []string
	for s := range shards {
		out = append(out, topicTable(e.topic(kind, s)))
	}
	return out
}

// queueDepths counts the work not yet done, by stage: poll requests,
// fetched bodies not yet transformed and written, written polls not yet
// judged for alerts, results not yet delivered.
func (e *env) queueDepths(ctx context.Context) (map[string]int, error) {
	if e.js != nil {
		return e.natsQueueDepths(ctx)
	}
	out := map[string]int{}
	for _, kind := range []string{"poll", "fetched", "written", "processed"} {
		var parts []string
		for _, tbl := range e.topicTables(kind) {
			// The stored topic keeps handled rows, and results stay for every
			// instance to read (marked once one has): count what is not done.
			q := "SELECT count(*) FROM " + tbl
			if kind == "fetched" || kind == "processed" {
				q += " WHERE NOT acked"
			}
			parts = append(parts, "("+q+")")
		}
		var n int
		if err := e.cfg.Pool.QueryRow(ctx, "SELECT "+strings.Join(parts, " + ")).Scan(&n); err != nil {
			return nil, err
		}
		out[kind] = n
	}
	return out, nil
}

// natsQueueDepths is queueDepths on the nats backend. The poll and
// written streams are work queues, so whatever they hold
// (delivered or not) is unfinished work. The fetched stream keeps everything for replay:
// its unfinished work is what its durable consumer has not yet acked. The
// processed stream has interest retention: a result stays until every
// instance's results consumer has acked it (or has gone away), so what it
// holds is results not yet delivered, as on postgres.
func (e *env) natsQueueDepths(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, kind := range []string{"poll", "fetched", "written", "processed"} {
		for s := range shards {
			name := natsStream(e.topic(kind, s))
			if kind == "fetched" {
				ci, err := e.js.ConsumerInfo(name, name, nats.Context(ctx))
				if err != nil {
					return nil, fmt.Errorf("consumer %s: %w", name, err)
				}
				out[kind] += int(ci.NumPending) + ci.NumAckPending
				continue
			}
			si, err := e.js.StreamInfo(name, nats.Context(ctx))
			if err != nil {
				return nil, fmt.Errorf("stream %s: %w", name, err)
			}
			out[kind] += int(si.State.Msgs)
		}
	}
	return out, nil
}

// storedFetch is one message of the stored topic race.fetched.
type storedFetch struct {
	pollID   string
	observed string // observed_at, RFC 3339
	acked    bool
}

// storedFetches reads every stored race.fetched message.
func (e *env) storedFetches(ctx context.Context) ([]storedFetch, error) {
	if e.js != nil {
		return e.natsStoredFetches(ctx)
	}
	var parts []string
	for _, tbl := range e.topicTables("fetched") {
		parts = append(parts, `SELECT metadata->>'poll_id', coalesce(metadata->>'observed_at', ''), acked FROM `+tbl)
	}
	rows, err := e.cfg.Pool.Query(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storedFetch, error) {
		var f storedFetch
		return f, row.Scan(&f.pollID, &f.observed, &f.acked)
	})
}

// natsStoredFetches reads the fetched streams message by message. The
// durable consumer has at most one message outstanding and takes them in
// stream order, so a message is acked exactly when its sequence is at or
// below the consumer's ack floor.
func (e *env) natsStoredFetches(ctx context.Context) ([]storedFetch, error) {
	var out []storedFetch
	for s := range shards {
		name := natsStream(e.topic("fetched", s))
		si, err := e.js.StreamInfo(name, nats.Context(ctx))
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		ci, err := e.js.ConsumerInfo(name, name, nats.Context(ctx))
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", name, err)
		}
		for seq := si.State.FirstSeq; si.State.Msgs > 0 && seq <= si.State.LastSeq; seq++ {
			m, err := e.js.GetMsg(name, seq, nats.Context(ctx))
			if errors.Is(err, nats.ErrMsgNotFound) {
				continue // deleted: a gap in the sequence
			}
			if err != nil {
				return nil, fmt.Errorf("stream %s message %d: %w", name, seq, err)
			}
			out = append(out, storedFetch{pollID: m.Header.Get("poll_id"), observed: m.Header.Get("observed_at"), acked: seq <= ci.AckFloor.Stream})
		}
	}
	return out, nil
}

// poisoned counts the messages in the poison queue.
func (e *env) poisoned(ctx context.Context) (int, error) {
	topic := e.topic("poison", -1)
	if e.js == nil {
		var n int
		err := e.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM `+topicTable(topic)).Scan(&n)
		return n, err
	}
	si, err := e.js.StreamInfo(natsStream(topic), nats.Context(ctx))
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", natsStream(topic), err)
	}
	return int(si.State.Msgs), nil
}

func (e *env) pending(ctx context.Context) (int, error) {
	d, err := e.queueDepths(ctx)
	if err != nil {
		return 0, err
	}
	return d["poll"] + d["fetched"] + d["written"] + d["processed"], nil
}

// written is how many of ids have a race_polls row.
func (e *env) written(ctx context.Context, ids []string) (int, error) {
	var n int
	err := e.cfg.Pool.QueryRow(ctx, `SELECT count(DISTINCT poll_id) FROM race_polls WHERE poll_id = ANY($1)`, ids).Scan(&n)
	return n, err
}

// waitDrained waits until every requested poll is written and no work is
// left in any queue; it returns how long that took. p, when running, gets a
// goroutine dump if the flow does not drain.
func (e *env) waitDrained(p *proc, ids []string, within time.Duration) time.Duration {
	t := e.t
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err1 := e.written(ctx, ids)
		left, err2 := e.pending(ctx)
		cancel()
		if err := errors.Join(err1, err2); err != nil {
			last = err.Error()
		} else if n == len(ids) && left == 0 {
			return time.Since(start)
		} else {
			last = fmt.Sprintf("%d of %d polls written, %d messages pending", n, len(ids), left)
		}
		if time.Now().After(deadline) {
			e.diagnose(p)
			t.Fatalf("flow did not drain within %s: %s", within, last)
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.done
		}
		select {
		case <-exited:
			t.Fatalf("run #%d exited while draining (%v): %s\n%s", p.n, p.err, last, tail(p.logPath, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requeueKilled waits until every requested poll is written or poisoned and
// no work is left, then requeues what the kills poisoned, as an operator
// would, and returns how many. A kill while a message is handled counts as
// a delivery without an outcome, as a crash the message caused would
// (flows.Config.MaxDeliveries), so a message in flight at that many kills
// goes to the poison queue: on a busy machine, where handling is slow and
// the kills come often, it happens. Anything poisoned for another reason
// fails the test.
func (e *env) requeueKilled(p *proc, ids []string, within time.Duration) int {
	t := e.t
	t.Helper()
	q := e.poller.Driver().Poison()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err1 := e.written(ctx, ids)
		left, err2 := e.pending(ctx)
		msgs, err3 := q.List(ctx, driver.PoisonFilter{})
		cancel()
		require.NoError(t, errors.Join(err1, err2, err3))
		poisoned := 0
		for _, m := range msgs {
			if want[m.PollID] {
				poisoned++
			}
		}
		if left == 0 && n+poisoned >= len(ids) {
			for _, m := range msgs {
				require.Equal(t, flows.KindRedelivered, m.Kind, "poll %s poisoned at %s: %s", m.PollID, m.Stage, m.Reason)
			}
			if len(msgs) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := q.Requeue(ctx, driver.PoisonSelector{All: true})
				cancel()
				require.NoError(t, err)
			}
			return len(msgs)
		}
		if time.Now().After(deadline) {
			e.diagnose(p)
			t.Fatalf("flow did not settle within %s: %d of %d polls written, %d poisoned, %d messages pending",
				within, n, len(ids), poisoned, left)
		}
		select {
		case <-p.done:
			t.Fatalf("run #%d exited while settling (%v)\n%s", p.n, p.err, tail(p.logPath, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tally is the oracle's verdict over (race, poll).
type tally struct {
	Requested   int   // polls whose publish was acknowledged
	Ambiguous   int   // polls whose publish failed: stored or not, at most once
	AmbiguousOK int   // of those, written (exactly once)
	Processed   int   // requested polls written exactly once
	Lost        int   // requested polls not written
	Duplicated  int   // polls with more than one race_polls row
	StoredTwice int   // polls with more than one race.fetched row (fetched and stored twice)
	Mismatched  int   // race_polls rows without exactly one acked race.fetched row at their observed_at
	Unrequested int   // race_polls rows of polls nobody requested
	Partial     int   // history rows without the race_polls row of their poll
	HistoryDups int   // money_flow_history rows sharing (race, entrant, polling_timestamp)
	Poisoned    int   // rows in race.poison
	Pending     int   // messages still queued
	APIFetches  int64 // event requests the simulator served
	examples    []string
}

func (c tally) String() string {
	return fmt.Sprintf("requested=%d ambiguous=%d (written %d) processed=%d lost=%d duplicated=%d stored_twice=%d mismatched=%d unrequested=%d partial=%d history_dups=%d poisoned=%d pending=%d api_fetches=%d",
		c.Requested, c.Ambiguous, c.AmbiguousOK, c.Processed, c.Lost, c.Duplicated, c.StoredTwice, c.Mismatched, c.Unrequested,
		c.Partial, c.HistoryDups, c.Poisoned, c.Pending, c.APIFetches)
}

// check runs the oracle over the database.
func (e *env) check(requested, ambiguous []string) tally {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := e.cfg.Pool
	c := tally{Requested: len(requested), Ambiguous: len(ambiguous)}
	example := func(format string, args ...any) {
		if len(c.examples) < 10 {
			c.examples = append(c.examples, fmt.Sprintf(format, args...))
		}
	}

	stored, err := e.storedFetches(ctx)
	require.NoError(t, err)
	fetched := map[string][]storedFetch{}
	for _, f := range stored {
		fetched[f.pollID] = append(fetched[f.pollID], f)
	}

	rows, err := db.Query(ctx, `SELECT poll_id, observed_at FROM race_polls`)
	require.NoError(t, err)
	ledger := map[string][]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		require.NoError(t, rows.Scan(&id, &at))
		ledger[id] = append(ledger[id], at)
	}
	require.NoError(t, rows.Err())

	known := map[string]bool{}
	for _, id := range ambiguous {
		known[id] = true
	}
	for _, id := range requested {
		known[id] = true
		switch n := len(ledger[id]); {
		case n == 0:
			c.Lost++
			example("lost: %s (%d stored fetches)", id, len(fetched[id]))
		case n == 1:
			c.Processed++
		}
	}
	for _, id := range ambiguous {
		if len(ledger[id]) == 1 {
			c.AmbiguousOK++
		}
	}
	for id, ats := range ledger {
		if !known[id] {
			c.Unrequested++
			example("unrequested: %s", id)
		}
		if len(ats) > 1 {
			c.Duplicated++
			example("duplicated: %s written %d times", id, len(ats))
		}
		for _, at := range ats {
			matches := 0
			for _, f := range fetched[id] {
				obs, err := time.Parse(time.RFC3339Nano, f.observed)
				if err == nil && f.acked && obs.Sub(at).Abs() < time.Microsecond {
					matches++
				}
			}
			if matches != 1 {
				c.Mismatched++
				example("mismatched: %s observed %s has %d matching stored fetches of %d", id, at.Format(time.RFC3339Nano), matches, len(fetched[id]))
			}
		}
	}
	for id, fs := range fetched {
		if len(fs) > 1 {
			c.StoredTwice++
			example("stored twice: %s has %d race.fetched rows", id, len(fs))
		}
	}

	require.NoError(t, db.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM money_flow_history m WHERE NOT EXISTS (
		            SELECT 1 FROM race_polls p WHERE p.race_id = m.race_id AND p.observed_at = m.polling_timestamp))
		     + (SELECT count(*) FROM odds_history o WHERE NOT EXISTS (
		            SELECT 1 FROM race_polls p WHERE p.race_id = o.race_id AND p.observed_at = o.event_timestamp))`).Scan(&c.Partial))
	require.NoError(t, db.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT 1 FROM money_flow_history
		                      GROUP BY race_id, entrant_id, polling_timestamp HAVING count(*) > 1) d`).Scan(&c.HistoryDups))
	c.Poisoned, err = e.poisoned(ctx)
	require.NoError(t, err)
	c.Pending, err = e.pending(ctx)
	require.NoError(t, err)
	for _, r := range e.sim.Races() {
		c.APIFetches += e.sim.RaceRequests(r.ID)
	}
	return c
}

// requireExactlyOnce fails unless every requested poll was written exactly
// once and nothing else is wrong.
func requireExactlyOnce(t *testing.T, c tally) {
	t.Helper()
	msg := c.String() + "\n" + strings.Join(c.examples, "\n")
	require.Positive(t, c.Requested, msg)
	require.Zero(t, c.Lost, "lost polls: "+msg)
	require.Zero(t, c.Duplicated, "duplicated polls: "+msg)
	require.Zero(t, c.StoredTwice, "polls fetched and stored twice: "+msg)
	require.Zero(t, c.Mismatched, "ledger rows without their stored fetch: "+msg)
	require.Zero(t, c.Unrequested, "polls nobody requested: "+msg)
	require.Zero(t, c.Partial, "history rows of unwritten polls: "+msg)
	require.Zero(t, c.HistoryDups, "duplicated history: "+msg)
	require.Zero(t, c.Pending, "work left in the queues: "+msg)
	require.Equal(t, c.Requested, c.Processed, msg)
}

// stats summarises durations for the report.
func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("n=%d min=%s median=%s max=%s mean=%s", len(s), r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), r(sum/time.Duration(len(s))))
}
