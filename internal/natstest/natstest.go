// Package natstest gives tests a NATS JetStream server and a namespace of
// their own on it, deleted afterwards.
package natstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// server is the one server of this test process.
var server struct {
	once sync.Once
	url  string
	err  error
}

// URL is a NATS server with JetStream: NATS_URL, else 127.0.0.1:4222, else a
// nats-server started for this test process (when the binary is on PATH or
// in /usr/sbin).
// Without any, the test fails: CI starts one (.ci/run).
func URL(t testing.TB) string {
	t.Helper()
	server.once.Do(func() { server.url, server.err = find() })
	if server.err != nil {
		t.Fatalf("natstest: no NATS JetStream server: %v (start one with `nats-server -js`, or set NATS_URL)", server.err)
	}
	return server.url
}

func find() (string, error) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	errAt := usable(url)
	if errAt == nil {
		return url, nil
	}
	if os.Getenv("NATS_URL") != "" {
		return "", errAt
	}
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		// Debian's package installs it outside a user's PATH.
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			return "", fmt.Errorf("%s: %w; and no nats-server on PATH or in /usr/sbin to start", url, errAt)
		}
	}
	return start(bin)
}

// usable checks that url answers and has JetStream.
func usable(url string) error {
	nc, js, err := connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = js.AccountInfo()
	return err
}

// connect opens a connection and its JetStream context.
func connect(url string) (*nats.Conn, nats.JetStreamContext, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// start runs a private server for the test process.
func start(bin string) (string, error) {
	srv, err := newServer(bin)
	if err != nil {
		return "", err
	}
	return srv.URL, srv.Start()
}

// Server is a nats-server with JetStream of one test, which the test can
// stop and start again (same port, same storage), as an operator restarts
// one.
type Server struct {
	URL  string
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Private starts a server for t alone, stopped and its storage removed
// when t ends. It needs the nats-server binary.
func Private(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			t.Fatalf("natstest: a private NATS server needs the nats-server binary (Debian: nats-server): %v", err)
		}
	}
	srv, err := newServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Log(err)
		}
		if err := os.RemoveAll(srv.dir); err != nil {
			t.Logf("natstest: removing the server's storage: %v", err)
		}
	})
	return srv
}

func newServer(bin string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir, err := os.MkdirTemp("", "natstest-")
	if err != nil {
		return nil, err
	}
	return &Server{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), bin: bin, dir: dir, port: port}, nil
}

// Start starts the server and waits until JetStream answers.
func (s *Server) Start() error {
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := usable(s.URL)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("natstest: %s exited at start", s.bin)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("natstest: started %s on %s: %w", s.bin, s.URL, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a server that cannot notify us
	}
}

// Stop stops the server (SIGTERM: it closes its storage cleanly) and waits
// for it to exit.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("natstest: %s ignored SIGTERM", s.bin)
	}
}

// Namespace is a flow namespace no other test uses; its streams are deleted
// when the test ends.
func Namespace(t testing.TB, url string) string {
	t.Helper()
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ns := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if err := DeleteStreams(url, "raceflow_"+ns+"_"); err != nil {
			t.Errorf("natstest: delete streams of %s: %v", ns, err)
		}
	})
	return ns
}

// DeleteStreams deletes every stream whose name starts with prefix.
func DeleteStreams(url, prefix string) error {
	nc, js, err := connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	for name := range js.StreamNames() {
		if strings.HasPrefix(name, prefix) {
			if err := js.DeleteStream(name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// StreamMsgs counts the messages of the streams whose names start with prefix.
func StreamMsgs(t testing.TB, url, prefix string) int {
	t.Helper()
	nc, js, err := connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n := 0
	for info := range js.StreamsInfo() {
		if strings.HasPrefix(info.Config.Name, prefix) {
			n += int(info.State.Msgs)
		}
	}
	return n
}
