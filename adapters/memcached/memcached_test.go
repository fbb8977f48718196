package memcached

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
		s := New(client, &Options{Clock: clock.Now, Servers: []string{srv.Addr}})
		return &adaptertest.Harness{
			Store:   s,
			Now:     clock.Now,
			Advance: clock.Advance,
			TTL: func(_ context.Context, key string) (time.Duration, bool, error) {
				return itemTTL(srv.Addr, client, key, clock.Now())
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
			Corrupt: func(_ context.Context, key string, kind adaptertest.Corruption) error {
				return corrupt(s, key, kind)
			},
		}
	})
}

// itemTTL is the harness's TTL: the exact time left to the session or
// marker under key, which must also carry a memcached expiration. An item
// that is neither, or has no memcached expiration, is reported with a
// negative time (a record without expiry).
func itemTTL(addr string, client *memcache.Client, key string, now time.Time) (time.Duration, bool, error) {
	it, err := client.Get(ItemKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	secs, ok, err := testserver.MemcachedTTL(addr, ItemKey(key))
	if err != nil || !ok {
		return 0, false, err
	}
	rec, mk, err := decode(it.Value)
	if secs < 0 || err != nil {
		return -1, true, nil
	}
	expires := rec.expiresOr(mk)
	left := time.Duration(expires-now.UnixMilli()) * time.Millisecond
	return left, left > 0, nil
}

// expiresOr returns the exact expiry of r, or of m if r is nil.
func (r *record) expiresOr(m *marker) int64 {
	if r != nil {
		return r.expires
	}
	return m.expires
}

// corrupt is the harness's Corrupt hook. WrongType cannot happen:
// memcached has one type of value, so a foreign value in a session's place
// is Garbage.
func corrupt(s *Store, key string, kind adaptertest.Corruption) error {
	r, it, err := read(s.client, key)
	if r == nil {
		return errors.Join(sessionkit.ErrNotFound, err)
	}
	switch kind {
	case adaptertest.MetadataRemoved:
		// The fields without the header before them, and no expiry.
		it.Value = r.encode()[33:]
		it.Expiration = 0
	case adaptertest.MetadataMalformed:
		// An idle timeout that is not positive; the item keeps its expiry.
		binary.BigEndian.PutUint64(it.Value[9:], uint64(0))
		it.Expiration = s.expiration(r.expires)
	case adaptertest.Garbage:
		it.Value = []byte("\xffnot a session\x00\x01\x02")
		it.Expiration = 0
	default:
		return errors.ErrUnsupported
	}
	return s.client.Set(it)
}

// read returns the decoded session under key, or nil if there is none.
func read(client *memcache.Client, key string) (*record, *memcache.Item, error) {
	it, err := client.Get(ItemKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	r, _, err := decode(it.Value)
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
	require.Equal(t, int32(2), s.expiration(now+1500), "seconds from now, rounded up")
	require.Equal(t, int32(clock.Now().Unix()+31*24*3600), s.expiration(now+(31*24*time.Hour).Milliseconds()))
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

// A server whose item size limit (-I) is lower than Options.MaxItemSize
// refuses the write itself: that is ErrTooLarge too, not an outage.
func TestAWriteOverTheServersItemSizeIsTooLarge(t *testing.T) {
	srv := testserver.Memcached(t, "-I", "512k")
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	s := New(client, nil) // MaxItemSize: the 1 MB default
	ctx := t.Context()
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	big := []sessionkit.Field{{Name: "big", Value: make([]byte, 600<<10)}}
	err := s.Create(ctx, "new", big, exp)
	require.ErrorIs(t, err, sessionkit.ErrTooLarge)
	require.NotErrorIs(t, err, sessionkit.ErrUnavailable)

	require.NoError(t, s.Create(ctx, "k", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	err = s.Set(ctx, "k", big, 0)
	require.ErrorIs(t, err, sessionkit.ErrTooLarge)
	require.NotErrorIs(t, err, sessionkit.ErrUnavailable)
	all, err := s.GetAll(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"a": []byte("1")}, all, "the refused write changed nothing")
}

// Options.Timeout is the client's: it bounds each round trip to a server
// that does not answer.
func TestTimeoutBoundsEachRoundTrip(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	// Created with room to spare: a loaded machine must not fail the setup.
	require.NoError(t, New(client, &Options{Timeout: 10 * time.Second}).Create(ctx, "k", nil, exp))
	s := New(client, &Options{Timeout: 200 * time.Millisecond})
	require.Equal(t, 200*time.Millisecond, client.Timeout, "New sets the client's timeout")

	require.NoError(t, srv.Pause())
	t.Cleanup(func() { srv.Resume() })
	start := time.Now()
	_, err := s.Get(ctx, "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	require.Less(t, time.Since(start), 2*time.Second, "a hung server fails the call after the timeout")

	New(client, nil)
	require.Equal(t, 200*time.Millisecond, client.Timeout, "no Timeout leaves the client as it is")
}

// Run with -M, memcached refuses a write it has no room for instead of
// evicting: that is ErrUnavailable, as the contract asks.
func TestAWriteAFullMemcachedRefusesIsUnavailable(t *testing.T) {
	srv := testserver.Memcached(t, "-M", "-m", "2")
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	// A generous timeout: the case is about the refusal, and a loaded
	// machine (CI runs packages in parallel) must not turn it into a timeout.
	s := New(client, &Options{Timeout: 10 * time.Second})
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = s.Create(t.Context(), fmt.Sprint("k", i), []sessionkit.Field{{Name: "v", Value: make([]byte, 10000)}}, exp)
	}
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, "2 MB hold fewer than 10,000 sessions of 10 kB")
	require.ErrorContains(t, err, "out of memory")
}
