package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresServer is the PostgreSQL server of a test binary: initdb makes a
// cluster in a temporary directory and postgres serves it on a free loopback
// port, with durability off (fsync, synchronous_commit), since tests throw
// the data away. initdb takes seconds, so one server serves every test of
// the binary (each test makes its own tables) and TestMain stops it.
type PostgresServer struct {
	// URL is a connection string for the superuser "postgres" (trust
	// authentication) and the database "postgres".
	URL string
	// Addr is host:port on loopback.
	Addr string

	dir    string
	cmd    *exec.Cmd
	exited chan error
}

var sharedPostgres struct {
	once sync.Once
	pg   *PostgresServer
	err  error
}

// Postgres returns the test binary's PostgreSQL, starting it on first
// use. The binary's TestMain must call StopPostgres after m.Run.
//
// The binaries are looked up on PATH, then under
// /usr/lib/postgresql/<version>/bin (where Debian puts them), newest version
// first; when there are none the test is skipped, or fails under RequireEnv.
// PostgreSQL refuses to run as root, so under root initdb and postgres run
// as the user "postgres", which owns the temporary directory.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	bin := postgresBinDir()
	if bin == "" {
		lookPath(t, "initdb", "postgresql") // not on PATH nor under /usr/lib/postgresql: skips or fails
	}
	sharedPostgres.once.Do(func() { sharedPostgres.pg, sharedPostgres.err = startPostgres(t, bin) })
	switch {
	case sharedPostgres.err != nil:
		t.Fatalf("testserver: %v", sharedPostgres.err)
	case sharedPostgres.pg == nil:
		t.Fatal("testserver: PostgreSQL did not start (see the first test that asked for it)")
	}
	return sharedPostgres.pg
}

// StopPostgres stops the test binary's PostgreSQL, if it was started, and
// removes its directory. Call it from TestMain after m.Run.
func StopPostgres() {
	if pg := sharedPostgres.pg; pg != nil {
		pg.stop()
	}
}

func startPostgres(t testing.TB, bin string) (*PostgresServer, error) {
	dir, err := os.MkdirTemp("", "sessionkit-postgres-")
	if err != nil {
		return nil, err
	}
	p := &PostgresServer{dir: dir}
	cred, err := postgresCredential(dir)
	if err == nil {
		err = p.initdb(bin, cred)
	}
	for range 3 { // another port if the free one was taken meanwhile
		if err != nil {
			break
		}
		if err = p.start(bin, cred, FreePort(t)); err == nil {
			return p, nil
		}
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("cannot start PostgreSQL from %s: %w", bin, err)
}

// postgresBinDir returns the directory holding initdb and postgres, or "".
func postgresBinDir() string {
	if path, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(path)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// pgVersion is the major version in /usr/lib/postgresql/<version>/bin.
func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// postgresCredential returns, when running as root, the credential of the
// user "postgres" and gives it dir; otherwise nil (run as ourselves).
func postgresCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *PostgresServer) command(cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = p.dir
	// The child drops to cred before exec (as runuser would), and dies with
	// the test binary, so a crashed test leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (p *PostgresServer) initdb(bin string, cred *syscall.Credential) error {
	cmd := p.command(cred, filepath.Join(bin, "initdb"), "--no-sync", "--auth=trust", "--username=postgres",
		"--encoding=UTF8", "--locale=C", "--pgdata="+filepath.Join(p.dir, "data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

func (p *PostgresServer) start(bin string, cred *syscall.Credential, port int) error {
	logPath := filepath.Join(p.dir, "postgres.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	defer log.Close()
	if cred != nil {
		_ = log.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd := p.command(cred, filepath.Join(bin, "postgres"), "-D", filepath.Join(p.dir, "data"),
		"-p", strconv.Itoa(port), "-k", p.dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		// Refused writes (a unique or check violation is how some are
		// refused) are not worth a log line each.
		"-c", "log_min_messages=fatal", "-c", "log_min_error_statement=panic")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.URL = "postgres://postgres@" + p.Addr + "/postgres?sslmode=disable"
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited: %v\n%s", err, out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgconn.Connect(ctx, p.URL)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			p.cmd, p.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres not ready on %s after 30s: %v\n%s", p.Addr, err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop shuts the server down (fast shutdown: open connections are cut) and
// removes its directory.
func (p *PostgresServer) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
	os.RemoveAll(p.dir)
}
