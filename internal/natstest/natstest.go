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

// start runs a private server that dies with this process.
func start(bin string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir, err := os.MkdirTemp("", "natstest-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := usable(url)
		if err == nil {
			return url, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return "", fmt.Errorf("started %s on %s: %w", bin, url, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a server that cannot notify us
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
