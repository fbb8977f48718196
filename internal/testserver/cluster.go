package testserver

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of real redis-server processes on loopback.
type Cluster struct {
	// Nodes are the servers, masters first as created.
	Nodes []*Server

	masters int // as created
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Node returns the node serving addr.
func (c *Cluster) Node(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// NodeTimeout is the cluster-node-timeout of test clusters: how long a
// master may be unreachable before its replica is promoted.
const NodeTimeout = time.Second

// clusterPort returns a free port whose cluster bus port (+10000) is free too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := FreePort(t)
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000))); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("testserver: no free port pair for a cluster node")
	return 0
}

// RedisCluster starts masters × (1 + replicas) redis-server nodes and forms
// a cluster with redis-cli --cluster create, then waits until every node
// reports cluster_state:ok. The nodes stop at test cleanup.
func RedisCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	lookPath(t, "redis-server", "redis-server")
	cli := lookPath(t, "redis-cli", "redis-tools")
	c := &Cluster{masters: masters}
	for range masters * (1 + replicas) {
		port := clusterPort(t)
		dir := t.TempDir()
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, bin: lookPath(t, "redis-server", "redis-server"),
			args: []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--save", "", "--appendonly", "no", "--protected-mode", "no",
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout / time.Millisecond)),
				"--cluster-announce-ip", "127.0.0.1",
				// Keep serving the slots that are up while a master fails
				// over, as docs/operations.md recommends for sessions.
				"--cluster-require-full-coverage", "no",
			},
			ready: ping,
		}
		if err := s.Start(); err != nil {
			t.Fatalf("testserver: cluster node: %v", err)
		}
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testserver: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 30*time.Second)
	return c
}

// WaitHealthy waits until every running node reports cluster_state:ok, every
// slot served by a master it does not suspect (cluster_slots_ok:16384), and
// as many masters with slots as the cluster was created with
// (cluster_size). cluster_state alone is not enough: under
// cluster-require-full-coverage no it stays ok while slots are down.
func (c *Cluster) WaitHealthy(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testserver: cluster not healthy after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		info, err := rdb.ClusterInfo(context.Background()).Result()
		rdb.Close()
		if err != nil {
			return err
		}
		for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", fmt.Sprintf("cluster_size:%d", c.masters)} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("%s: not %s", n.Addr, want)
			}
		}
	}
	return nil
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
