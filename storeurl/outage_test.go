package storeurl_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// outageBound is what the package doc promises: a frozen or dead server
// answers with an error in under a second. (examples/server checks a single
// Redis server through HTTP.)
const outageBound = time.Second

// failsWithin checks that a read of key fails with ErrUnavailable within
// outageBound, and logs how long it took.
func failsWithin(t *testing.T, store sessionkit.Store, key, what string) {
	t.Helper()
	start := time.Now()
	_, err := store.Get(t.Context(), key, "a")
	took := time.Since(start)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, what)
	require.Less(t, took, outageBound, what)
	t.Logf("%s: the read failed after %v", what, took.Round(time.Millisecond))
}

func create(t *testing.T, store sessionkit.Store, key string) {
	t.Helper()
	require.NoError(t, store.Create(t.Context(), key, []sessionkit.Field{{Name: "a", Value: []byte("1")}},
		sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}))
}

// TestFrozenMemcachedFailsWithinASecond checks the default timeout of a
// memcached:// URL against a real memcached, frozen and then killed.
func TestFrozenMemcachedFailsWithinASecond(t *testing.T) {
	srv := testserver.Memcached(t)
	store := open(t, "memcached://"+srv.Addr)
	create(t, store, "k")
	require.NoError(t, srv.Pause())
	failsWithin(t, store, "k", "frozen memcached")
	require.NoError(t, srv.Resume())
	srv.Stop()
	failsWithin(t, store, "k", "killed memcached")
}

// TestFrozenClusterMasterFailsWithinASecond checks the defaults of a
// redis+cluster:// URL against a real 3+3 Redis Cluster, one of whose
// masters is frozen and then killed. The cluster client tries a timed-out
// command again up to max_redirects times, so this is the case the
// max_redirects default is for.
func TestFrozenClusterMasterFailsWithinASecond(t *testing.T) {
	c := testserver.RedisCluster(t, 3, 1)
	store := open(t, "redis+cluster://"+c.Addrs()[0]+"?addr="+strings.Join(c.Addrs()[1:], "&addr="))
	const key = "session:{frozen}k"
	create(t, store, key)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	master, err := rdb.MasterForKey(t.Context(), key)
	require.NoError(t, err)
	srv := c.Node(master.Options().Addr)
	require.NoError(t, rdb.Close())

	require.NoError(t, srv.Pause())
	failsWithin(t, store, key, "frozen master")
	require.NoError(t, srv.Resume())
	srv.Stop()
	failsWithin(t, store, key, "killed master")
}
