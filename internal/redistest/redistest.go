// Package redistest starts private redis-server processes for tests: one per
// call, on a free loopback port, with its data in the test's temp dir, gone
// when the test ends. A missing redis-server fails the test with a message
// saying how to install it; it never skips.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	Dir  string
	args []string
	tb   testing.TB

	mu     sync.Mutex
	cmd    *exec.Cmd
	waitCh chan error
}

// Binary returns the path of redis-server or an error that says how to get it.
func Binary() (string, error) {
	if p := os.Getenv("HERALD_REDIS_SERVER"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found in PATH: install it (Debian: apt-get install -y redis-server) or run `make test`, which installs it")
	}
	return p, nil
}

// Start starts a fresh redis-server for tb. Extra args are passed as config
// directives, e.g. "--appendonly", "yes".
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s := &Server{Dir: tb.TempDir(), args: args, tb: tb}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.Addr, err = freeAddr()
		if err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Port returns the TCP port number.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *Server) start() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(s.Addr)
	args := []string{
		"--bind", host, "--port", port, "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	args = append(args, s.args...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server on %s exited at start (%v): %s", s.Addr, err, tail(filepath.Join(s.Dir, "redis.log")))
		default:
		}
		if ping(s.Addr) == nil {
			s.mu.Lock()
			s.cmd, s.waitCh = cmd, exited
			s.mu.Unlock()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("redis-server on %s did not answer PING within 10s: %s", s.Addr, tail(filepath.Join(s.Dir, "redis.log")))
}

// Stop kills the server (SIGKILL) and waits for it to exit.
func (s *Server) Stop() { s.halt(false) }

// halt ends the running server: SIGKILL, or SIGTERM when clean (killed
// after 30s if it has not shut down by then: a failure of the test).
func (s *Server) halt(clean bool) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.waitCh
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if !clean {
		_ = cmd.Process.Kill()
		<-exited
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		s.tb.Fatalf("redistest: redis-server on %s did not shut down within 30s of SIGTERM", s.Addr)
	}
}

// Restart stops the server (SIGKILL, a crash) and starts it again on the
// same address and data directory. With AOF on, its data survives, less
// what appendfsync had not yet written (up to a second with everysec).
func (s *Server) Restart() {
	s.tb.Helper()
	s.halt(false)
	s.startAgain()
}

// RestartClean shuts the server down as an operator's restart does
// (SIGTERM: with AOF on, every write it acknowledged is on disk) and starts
// it again on the same address and data directory.
func (s *Server) RestartClean() {
	s.tb.Helper()
	s.halt(true)
	s.startAgain()
}

// Down shuts the server down as an operator's stop does (SIGTERM: with
// AOF on, every write it acknowledged is on disk) and leaves it down until
// Up.
func (s *Server) Down() {
	s.tb.Helper()
	s.halt(true)
}

// Up starts a server that Down or Stop ended again, on the same address
// and data directory.
func (s *Server) Up() {
	s.tb.Helper()
	s.startAgain()
}

func (s *Server) startAgain() {
	s.tb.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("redistest: restart: %v", err)
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}
