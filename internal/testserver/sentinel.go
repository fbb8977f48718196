package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the test Sentinels monitor.
const SentinelMaster = "sessions"

// Sentinel is a master, its replica and three Sentinels on loopback.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// SentinelAddrs returns the Sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// DownAfter is the Sentinels' down-after-milliseconds: how long the master
// may be silent before a failover starts.
const DownAfter = time.Second

// RedisSentinel starts a master, one replica of it and three Sentinels
// (quorum 2) monitoring it as SentinelMaster, and waits until the Sentinels
// know the replica.
func RedisSentinel(t testing.TB) *Sentinel {
	t.Helper()
	st := &Sentinel{Master: Redis(t)}
	st.Replica = Redis(t, "--replicaof", "127.0.0.1", portOf(st.Master.Addr))
	for range 3 {
		path := lookPath(t, "redis-server", "redis-server")
		dir := t.TempDir()
		port := FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n", port, dir) +
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n", SentinelMaster, portOf(st.Master.Addr)) +
			fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", SentinelMaster, DownAfter.Milliseconds()) +
			fmt.Sprintf("sentinel failover-timeout %s 10000\n", SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t, bin: path, args: []string{conf, "--sentinel"}, ready: ping}
		if err := s.Start(); err != nil {
			t.Fatalf("testserver: sentinel: %v", err)
		}
		t.Cleanup(s.Stop)
		st.Sentinels = append(st.Sentinels, s)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range st.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		for {
			replicas, err := sc.Replicas(context.Background(), SentinelMaster).Result()
			if err == nil && len(replicas) > 0 {
				break
			}
			if time.Now().After(deadline) {
				sc.Close()
				t.Fatalf("testserver: sentinel %s does not see the replica: %v", s.Addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.Close()
	}
	return st
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
