// Package pgembed starts a private PostgreSQL server from the machine's own
// binaries, in a data folder it owns, on a free loopback port, and stops it
// cleanly. The demo uses it when DATABASE_URL is unset, and tests use it when
// no server answers.
package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBinaries means no initdb/pg_ctl could be found.
var ErrNoBinaries = errors.New("pgembed: no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or under /usr/lib/postgresql/*/bin; " +
	"install them (Debian: apt-get install postgresql) or set DATABASE_URL to a running server")

// Config controls the private server.
type Config struct {
	// BinDir holds initdb and pg_ctl; empty means search PATH, then
	// /usr/lib/postgresql/<newest>/bin.
	BinDir string
	// Port to listen on 127.0.0.1; 0 picks a free one.
	Port int
	// Durable keeps fsync on. Off by default: a private server is scratch.
	Durable bool
	// RunAsUser runs the server as this OS user when the process is root
	// (PostgreSQL refuses to run as root). Default "postgres", else "nobody".
	RunAsUser string
	// StartTimeout bounds how long start may take.
	StartTimeout time.Duration
}

// Server is a running private PostgreSQL.
type Server struct {
	dir     string
	binDir  string
	port    int
	cred    *syscall.Credential
	opts    string // server options, reused by Resume
	stopped sync.Once
	stopErr error
}

// Start initialises a data folder and starts the server. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	bin, err := findBinDir(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	port := cfg.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	stopOrphans(ctx, bin)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgembed: data folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pgembed: data folder: %w", err)
	}
	s := &Server{dir: dir, binDir: bin, port: port}
	if os.Geteuid() == 0 {
		cred, err := unprivileged(cfg.RunAsUser)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("pgembed: chown data folder: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := s.run(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=200", port, dir)
	if !cfg.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	s.opts = opts
	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := s.run(startCtx, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "server.log"), "-w", "-t", strconv.Itoa(int(cfg.StartTimeout.Seconds())), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, tail(log, 2000))
	}
	return s, nil
}

// URL connects as the superuser to the postgres database over TCP.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// SocketURL is URL over the server's Unix socket, in its data folder: the
// same database without the TCP stack on every round trip, which a command
// running its whole flow against the server (the demo, the benchmark)
// notices. The server does not start unless it could create the socket.
func (s *Server) SocketURL() string {
	return fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", url.QueryEscape(s.dir), s.port)
}

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Halt stops the server but keeps its data, so Resume can start it again
// (tests use it to take the database away from a running process).
func (s *Server) Halt(ctx context.Context) error {
	return s.run(ctx, "pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop")
}

// Resume starts a halted server again on the same port.
func (s *Server) Resume(ctx context.Context) error {
	return s.run(ctx, "pg_ctl", "-D", filepath.Join(s.dir, "data"), "-o", s.opts, "-l", filepath.Join(s.dir, "server.log"), "-w", "start")
}

// Stop shuts the server down and removes its data folder. It is safe to call
// more than once.
func (s *Server) Stop() error {
	s.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := s.run(ctx, "pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop")
		if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
			err = fmt.Errorf("pgembed: remove data folder: %w", rmErr)
		}
		s.stopErr = err
	})
	return s.stopErr
}

// A server's folder is dirPrefix* in the temporary directory, and names in
// ownerFile the process that started it. pg_ctl detaches the server, so a
// process killed before Stop leaves it running; the next Start stops every
// server whose owner is gone.
const (
	dirPrefix = "raceflow-pg-"
	ownerFile = "owner.pid"
)

// stopOrphans stops and removes the private servers whose owner process is
// gone. A folder without an owner is left alone: it may be starting.
func stopOrphans(ctx context.Context, bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(pid) {
			continue
		}
		orphan := &Server{dir: dir, binDir: bin}
		if fi, err := os.Stat(dir); err == nil && os.Geteuid() == 0 {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				orphan.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_ = orphan.run(sctx, "pg_ctl", "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop")
			cancel()
		}
		_ = os.RemoveAll(dir)
	}
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (s *Server) run(ctx context.Context, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, tool), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	// pg_ctl's server must outlive this command: it daemonises itself.
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgembed: %s: %w: %s", tool, err, tail(out.Bytes(), 1000))
	}
	return nil
}

func findBinDir(explicit string) (string, error) {
	if explicit != "" {
		if hasTools(explicit) {
			return explicit, nil
		}
		return "", fmt.Errorf("%w (looked in %s)", ErrNoBinaries, explicit)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if d := filepath.Dir(p); hasTools(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasTools(d) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func hasTools(dir string) bool {
	for _, t := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, t)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func unprivileged(name string) (*syscall.Credential, error) {
	candidates := []string{name}
	if name == "" {
		candidates = []string{"postgres", "nobody"}
	}
	for _, n := range candidates {
		u, err := user.Lookup(n)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("pgembed: running as root and no unprivileged user (%s) exists to run PostgreSQL; create one or set DATABASE_URL",
		strings.Join(candidates, ", "))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgembed: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
