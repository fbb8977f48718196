package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server this program starts and stops itself.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (apt-get install redis-server): %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "sessionkit-bench-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	defer rdb.Close()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		// Dial first: go-redis logs every refused connection.
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			if rdb.Ping(context.Background()).Err() == nil {
				return s, nil
			}
		}
		if time.Since(start) > 10*time.Second {
			s.stop()
			return nil, fmt.Errorf("redis-server did not answer on %s", s.addr)
		}
	}
}

func (s *redisServer) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	os.RemoveAll(s.dir)
}

func (s *redisServer) version() string {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	defer rdb.Close()
	return infoField(rdb, "server", "redis_version")
}

// counters reads, in one INFO, what Redis has read plus written on all
// connections so far (bytes) and the CPU time it has used, user plus
// system, in µs.
func (s *redisServer) counters(admin *redis.Client) (bytes int64, cpuUs float64) {
	info := admin.Info(context.Background(), "stats", "cpu").Val()
	num := func(field string) float64 {
		v, _ := strconv.ParseFloat(infoValue(info, field), 64)
		return v
	}
	return int64(num("total_net_input_bytes") + num("total_net_output_bytes")),
		(num("used_cpu_user") + num("used_cpu_sys")) * 1e6
}

func infoField(rdb *redis.Client, section, field string) string {
	return infoValue(rdb.Info(context.Background(), section).Val(), field)
}

func infoValue(info, field string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// roundTrips counts round trips on every connection made by countingDial:
// a read that follows a write ends one.
var roundTrips atomic.Int64

type countingConn struct {
	net.Conn
	wrote atomic.Bool
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	if c.wrote.Swap(false) {
		roundTrips.Add(1)
	}
	return c.Conn.Read(b)
}

func countingDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c}, nil
}

// newGoRedis returns a go-redis client whose round trips are counted.
func newGoRedis(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Dialer: countingDial, PoolSize: 32})
}
