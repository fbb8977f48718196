package memcached

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// The suite runs on a real memcached, on a fake clock: the exact expiry is
// the one in the item, and memcached's own (in whole seconds) only reclaims
// the memory, so the suite can drive time.
func TestConformance(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	adaptertest.Run(t, func(t *testing.T) *adaptertest.Harness {
		require.NoError(t, client.FlushAll())
		clock := adaptertest.NewClock()
		s := New(client, &Options{Clock: clock.Now})
		return &adaptertest.Harness{
			Store:   s,
			Now:     clock.Now,
			Advance: clock.Advance,
			TTL: func(_ context.Context, key string) (time.Duration, bool, error) {
				r, _, err := read(client, key)
				if r == nil || err != nil {
					return 0, false, err
				}
				// The item's own expiration must be set too.
				secs, ok, err := testserver.MemcachedTTL(srv.Addr, ItemKey(key))
				if err != nil || !ok {
					return 0, false, err
				}
				if secs < 0 {
					return -1, true, nil // an item without expiry: the suite fails it
				}
				left := time.Duration(r.expires-clock.Now().UnixMilli()) * time.Millisecond
				return left, left > 0, nil
			},
			SetRaw: func(_ context.Context, key, field string, value []byte) error {
				r, it, err := read(client, key)
				if r == nil {
					return errors.Join(sessionkit.ErrNotFound, err)
				}
				r.fields[field] = value
				it.Value = r.encode()
				return client.Set(it)
			},
		}
	})
}

// read returns the decoded item of key, or nil if there is none.
func read(client *memcache.Client, key string) (*record, *memcache.Item, error) {
	it, err := client.Get(ItemKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	r, err := decode(it.Value)
	return r, it, err
}

func TestItemKeysAreAlwaysValidMemcachedKeys(t *testing.T) {
	for _, key := range []string{"session:abc", strings.Repeat("k", 251), "with space", "tab\there", "nl\n", "\x7f"} {
		k := ItemKey(key)
		require.LessOrEqual(t, len(k), 250, key)
		require.NotContains(t, k, " ")
		for _, c := range []byte(k) {
			require.Greater(t, c, byte(' '), "%q", k)
			require.NotEqual(t, byte(0x7f), c)
		}
	}
	require.Equal(t, "session:abc", ItemKey("session:abc"), "a valid key is used as it is")
	require.NotEqual(t, ItemKey(strings.Repeat("k", 251)), ItemKey(strings.Repeat("k", 252)))
}

func TestExpirationsOverThirtyDaysAreAbsolute(t *testing.T) {
	clock := adaptertest.NewClock()
	s := New(nil, &Options{Clock: clock.Now})
	now := clock.Now().UnixMilli()
	short := &record{expires: now + 1500}
	require.Equal(t, int32(2), s.expiration(short), "seconds from now, rounded up")
	long := &record{expires: now + (31 * 24 * time.Hour).Milliseconds()}
	require.Equal(t, int32(clock.Now().Unix()+31*24*3600), s.expiration(long))
}

func TestLongSessionsExpireOnTheRealServer(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	s := New(client, nil)
	exp := sessionkit.Expiry{Idle: 60 * 24 * time.Hour, Absolute: 90 * 24 * time.Hour}
	require.NoError(t, s.Create(t.Context(), "remember-me", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	secs, ok, err := testserver.MemcachedTTL(srv.Addr, "remember-me")
	require.NoError(t, err)
	require.True(t, ok, "memcached took the absolute expiration as a time in the future")
	require.InDelta(t, 60*24*3600, secs, 5)
}

func TestOversizeSessionIsRefusedAndUnchanged(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	s := New(client, &Options{MaxItemSize: 4096})
	ctx := t.Context()
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	require.NoError(t, s.Create(ctx, "k", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	err := s.Set(ctx, "k", []sessionkit.Field{{Name: "big", Value: make([]byte, 5000)}}, 0)
	require.ErrorIs(t, err, sessionkit.ErrTooLarge)
	all, err := s.GetAll(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"a": []byte("1")}, all)
}

func BenchmarkStore(b *testing.B) {
	client := memcache.New(testserver.Memcached(b).Addr)
	defer client.Close()
	adaptertest.Benchmark(b, New(client, nil))
}
