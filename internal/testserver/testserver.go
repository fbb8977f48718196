// Package testserver starts real servers (redis-server, memcached) from PATH
// for tests, on free loopback ports with their own temp dirs, and stops them
// when the test ends. Tests never rely on a server someone else started.
//
// When a binary is missing the test is skipped with a message saying so,
// unless SESSIONKIT_REQUIRE_SERVERS=1 (as in CI), when it fails.
package testserver

import (
	"bufio"
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
)

// RequireEnv names the environment variable that turns a missing server
// binary from a skip into a failure.
const RequireEnv = "SESSIONKIT_REQUIRE_SERVERS"

// Server is a server process started for a test.
type Server struct {
	// Addr is host:port on loopback.
	Addr string

	t    testing.TB
	bin  string
	args []string

	ready func(addr string) error

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
}

// lookPath finds bin or skips (or fails, under RequireEnv) the test.
func lookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found on PATH (install the Debian package %q); the tests against a real %s are skipped", bin, pkg, bin)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 but %s", RequireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs bin with the args that mkArgs gives for a port and a temp dir,
// retrying on another port if the first was taken meanwhile, and waits until
// ready(addr) succeeds.
func start(t testing.TB, bin, pkg string, mkArgs func(port int, dir string) []string, ready func(addr string) error) *Server {
	t.Helper()
	path := lookPath(t, bin, pkg)
	dir := t.TempDir()
	var lastErr error
	for range 3 {
		port := FreePort(t)
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, bin: path, args: mkArgs(port, dir)}
		s.ready = ready
		if lastErr = s.Start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("testserver: cannot start %s: %v", bin, lastErr)
	return nil
}

// Start starts the server process (again, after Stop) on the same address,
// and waits until it answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("testserver: %s already running", s.bin)
	}
	cmd := exec.Command(s.bin, s.args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited: %v\n%s", s.bin, err, out.String())
		default:
		}
		if err := s.ready(s.Addr); err == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s not ready on %s after 10s: %v\n%s", s.bin, s.Addr, err, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stop kills the server process and waits for it to exit. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// command sends one inline command over a new connection and returns the
// first line of the reply.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Redis starts a redis-server with no persistence on a free loopback port.
func Redis(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	return start(t, "redis-server", "redis-server", func(port int, dir string) []string {
		return append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--protected-mode", "no",
		}, extraArgs...)
	}, ping)
}

// ping is the readiness check of a redis-server (or Sentinel).
func ping(addr string) error {
	reply, err := command(addr, "PING")
	if err == nil && reply != "+PONG" {
		err = fmt.Errorf("PING answered %q", reply)
	}
	return err
}

// Memcached starts a memcached on a free loopback port.
func Memcached(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	return start(t, "memcached", "memcached", func(port int, _ string) []string {
		args := []string{"-p", strconv.Itoa(port), "-l", "127.0.0.1", "-U", "0", "-m", "64"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses root without it
		}
		return append(args, extraArgs...)
	}, func(addr string) error {
		reply, err := command(addr, "version")
		if err == nil && !strings.HasPrefix(reply, "VERSION ") {
			err = fmt.Errorf("version answered %q", reply)
		}
		return err
	})
}

// MemcachedTTL asks a memcached for an item's remaining TTL in seconds with
// the meta command "mg <key> t": ok is false for a missing item, and ttl is
// -1 for an item that never expires.
func MemcachedTTL(addr, key string) (ttl int, ok bool, err error) {
	reply, err := command(addr, "mg "+key+" t")
	if err != nil {
		return 0, false, err
	}
	if reply == "EN" {
		return 0, false, nil
	}
	for _, f := range strings.Fields(reply)[1:] {
		if strings.HasPrefix(f, "t") {
			ttl, err = strconv.Atoi(f[1:])
			return ttl, err == nil, err
		}
	}
	return 0, false, fmt.Errorf("mg answered %q", reply)
}

// MemcachedStat returns one numeric value of a memcached's "stats".
func MemcachedStat(addr, name string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(c, "stats\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			return 0, fmt.Errorf("memcached has no stat %q", name)
		}
		if v, ok := strings.CutPrefix(line, "STAT "+name+" "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
}

// Pause freezes the server process (SIGSTOP): connections stay open and
// nothing answers, as with a hung server or a network partition. Resume
// undoes it. It returns once every thread has stopped (where /proc says so):
// the signal alone lets a thread that is running answer one more request.
func (s *Server) Pause() error {
	if err := s.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("testserver: %s did not stop within 5s of SIGSTOP", s.bin)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread of process pid is stopped, or true
// when /proc cannot tell (not Linux).
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return true
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(task)
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("testserver: %s is not running", s.bin)
	}
	return s.cmd.Process.Signal(sig)
}
