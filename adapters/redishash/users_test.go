package redishash_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// onEveryServer runs f on miniredis and on a real redis-server.
func onEveryServer(t *testing.T, f func(t *testing.T, client redis.UniversalClient)) {
	t.Run("miniredis", func(t *testing.T) {
		client := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		t.Cleanup(func() { client.Close() })
		f(t, client)
	})
	t.Run("redis-server", func(t *testing.T) {
		client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
		t.Cleanup(func() { client.Close() })
		f(t, client)
	})
}

var hour = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

// user returns the binding of one of ana's sessions: keys "s:{ana}…" share
// the index's hash tag, as the Manager's do.
func user(id string) sessionkit.Binding {
	return sessionkit.Binding{Index: "s:{ana}u:idx", User: "ana", ID: id, Device: "Firefox", IP: "192.0.2.1", Expiry: hour}
}

func ids(t *testing.T, s *redishash.Store, index string) map[string]string {
	t.Helper()
	infos, err := s.UserSessions(t.Context(), index)
	require.NoError(t, err)
	out := map[string]string{}
	for _, i := range infos {
		out[i.ID] = i.Key
	}
	return out
}

func TestBoundRecordsKeepEveryStorePromise(t *testing.T) {
	onEveryServer(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := t.Context()
		s := redishash.New(client, nil)
		fields := []sessionkit.Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}
		require.NoError(t, s.Create(ctx, "s:{old}1", fields, hour))
		require.NoError(t, s.Bind(ctx, "s:{old}1", "s:{ana}a", user("id-a")))

		_, err := s.Get(ctx, "s:{old}1", "a")
		require.ErrorIs(t, err, sessionkit.ErrRenewed, "Bind leaves a marker, as Rename does")
		all, err := s.GetAll(ctx, "s:{ana}a")
		require.NoError(t, err)
		require.Equal(t, map[string][]byte{"a": []byte("1"), "b": []byte("2")}, all, "the fields moved, the binding is not one")
		keys, err := s.Keys(ctx, "s:{ana}a")
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"a", "b"}, keys)
		n, err := s.Len(ctx, "s:{ana}a")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		vals, err := s.Get(ctx, "s:{ana}a", "a", "__sk_x")
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("1"), nil}, vals)
		require.ErrorIs(t, s.Set(ctx, "s:{ana}a", []sessionkit.Field{{Name: "c", Value: []byte("3")}}, 2), sessionkit.ErrTooManyFields, "the binding does not count as a field")
		require.NoError(t, s.Set(ctx, "s:{ana}a", []sessionkit.Field{{Name: "b", Value: []byte("3")}}, 2))
		_, err = s.Incr(ctx, "s:{ana}a", "n", 1, 2)
		require.ErrorIs(t, err, sessionkit.ErrTooManyFields)
		_, err = s.Incr(ctx, "s:{ana}a", "n", 1, 3)
		require.NoError(t, err)
		has, err := s.Has(ctx, "s:{ana}a", "n")
		require.NoError(t, err)
		require.True(t, has)
		v, err := s.Pop(ctx, "s:{ana}a", "n")
		require.NoError(t, err)
		require.Equal(t, []byte("1"), v)

		require.NoError(t, s.Clear(ctx, "s:{ana}a"))
		info, err := s.Info(ctx, "s:{ana}a")
		require.NoError(t, err)
		require.Equal(t, sessionkit.SessionInfo{Key: "s:{ana}a", ID: "id-a", User: "ana", Device: "Firefox", IP: "192.0.2.1",
			Created: info.Created, Expires: info.Expires, Idle: time.Hour}, info, "Clear keeps the binding")
		require.WithinDuration(t, info.Created.Add(time.Hour), info.Expires, 5*time.Second)
		_, err = s.Info(ctx, "s:{old}1")
		require.ErrorIs(t, err, sessionkit.ErrNotFound, "a marker has no info")
		n, err = s.Len(ctx, "s:{ana}a")
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

func TestBindListRevoke(t *testing.T) {
	onEveryServer(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := t.Context()
		s := redishash.New(client, nil)
		const idx = "s:{ana}u:idx"
		require.NoError(t, s.Create(ctx, "s:{x}1", nil, hour))
		require.NoError(t, s.Bind(ctx, "s:{x}1", "s:{ana}a", user("a")))
		require.NoError(t, s.Bind(ctx, "", "s:{ana}b", user("b")))
		require.NoError(t, s.Bind(ctx, "", "s:{ana}c", user("c")))
		require.Equal(t, map[string]string{"a": "s:{ana}a", "b": "s:{ana}b", "c": "s:{ana}c"}, ids(t, s, idx))

		// Errors, each changing nothing.
		require.ErrorIs(t, s.Bind(ctx, "s:{x}missing", "s:{ana}d", user("d")), sessionkit.ErrNotFound)
		require.ErrorIs(t, s.Bind(ctx, "s:{x}1", "s:{ana}d", user("d")), sessionkit.ErrRenewed)
		require.ErrorIs(t, s.Bind(ctx, "s:{ana}a", "s:{ana}b", user("a2")), sessionkit.ErrExists)
		info, err := s.Info(ctx, "s:{ana}a")
		require.NoError(t, err, "a refused Bind puts the record back")
		require.Equal(t, "a", info.ID)
		require.Equal(t, map[string]string{"a": "s:{ana}a", "b": "s:{ana}b", "c": "s:{ana}c"}, ids(t, s, idx), "and its entry")

		// Rename and Destroy keep the index in step.
		require.NoError(t, s.Rename(ctx, "s:{ana}a", "s:{ana}a2"))
		require.Equal(t, map[string]string{"a": "s:{ana}a2", "b": "s:{ana}b", "c": "s:{ana}c"}, ids(t, s, idx))
		require.NoError(t, s.Destroy(ctx, "s:{ana}c"))
		require.Equal(t, map[string]string{"a": "s:{ana}a2", "b": "s:{ana}b"}, ids(t, s, idx))
		require.EqualValues(t, 2, client.ZCard(ctx, idx).Val(), "Destroy removed the entry")

		// Rebinding to another user moves the entry.
		other := sessionkit.Binding{Index: "s:{bob}u:idx", User: "bob", ID: "a", Expiry: hour}
		require.NoError(t, s.Bind(ctx, "s:{ana}a2", "s:{bob}a", other))
		require.Equal(t, map[string]string{"b": "s:{ana}b"}, ids(t, s, idx))
		require.Equal(t, map[string]string{"a": "s:{bob}a"}, ids(t, s, "s:{bob}u:idx"))

		require.NoError(t, s.Bind(ctx, "", "s:{ana}e", user("e")))
		n, err := s.Revoke(ctx, idx, []string{"e", "nope"}, "")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.NoError(t, s.Bind(ctx, "", "s:{ana}f", user("f")))
		n, err = s.Revoke(ctx, idx, nil, "f")
		require.NoError(t, err)
		require.Equal(t, 1, n, "all but f")
		require.Equal(t, map[string]string{"f": "s:{ana}f"}, ids(t, s, idx))
		n, err = s.Revoke(ctx, idx, nil, "")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Empty(t, ids(t, s, idx))
		require.Zero(t, client.Exists(ctx, idx, "s:{ana}b", "s:{ana}e", "s:{ana}f").Val(), "the sessions and the empty index are gone")
	})
}

func TestBindCap(t *testing.T) {
	onEveryServer(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := t.Context()
		s := redishash.New(client, nil)
		const idx = "s:{ana}u:idx"
		capped := func(id string, max int, refuse bool) sessionkit.Binding {
			b := user(id)
			b.Max, b.Refuse = max, refuse
			return b
		}
		for _, id := range []string{"1", "2", "3"} {
			require.NoError(t, s.Bind(ctx, "", "s:{ana}"+id, capped(id, 3, false)))
		}
		// A rebind of one of the user's sessions does not count itself.
		require.NoError(t, s.Bind(ctx, "s:{ana}3", "s:{ana}3b", capped("3", 3, true)))
		require.Len(t, ids(t, s, idx), 3)

		fields := []sessionkit.Field{{Name: "a", Value: []byte("1")}}
		require.NoError(t, s.Create(ctx, "s:{x}1", fields, hour))
		require.ErrorIs(t, s.Bind(ctx, "s:{x}1", "s:{ana}4", capped("4", 3, true)), sessionkit.ErrTooManySessions)
		vals, err := s.Get(ctx, "s:{x}1", "a")
		require.NoError(t, err, "a refused login leaves the session usable")
		require.Equal(t, []byte("1"), vals[0])
		require.Zero(t, client.Exists(ctx, "s:{ana}4").Val())

		require.NoError(t, s.Bind(ctx, "s:{x}1", "s:{ana}4", capped("4", 3, false)))
		require.Equal(t, map[string]string{"2": "s:{ana}2", "3": "s:{ana}3b", "4": "s:{ana}4"}, ids(t, s, idx), "the oldest went")
		require.NoError(t, s.Bind(ctx, "", "s:{ana}5", capped("5", 1, false)))
		require.Equal(t, map[string]string{"5": "s:{ana}5"}, ids(t, s, idx), "a lower cap evicts down to it")
	})
}

func TestRenameAndSetExpiryKeepTheIndexInStep(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	s := redishash.New(client, nil)
	const idx = "s:{ana}u:idx"
	b := user("a")
	b.Expiry = sessionkit.Expiry{Idle: time.Minute, Absolute: 10 * time.Minute}
	require.NoError(t, s.Bind(ctx, "", "s:{ana}a", b))
	deadline := func(k string) int64 {
		v, err := client.HGet(ctx, k, "__sk_d").Int64()
		require.NoError(t, err)
		return v
	}
	score := func(k string) int64 {
		v, err := client.ZScore(ctx, idx, k).Result()
		require.NoError(t, err)
		return int64(v)
	}
	require.Equal(t, deadline("s:{ana}a"), score("s:{ana}a"))
	require.Equal(t, deadline("s:{ana}a"), client.PExpireTime(ctx, idx).Val().Milliseconds(), "the index lives until the latest deadline")

	require.NoError(t, s.Rename(ctx, "s:{ana}a", "s:{ana}b"))
	require.Equal(t, []string{"s:{ana}b"}, client.ZRange(ctx, idx, 0, -1).Val(), "the entry follows the record")
	require.NoError(t, s.SetExpiry(ctx, "s:{ana}b", sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}))
	d := deadline("s:{ana}b")
	require.Equal(t, d, score("s:{ana}b"), "the entry takes the new deadline")
	require.Equal(t, d, client.PExpireTime(ctx, idx).Val().Milliseconds(), "and the index lives as long")
	require.NoError(t, s.Bind(ctx, "s:{ana}b", "s:{ana}c", b))
	require.Equal(t, []string{"s:{ana}c"}, client.ZRange(ctx, idx, 0, -1).Val(), "a rebind keeps one entry")
	require.Equal(t, d, score("s:{ana}c"), "and the deadline")
	require.ErrorIs(t, s.SetExpiry(ctx, "s:{ana}c", sessionkit.Expiry{Idle: time.Minute, Absolute: time.Millisecond}), sessionkit.ErrNotFound)
	require.Zero(t, client.Exists(ctx, idx).Val(), "a policy run out ends the session, and its entry")
}

// concurrentBinds binds 20 sessions of one user at once with Max 3, while
// a watcher lists the user's sessions; it returns the Bind errors and the
// most sessions the watcher saw.
func concurrentBinds(t *testing.T, client redis.UniversalClient, refuse bool) (errs []error, most int) {
	ctx := t.Context()
	s := redishash.New(client, nil)
	const idx = "c:{ana}u:idx"
	olds := make([]string, 20)
	for i := range olds {
		olds[i] = fmt.Sprintf("c:{x%d}", i)
		require.NoError(t, s.Create(ctx, olds[i], []sessionkit.Field{{Name: "n", Value: []byte(fmt.Sprint(i))}}, hour))
	}
	var (
		stop    atomic.Bool
		maxSeen atomic.Int64
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for !stop.Load() {
			infos, err := s.UserSessions(ctx, idx)
			if err != nil {
				t.Error(err)
				return
			}
			if n := int64(len(infos)); n > maxSeen.Load() {
				maxSeen.Store(n)
			}
		}
	})
	errs = make([]error, len(olds))
	var binds sync.WaitGroup
	start := make(chan struct{})
	for i, old := range olds {
		binds.Go(func() {
			<-start
			b := sessionkit.Binding{Index: idx, User: "ana", ID: fmt.Sprint("id", i), Expiry: hour, Max: 3, Refuse: refuse}
			errs[i] = s.Bind(ctx, old, fmt.Sprintf("c:{ana}%d", i), b)
		})
	}
	close(start)
	binds.Wait()
	stop.Store(true)
	wg.Wait()
	live, err := s.Count(ctx, "c:{ana}")
	require.NoError(t, err)
	require.Equal(t, 3, live, "three live sessions of the user remain")
	require.Len(t, ids(t, s, idx), 3)
	for i, err := range errs {
		if err != nil { // refused: the old session is usable again
			vals, gerr := s.Get(ctx, olds[i], "n")
			require.NoError(t, gerr)
			require.Equal(t, []byte(fmt.Sprint(i)), vals[0])
		}
	}
	return errs, int(maxSeen.Load())
}

func testConcurrentCap(t *testing.T, client redis.UniversalClient, flush func() error) {
	for _, refuse := range []bool{false, true} {
		require.NoError(t, flush())
		errs, most := concurrentBinds(t, client, refuse)
		failed := 0
		for _, err := range errs {
			if err != nil {
				require.ErrorIs(t, err, sessionkit.ErrTooManySessions)
				failed++
			}
		}
		if refuse {
			require.Equal(t, 17, failed, "three logins in, seventeen refused")
		} else {
			require.Zero(t, failed, "every login in, the oldest evicted")
		}
		require.LessOrEqual(t, most, 3, "never more than three at any moment")
		t.Logf("refuse=%v: 20 concurrent Binds with Max 3: %d refused, at most %d live seen by a concurrent lister, 3 live after", refuse, failed, most)
	}
}

func TestCapHoldsUnderConcurrentBinds(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
	t.Cleanup(func() { client.Close() })
	testConcurrentCap(t, client, func() error { return client.FlushAll(t.Context()).Err() })
}

func TestCapHoldsUnderConcurrentBindsOnCluster(t *testing.T) {
	client := clusterClient(t, testserver.RedisCluster(t, 3, 0))
	testConcurrentCap(t, client, func() error {
		return client.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	})
}

func TestScanCountDestroyAllOnCluster(t *testing.T) {
	client := clusterClient(t, testserver.RedisCluster(t, 3, 0))
	ctx := t.Context()
	s := redishash.New(client, nil)
	for i := range 300 {
		require.NoError(t, s.Create(ctx, fmt.Sprintf("p:{%d}k", i), nil, hour))
	}
	for i := range 5 {
		require.NoError(t, s.Bind(ctx, "", fmt.Sprintf("p:{ana}%d", i), sessionkit.Binding{Index: "p:{ana}u:idx", User: "ana", ID: fmt.Sprint(i), Expiry: hour}))
	}
	require.NoError(t, s.Rename(ctx, "p:{0}k", "p:{0}k2")) // a marker, not counted
	require.NoError(t, client.Set(ctx, "p:other", "x", 0).Err())
	require.NoError(t, client.HSet(ctx, "p:hash", "f", "v").Err())
	require.NoError(t, s.Create(ctx, "q:{1}k", nil, hour))

	n, err := s.Count(ctx, "p:")
	require.NoError(t, err)
	require.Equal(t, 305, n)
	seen := map[string]int{}
	cursor, pages := "", 0
	for {
		page, next, err := s.Scan(ctx, "p:", cursor, 50)
		require.NoError(t, err)
		pages++
		for _, i := range page {
			seen[i.Key]++
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	require.Len(t, seen, 305)
	require.Greater(t, pages, 3, "in pages")
	// A cursor whose master left (a failover) walks everything again: a
	// promoted replica's address may sort before it, and its slots must
	// not be skipped.
	again := map[string]bool{}
	for cursor = "127.0.0.1:99999#12345"; ; { // sorts after every master
		page, next, err := s.Scan(ctx, "p:", cursor, 100)
		require.NoError(t, err)
		for _, i := range page {
			again[i.Key] = true
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	require.Len(t, again, 305, "a walk resumed after its master left skips nothing")
	n, err = s.DestroyAll(ctx, "p:")
	require.NoError(t, err)
	require.Equal(t, 305, n)
	var (
		mu   sync.Mutex
		left int
	)
	require.NoError(t, client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "*").Result()
		mu.Lock()
		left += len(keys)
		mu.Unlock()
		return err
	}))
	require.Equal(t, 3, left, "only what is not sessionkit's, and q:, are left")
}

// TestBoundSessionsDoNotLeak binds 10,000 short-lived sessions to one user
// on a real redis-server, next to two long-lived ones, and measures the
// index and Redis's memory before and after they expire: entries of
// sessions that idled out are removed by the next listing, and an index
// whose sessions all reached their deadline expires on its own.
func TestBoundSessionsDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("binds 20,000 sessions")
	}
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr, PoolSize: 16})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)
	manager := func(idle, lifetime time.Duration) *sessionkit.Manager {
		m, err := sessionkit.New(&sessionkit.Options{Store: store, IdleTimeout: idle, Lifetime: lifetime})
		require.NoError(t, err)
		return m
	}
	const n = 10_000
	bindMany := func(m *sessionkit.Manager, user string) (last string) {
		var (
			wg   sync.WaitGroup
			next atomic.Int64
			mu   sync.Mutex
		)
		for range 16 {
			wg.Go(func() {
				for next.Add(1) <= n {
					tok, err := m.Bind(ctx, "", user, sessionkit.Client{Device: "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					last = tok
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return last
	}
	used := func() int64 { return usedMemory(t, client) }
	usage := func(key string) int64 {
		v, err := client.MemoryUsage(ctx, key, 0).Result()
		if errors.Is(err, redis.Nil) {
			return 0
		}
		require.NoError(t, err)
		return v
	}
	// waitKeys polls until the server holds at most want keys: expired
	// keys are reclaimed by Redis's active expiry, over a few seconds.
	waitKeys := func(want int64) {
		deadline := time.Now().Add(60 * time.Second)
		for client.DBSize(ctx).Val() > want {
			require.True(t, time.Now().Before(deadline), "expired keys not reclaimed: %d left", client.DBSize(ctx).Val())
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Idle timeout 10s, lifetime 1h: the entries' deadlines are far away,
	// so only a check of each record finds them dead. (Binds sample two
	// entries each: on a slow machine, the first sessions idle out and
	// leave the index while the last are bound.)
	idle := manager(10*time.Second, time.Hour)
	long := manager(time.Hour, 2*time.Hour)
	base := used()
	start := time.Now()
	last := bindMany(idle, "leaky")
	keep := []string{recordKey(long.StorageKey(bindManyOne(t, long, "leaky"))), recordKey(long.StorageKey(bindManyOne(t, long, "leaky")))}
	index := idle.UserIndex("leaky")
	peakEntries := client.ZCard(ctx, index).Val()
	peakIndex, peakUsed := usage(index), used()
	t.Logf("10,000 Binds in %v; index: %d entries, MEMORY USAGE %d B; used_memory %d B above the empty server",
		time.Since(start).Round(time.Millisecond), peakEntries, peakIndex, peakUsed-base)
	require.Greater(t, peakEntries, int64(n/2), "most of the 10,000 are live at once")
	start, busy := time.Now(), evalTime(t, client)
	l, err := long.UserSessions(ctx, "leaky")
	require.NoError(t, err)
	t.Logf("UserSessions of %d live sessions: %v, of which the script ran %v on Redis (blocking it)",
		len(l), time.Since(start).Round(time.Millisecond), (evalTime(t, client) - busy).Round(time.Millisecond))

	// Once the short sessions are gone, the index still lists them (no
	// one used it), until the next listing.
	waitKeys(3) // the two live sessions and the index
	require.Zero(t, client.Exists(ctx, recordKey(idle.StorageKey(last))).Val())
	goneEntries, goneIndex, goneUsed := client.ZCard(ctx, index).Val(), usage(index), used()
	start, busy = time.Now(), evalTime(t, client)
	l, err = long.UserSessions(ctx, "leaky")
	require.NoError(t, err)
	t.Logf("UserSessions over %d entries, 2 live: %v, of which the script ran %v on Redis (the rebuild included)",
		goneEntries, time.Since(start).Round(time.Millisecond), (evalTime(t, client) - busy).Round(time.Millisecond))
	require.Len(t, l, 2, "only the live sessions are listed")
	for _, k := range keep {
		info, err := store.Info(ctx, k)
		require.NoError(t, err)
		require.Contains(t, []string{l[0].ID, l[1].ID}, info.ID)
	}
	afterEntries, afterIndex, afterUsed := client.ZCard(ctx, index).Val(), usage(index), used()
	t.Logf("sessions expired: index %d entries, %d B, used_memory %d B above empty; after one listing: %d entries, %d B, used_memory %d B above empty",
		goneEntries, goneIndex, goneUsed-base, afterEntries, afterIndex, afterUsed-base)
	require.EqualValues(t, 2, afterEntries, "the index shrinks back to the live sessions")
	require.Less(t, afterIndex, int64(1024))

	// Lifetime 3s: every entry's deadline passes, and the index expires
	// with the last one, listed or not.
	require.NoError(t, client.FlushAll(ctx).Err())
	short := manager(time.Hour, 3*time.Second)
	base = used()
	bindMany(short, "brief")
	index = short.UserIndex("brief")
	t.Logf("10,000 sessions of 3s lifetime: index %d entries, %d B, PTTL %v; used_memory %d B above empty",
		client.ZCard(ctx, index).Val(), usage(index), client.PTTL(ctx, index).Val(), used()-base)
	require.LessOrEqual(t, client.PTTL(ctx, index).Val(), 3*time.Second, "the index lives no longer than the last deadline")
	waitKeys(0)
	t.Logf("after the deadline, never listed: %d keys, index exists %d; used_memory %d B above empty",
		client.DBSize(ctx).Val(), client.Exists(ctx, index).Val(), used()-base)
}

func bindManyOne(t *testing.T, m *sessionkit.Manager, user string) string {
	tok, err := m.Bind(t.Context(), "", user, sessionkit.Client{})
	require.NoError(t, err)
	return tok
}

// TestUserLayoutIsAsDocumented checks the package doc's # Users: the
// binding field of a bound session and the user's index.
func TestUserLayoutIsAsDocumented(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	m, err := sessionkit.New(&sessionkit.Options{Store: redishash.New(client, nil), RecordIP: true})
	require.NoError(t, err)
	tok, err := m.Bind(ctx, "", "ana", sessionkit.Client{Device: "Firefox/140", IP: "192.0.2.1"})
	require.NoError(t, err)
	key, index := recordKey(m.StorageKey(tok)), m.UserIndex("ana")
	tag := "{" + tok[:4] + "}"
	require.True(t, strings.HasPrefix(key, "session:"+tag), key)
	require.True(t, strings.HasPrefix(index, "session:"+tag+"u:"), index)

	all, err := client.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"__sk_d", "__sk_i", "__sk_c", "__sk_b"}, keysOf(all))
	parts := strings.Split(all["__sk_b"], "\n")
	require.Len(t, parts, 5)
	require.Equal(t, index, parts[0])
	require.Len(t, parts[1], 22, "the public ID")
	require.Equal(t, []string{"ana", "Firefox/140", "192.0.2.1"}, parts[2:])

	entries, err := client.ZRangeWithScores(ctx, index, 0, -1).Result()
	require.NoError(t, err)
	require.Equal(t, []redis.Z{{Member: key, Score: float64(mustInt(t, all["__sk_d"]))}}, entries, "member: the key; score: the deadline")
	require.Equal(t, mustInt(t, all["__sk_d"]), client.PExpireTime(ctx, index).Val().Milliseconds(), "the index expires with its latest deadline")
	require.Equal(t, "zset", client.Type(ctx, index).Val())
}

func mustInt(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

// evalTime reads the time Redis has spent running scripts (EVAL and
// EVALSHA), from INFO commandstats.
func evalTime(t *testing.T, c *redis.Client) time.Duration {
	info, err := c.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			rest, ok = strings.CutPrefix(line, "cmdstat_eval:")
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, found := strings.CutPrefix(kv, "usec="); ok && found {
				total += time.Duration(mustInt(t, v)) * time.Microsecond
			}
		}
	}
	return total
}
