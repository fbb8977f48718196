package redishash_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func sentinelClient(t *testing.T, st *testserver.Sentinel) redis.UniversalClient {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		MasterName: testserver.SentinelMaster, Addrs: st.SentinelAddrs(),
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
	})
	t.Cleanup(func() { client.Close() })
	return client
}

// TestConformanceRedisSentinel runs the whole suite through a Sentinel-
// managed master (1 master, 1 replica, 3 Sentinels), via UniversalClient.
func TestConformanceRedisSentinel(t *testing.T) {
	client := sentinelClient(t, testserver.RedisSentinel(t))
	runOnRealRedis(t, client, func(ctx context.Context) error { return client.FlushAll(ctx).Err() })
}

// TestSentinelFailover kills the master once its sessions have reached the
// replica, and measures how long the sessions take to answer again through
// the same client once the Sentinels promote the replica.
func TestSentinelFailover(t *testing.T) {
	st := testserver.RedisSentinel(t)
	client := sentinelClient(t, st)
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	var keys []string
	for i := range 20 {
		key := fmt.Sprintf("session:sentinel:%d", i)
		require.NoError(t, store.Create(ctx, key, []sessionkit.Field{{Name: "n", Value: []byte(fmt.Sprint(i))}}, exp))
		keys = append(keys, key)
	}
	replica := redis.NewClient(&redis.Options{Addr: st.Replica.Addr})
	defer replica.Close()
	require.Eventually(t, func() bool { return replica.Exists(ctx, keys...).Val() == int64(len(keys)) },
		10*time.Second, 10*time.Millisecond, "the sessions never reached the replica")

	killed := time.Now()
	st.Master.Stop()
	for {
		_, err := store.Touch(ctx, keys[0])
		if err == nil {
			break
		}
		require.ErrorIs(t, err, sessionkit.ErrUnavailable, "during the failover a session is unavailable, never missing")
		require.Less(t, time.Since(killed), 60*time.Second, "no failover")
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("master killed: sessions answered again after %v (down-after-milliseconds %v)", time.Since(killed).Round(time.Millisecond), testserver.DownAfter)
	for _, k := range keys {
		vals, err := store.Get(context.Background(), k, "n")
		require.NoError(t, err, "replicated session %s lost", k)
		require.NotNil(t, vals[0])
	}
}
