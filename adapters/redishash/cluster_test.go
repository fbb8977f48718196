package redishash_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func clusterClient(t *testing.T, c *testserver.Cluster) *redis.ClusterClient {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { client.Close() })
	return client
}

// TestConformanceRedisCluster runs the whole suite on a real Redis Cluster
// of 3 masters and 3 replicas, through redis.NewClusterClient.
func TestConformanceRedisCluster(t *testing.T) {
	client := clusterClient(t, testserver.RedisCluster(t, 3, 1))
	runOnRealRedis(t, client, func(ctx context.Context) error {
		return client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	})
}

// TestClusterFailover spreads sessions over every master, kills one master
// process and measures how long its sessions take to answer again once the
// replica is promoted. Sessions on the other masters must never fail, and
// the failed master's sessions, replicated before the kill, must survive.
func TestClusterFailover(t *testing.T) {
	cluster := testserver.RedisCluster(t, 3, 1)
	// go-redis reloads the slot map on MOVED, or once it is older than
	// ClusterStateReloadInterval (default 60s); a dead master answers
	// nothing, so without a short interval its slots stay routed to it.
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: cluster.Addrs(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		ClusterStateReloadInterval: time.Second,
	})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}

	// 60 sessions, grouped by the master that owns them.
	byMaster := map[string][]string{}
	for i := range 60 {
		key := fmt.Sprintf("session:failover:%d", i)
		require.NoError(t, store.Create(ctx, key, []sessionkit.Field{{Name: "n", Value: []byte(fmt.Sprint(i))}}, exp))
		master, err := client.MasterForKey(ctx, key)
		require.NoError(t, err)
		addr := master.Options().Addr
		byMaster[addr] = append(byMaster[addr], key)
	}
	require.Len(t, byMaster, 3, "sessions on every master")
	var victim string
	for addr := range byMaster {
		victim = addr
		break
	}
	waitReplicated(t, cluster, victim, byMaster[victim])

	// Traffic on every session until the victim's sessions all answer
	// again after the kill.
	type failure struct {
		key string
		err error
	}
	var (
		mu       sync.Mutex
		failures []failure
	)
	touchAll := func(keys []string) (ok bool) {
		ok = true
		for _, k := range keys {
			if _, err := store.Touch(ctx, k); err != nil {
				mu.Lock()
				failures = append(failures, failure{k, err})
				mu.Unlock()
				ok = false
			}
		}
		return ok
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopTraffic := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopTraffic() // also when the test fails half-way
	for addr, keys := range byMaster {
		if addr == victim {
			continue
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					touchAll(keys)
				}
			}
		})
	}

	killed := time.Now()
	cluster.Node(victim).Stop()
	var recovered time.Duration
	for {
		if touchAll(byMaster[victim]) {
			recovered = time.Since(killed)
			break
		}
		if time.Since(killed) > 30*time.Second {
			mu.Lock()
			last := failures[len(failures)-1]
			mu.Unlock()
			for _, n := range cluster.Nodes {
				if n.Running() {
					r := redis.NewClient(&redis.Options{Addr: n.Addr})
					t.Logf("CLUSTER NODES from %s:\n%s", n.Addr, r.ClusterNodes(ctx).Val())
					r.Close()
					break
				}
			}
			t.Fatalf("the failed shard did not recover in 30s; last error: %v", last.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopTraffic()
	t.Logf("master %s killed: its sessions answered again after %v (cluster-node-timeout %v)", victim, recovered.Round(time.Millisecond), testserver.NodeTimeout)

	for _, f := range failures {
		require.Contains(t, byMaster[victim], f.key, "a session on a surviving master failed: %v", f.err)
		require.True(t, errors.Is(f.err, sessionkit.ErrUnavailable), "a failure during failover is ErrUnavailable, never a missing session: %v", f.err)
	}
	for _, k := range byMaster[victim] {
		vals, err := store.Get(ctx, k, "n")
		require.NoError(t, err, "replicated session %s lost in the failover", k)
		require.NotNil(t, vals[0])
	}
}

// waitReplicated waits until the replica of master holds every key. (WAIT
// would only count the writes of its own connection, not the pool's.)
func waitReplicated(t *testing.T, cluster *testserver.Cluster, master string, keys []string) {
	t.Helper()
	ctx := t.Context()
	for _, n := range cluster.Nodes {
		r := redis.NewClient(&redis.Options{Addr: n.Addr})
		role, err := r.Do(ctx, "ROLE").Slice()
		if err != nil || len(role) < 3 || role[0] != "slave" || net.JoinHostPort(fmt.Sprint(role[1]), fmt.Sprint(role[2])) != master {
			r.Close()
			continue
		}
		conn := r.Conn() // READONLY holds for one connection
		require.NoError(t, conn.ReadOnly(ctx).Err())
		deadline := time.Now().Add(10 * time.Second)
		for _, k := range keys {
			for conn.Exists(ctx, k).Val() != 1 {
				require.True(t, time.Now().Before(deadline), "key %s never reached the replica", k)
				time.Sleep(10 * time.Millisecond)
			}
		}
		conn.Close()
		r.Close()
		return
	}
	t.Fatalf("no replica found for master %s", master)
}
