package redishash_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

const maxMemory = 20 << 20

// usedMemory reads used_memory from INFO memory.
func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(t.Context(), "memory").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}

// requireOOM fails unless err is a refusal for memory: ErrUnavailable
// wrapping Redis's OOM error.
func requireOOM(t *testing.T, err error, what string) {
	t.Helper()
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, what)
	var rerr redis.Error
	require.ErrorAs(t, err, &rerr, what)
	require.True(t, strings.HasPrefix(rerr.Error(), "OOM "), "%s: %v", what, err)
}

// TestWritesThatGrowFailCleanlyWhenRedisIsOutOfMemory fills a redis-server
// under maxmemory 20mb and noeviction with 10 KB writes until they are
// refused, then checks that every growing write is refused without writing
// anything, that memory stops growing, and that reads, deletes and
// destroys keep working (they are how memory comes back).
func TestWritesThatGrowFailCleanlyWhenRedisIsOutOfMemory(t *testing.T) {
	srv := testserver.Redis(t, "--maxmemory", strconv.Itoa(maxMemory), "--maxmemory-policy", "noeviction")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	value := []byte(strings.Repeat("x", 10<<10))

	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("session:{oom}%d", i)
		require.NoError(t, store.Create(ctx, keys[i], []sessionkit.Field{{Name: "user", Value: []byte(`"ana"`)}, {Name: "count", Value: []byte("1")}, {Name: "plus", Value: []byte("+7")}}, exp))
	}
	var (
		err  error
		sets int
	)
	for sets = 0; sets < 10_000; sets++ {
		if err = store.Set(ctx, keys[sets%len(keys)], []sessionkit.Field{{Name: fmt.Sprint("f", sets), Value: value}}, 0); err != nil {
			break
		}
	}
	requireOOM(t, err, "the first Set refused")
	t.Logf("%d Sets of 10 KB before the first refusal; used_memory %d (maxmemory %d)", sets, usedMemory(t, client), maxMemory)
	require.Greater(t, sets, 1000, "Redis refused long before maxmemory")

	// Over the limit: every growing write is refused and writes nothing.
	for i := range 500 {
		k := keys[i%len(keys)]
		name := fmt.Sprint("after", i)
		requireOOM(t, store.Set(ctx, k, []sessionkit.Field{{Name: name, Value: value}}, 0), "Set of one field")
		requireOOM(t, store.Set(ctx, k, []sessionkit.Field{{Name: name, Value: value}, {Name: name + "b", Value: value}}, 0), "Set of two fields")
		n, err := client.HExists(ctx, k, name).Result()
		require.NoError(t, err)
		require.False(t, n, "a refused Set wrote its field")
		_, err = store.Incr(ctx, k, name, 1, 0)
		requireOOM(t, err, "Incr of a new field")
		n, err = client.HExists(ctx, k, name).Result()
		require.NoError(t, err)
		require.False(t, n, "a refused Incr wrote its field")
	}
	// Incr of an existing field is refused as well (HINCRBY is deny-oom
	// and the first write), before any look at the value, and so is the
	// rewrite of a non-canonical integer ("+7", see incrScript).
	for _, name := range []string{"count", "plus", "user"} {
		_, err = store.Incr(ctx, keys[1], name, 1, 0)
		requireOOM(t, err, "Incr of "+name)
	}
	raw, err := client.HMGet(ctx, keys[1], "count", "plus", "user").Result()
	require.NoError(t, err)
	require.Equal(t, []any{"1", "+7", `"ana"`}, raw, "refused Incrs changed nothing")
	requireOOM(t, store.Create(ctx, "session:{oom}new", nil, exp), "Create")
	require.Zero(t, client.Exists(ctx, "session:{oom}new").Val(), "a refused Create left a key")
	requireOOM(t, store.Rename(ctx, keys[0], "session:{oom}renamed"), "Rename")
	require.Zero(t, client.Exists(ctx, "session:{oom}renamed").Val(), "a refused Rename left a key")
	vals, err := store.Get(ctx, keys[0], "user")
	require.NoError(t, err, "a refused Rename left the session where it was")
	require.Equal(t, []byte(`"ana"`), vals[0])
	b := sessionkit.Binding{Index: "session:{oom}u:ana", User: "ana", ID: "id", Expiry: exp}
	requireOOM(t, store.Bind(ctx, "", "session:{oom}bound", b), "Bind of a new session")
	requireOOM(t, store.Bind(ctx, keys[0], "session:{oom}bound", b), "Bind of a stored session")
	require.Zero(t, client.Exists(ctx, "session:{oom}bound", b.Index).Val(), "a refused Bind left a key")
	vals, err = store.Get(ctx, keys[0], "user")
	require.NoError(t, err, "a refused Bind left the session where it was")
	require.Equal(t, []byte(`"ana"`), vals[0])
	used := usedMemory(t, client)
	t.Logf("used_memory after 1000 refused Sets: %d", used)
	require.Less(t, used, int64(maxMemory+512<<10), "memory grew past maxmemory")

	// Reads, deletes and destroys still work, and free memory.
	for _, k := range keys {
		_, err := store.Touch(ctx, k)
		require.NoError(t, err, "Touch under OOM")
		_, err = store.GetAll(ctx, k)
		require.NoError(t, err, "GetAll under OOM")
	}
	require.NoError(t, store.Delete(ctx, keys[0], "f0", "f50"), "Delete under OOM")
	v, err := store.Pop(ctx, keys[1], "count")
	require.NoError(t, err, "Pop under OOM")
	require.Equal(t, []byte("1"), v)
	require.NoError(t, store.SetExpiry(ctx, keys[0], sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}), "SetExpiry under OOM")
	for _, k := range keys[:len(keys)/2] {
		require.NoError(t, store.Clear(ctx, k), "Clear under OOM")
	}
	require.NoError(t, store.Destroy(ctx, keys[len(keys)-1]), "Destroy under OOM")
	require.NoError(t, store.Set(ctx, keys[0], []sessionkit.Field{{Name: "back", Value: value}}, 0), "once memory is freed, writes work again")
}
