package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/internal/nztabsim"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nzday"
)

// binary is the raceflow binary the tests run, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raceflow-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli tests:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raceflow")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cli tests: build raceflow: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

// String is the whole outcome, for failure messages.
func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// baseEnv is what every run gets: no configuration from the machine the
// tests run on, so only what a test sets applies.
func baseEnv(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// raceflow runs the binary with env and args to its end.
func raceflow(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return raceflowIn(t, env, "", args...)
}

// raceflowIn runs the binary with stdin.
func raceflowIn(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = baseEnv(env)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("run raceflow %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// running is a raceflow process a test talks to while it runs.
type running struct {
	cmd   *exec.Cmd
	lines chan string // stdout and stderr, line by line
	mu    sync.Mutex
	out   strings.Builder // stdout
	err   strings.Builder // stderr
	read  sync.WaitGroup  // the readers of stdout and stderr
	done  chan struct{}   // both read to their end
}

// start runs the binary in the background; the test ends it (a cleanup
// kills what is still running).
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	p := &running{cmd: exec.Command(binary, args...), lines: make(chan string, 4096), done: make(chan struct{})}
	p.cmd.Env = baseEnv(env)
	// Killed with the test binary (a timeout), not left running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	p.read.Add(2)
	go p.scan(stdout, &p.out)
	go p.scan(stderr, &p.err)
	go func() {
		p.read.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *running) scan(r io.Reader, into *strings.Builder) {
	defer p.read.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		p.mu.Lock()
		into.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
		select {
		case p.lines <- sc.Text():
		default: // nobody reads lines now; the text is kept above
		}
	}
}

// waitGuard bounds waitFor: a guard against a hang that prints what the
// process said, not a performance assertion.
const waitGuard = 3 * time.Minute

// waitFor reads output until a line contains want and returns that line.
func (p *running) waitFor(t *testing.T, want string) string {
	t.Helper()
	guard := time.After(waitGuard)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("raceflow ended without printing %q:\n%s", want, p.result(-1))
			}
			if strings.Contains(line, want) {
				return line
			}
		case <-guard:
			t.Fatalf("raceflow printed no %q in %s (still running):\n%s", want, waitGuard, p.result(-1))
		}
	}
}

// wait waits for the process to end and returns what it did.
func (p *running) wait(t *testing.T) result {
	t.Helper()
	go func() {
		for range p.lines { // keep the readers going
		}
	}()
	<-p.done // the output is read to its end before Wait
	err := p.cmd.Wait()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return p.result(code)
}

func (p *running) result(code int) result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return result{code: code, stdout: p.out.String(), stderr: p.err.String()}
}

// apiSim serves a simulated NZ TAB day whose clock stands an hour before
// its first race (every race open, every payload the same on each poll),
// and returns it with its base URL.
func apiSim(t *testing.T, seed int64) (*nztabsim.Sim, string) {
	t.Helper()
	return serveSim(t, seed, nztabsim.DefaultFirstRaceAt)
}

// apiSimNow is apiSim with the day's first race half an hour before now
// (or at 00:01 NZ, early in the day), so that whatever the time of day a
// `raceflow run`, whose scheduler works on the real clock, finds races to
// poll: one it still polls after its start (not final for two hours) or
// one soon to start. With the default card (12:00 NZ on) it would find
// none from about 17:45 NZ to midnight.
func apiSimNow(t *testing.T, seed int64) (*nztabsim.Sim, string) {
	t.Helper()
	now := time.Now()
	sinceMidnight := now.Sub(nzday.Of(now).Start()).Truncate(time.Second)
	return serveSim(t, seed, max(sinceMidnight-30*time.Minute, time.Minute))
}

func serveSim(t *testing.T, seed int64, firstRace time.Duration) (*nztabsim.Sim, string) {
	t.Helper()
	today := nzday.Of(time.Now())
	clock := nztabsim.NewManualClock(today.Start().Add(firstRace - time.Hour))
	sim, err := nztabsim.New(nztabsim.Config{Seed: seed, Date: today.String(), Clock: clock, FirstRaceAt: firstRace})
	require.NoError(t, err)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL + "/affiliates/v1"
}

// freshDB returns the URL of a new, empty database, dropped after the test.
func freshDB(t *testing.T) string {
	t.Helper()
	_, dsn := pgtest.NewEmpty(t)
	return dsn
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
