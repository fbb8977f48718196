// Package footprint measures what one session costs each backend, for
// docs/backends.md: go test -v -run Footprint ./internal/footprint
package footprint

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adapters/memcached"
	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

const sessions = 2000

// shape is a session measured: fields strings of size bytes each, stored
// as JSON (size+2 bytes with the quotes).
type shape struct{ fields, size int }

var shapes = []shape{{1, 32}, {10, 32}, {100, 32}, {1, 64}, {10, 64}, {100, 64}}

func fill(t *testing.T, m *sessionkit.Manager, sh shape) {
	value := strings.Repeat("v", sh.size)
	values := make(map[string]any, sh.fields)
	for i := range sh.fields {
		values[fmt.Sprintf("attr%03d", i)] = value
	}
	for range sessions {
		require.NoError(t, m.NewSession().SetMany(t.Context(), values))
	}
}

func manager(t *testing.T, s sessionkit.Store) *sessionkit.Manager {
	m, err := sessionkit.New(&sessionkit.Options{Store: s, IdleTimeout: time.Hour})
	require.NoError(t, err)
	return m
}

func report(t *testing.T, backend string, sh shape, total int64) {
	t.Logf("%-10s %3d fields × %2d B: %6d bytes per session", backend, sh.fields, sh.size, total/sessions)
}

func TestFootprintRedis(t *testing.T) {
	srv := testserver.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := t.Context()
	for _, sh := range shapes {
		require.NoError(t, rdb.FlushAll(ctx).Err())
		before := usedMemory(t, rdb)
		fill(t, manager(t, redishash.New(rdb, nil)), sh)
		report(t, "redis", sh, usedMemory(t, rdb)-before)
		key := rdb.RandomKey(ctx).Val()
		enc := rdb.ObjectEncoding(ctx, key).Val()
		t.Logf("           encoding %s, MEMORY USAGE %d", enc, rdb.MemoryUsage(ctx, key).Val())
		// hash-max-listpack-entries 128 (with the 3 metadata fields) and
		// hash-max-listpack-value 64 (the JSON value, quotes included).
		if sh.fields+3 <= 128 && sh.size+2 <= 64 {
			require.Contains(t, []string{"listpack", "ziplist"}, enc, "a small session stays in the compact encoding")
		}
	}
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	info := rdb.Info(t.Context(), "memory").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

func TestFootprintMemcached(t *testing.T) {
	for _, sh := range shapes {
		srv := testserver.Memcached(t)
		c := memcache.New(srv.Addr)
		before := memcachedBytes(t, srv.Addr)
		fill(t, manager(t, memcached.New(c, nil)), sh)
		report(t, "memcached", sh, memcachedBytes(t, srv.Addr)-before)
		c.Close()
	}
}

// memcachedBytes is the "bytes" stat: memory used by items (before slab
// rounding).
func memcachedBytes(t *testing.T, addr string) int64 {
	n, err := testserver.MemcachedStat(addr, "bytes")
	require.NoError(t, err)
	return n
}

func TestFootprintBbolt(t *testing.T) {
	for _, sh := range shapes {
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := bbolt.Open(path, &bbolt.Options{NoSync: true})
		require.NoError(t, err)
		fill(t, manager(t, s), sh)
		require.NoError(t, s.Close())
		st, err := os.Stat(path)
		require.NoError(t, err)
		report(t, "bbolt", sh, st.Size())
	}
}

func TestFootprintMemory(t *testing.T) {
	for _, sh := range shapes {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := memory.New(nil)
		fill(t, manager(t, s), sh)
		runtime.GC()
		runtime.ReadMemStats(&after)
		report(t, "memory", sh, int64(after.HeapAlloc)-int64(before.HeapAlloc))
		runtime.KeepAlive(s)
	}
}
