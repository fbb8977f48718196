package redishash_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// ttlOf reads a key's TTL with PTTL, which does not refresh it.
// recordKey is the Redis key of the record behind a storage key: the key
// without the policy it may carry (sessionkit.KeyPolicy).
func recordKey(key string) string {
	k, _, _ := sessionkit.KeyPolicy(key)
	return k
}

func ttlOf(client redis.UniversalClient) func(context.Context, string) (time.Duration, bool, error) {
	return func(ctx context.Context, key string) (time.Duration, bool, error) {
		ms, err := client.Do(ctx, "PTTL", recordKey(key)).Int64()
		switch {
		case err != nil:
			return 0, false, err
		case ms == -2:
			return 0, false, nil
		case ms == -1:
			return -1, true, nil // a key without expiry
		}
		return time.Duration(ms) * time.Millisecond, true, nil
	}
}

func hset(client redis.UniversalClient) func(context.Context, string, string, []byte) error {
	return func(ctx context.Context, key, field string, value []byte) error {
		return client.HSet(ctx, recordKey(key), field, value).Err()
	}
}

// corrupt damages a record as a hand edit would. Every kind leaves the key
// without expiry where the kind allows it, as the worst case. Garbage has
// no meaning for a hash: any bytes are a valid field value.
func corrupt(client redis.UniversalClient) func(context.Context, string, adaptertest.Corruption) error {
	return func(ctx context.Context, key string, kind adaptertest.Corruption) error {
		key = recordKey(key)
		switch kind {
		case adaptertest.MetadataRemoved:
			if err := client.HDel(ctx, key, "__sk_d", "__sk_i", "__sk_c").Err(); err != nil {
				return err
			}
			return client.Persist(ctx, key).Err()
		case adaptertest.MetadataMalformed:
			return client.HSet(ctx, key, "__sk_i", "1.5").Err()
		case adaptertest.WrongType:
			if err := client.Del(ctx, key).Err(); err != nil {
				return err
			}
			return client.Set(ctx, key, "x", 0).Err()
		}
		return errors.ErrUnsupported
	}
}

// indexEntries counts the entries of a user index, dead or not (ZCARD
// cleans nothing).
func indexEntries(client redis.UniversalClient) func(context.Context, string) (int, error) {
	return func(ctx context.Context, index string) (int, error) {
		n, err := client.ZCard(ctx, index).Result()
		return int(n), err
	}
}

// miniredisHarness runs the suite on miniredis. Its clock (TIME, and what
// PEXPIREAT counts from) and its TTLs move together, driven by the suite.
func miniredisHarness(t *testing.T) *adaptertest.Harness {
	m := miniredis.RunT(t)
	clock := adaptertest.NewClock()
	m.SetTime(clock.Now())
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	return &adaptertest.Harness{
		Store: redishash.New(client, nil),
		Now:   clock.Now,
		Advance: func(d time.Duration) {
			clock.Advance(d)
			m.SetTime(clock.Now())
			m.FastForward(d)
		},
		TTL:          ttlOf(client),
		SetRaw:       hset(client),
		Corrupt:      corrupt(client),
		IndexEntries: indexEntries(client),
		Close:        func() { client.Close() },
	}
}

func TestConformanceMiniredis(t *testing.T) { adaptertest.Run(t, miniredisHarness) }

// runOnRealRedis runs the suite through client on a real deployment, on the
// wall clock, emptying it with flush before every subtest.
func runOnRealRedis(t *testing.T, client redis.UniversalClient, flush func(context.Context) error) {
	adaptertest.Run(t, func(t *testing.T) *adaptertest.Harness {
		require.NoError(t, flush(t.Context()))
		return &adaptertest.Harness{
			Store:        redishash.New(client, nil),
			TTL:          ttlOf(client),
			SetRaw:       hset(client),
			Corrupt:      corrupt(client),
			IndexEntries: indexEntries(client),
		}
	})
}

// TestConformanceRedisServer runs the suite on a real redis-server.
func TestConformanceRedisServer(t *testing.T) {
	srv := testserver.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	runOnRealRedis(t, client, func(ctx context.Context) error { return client.FlushAll(ctx).Err() })
}

func TestUnreachableRedisIsUnavailableNotEmpty(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	s := redishash.New(client, nil)
	_, err := s.Get(t.Context(), "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var netErr interface{ Timeout() bool }
	require.True(t, errors.As(err, &netErr), "the client's own error stays reachable: %v", err)
}

// BenchmarkStore runs on a real redis-server: round trips on loopback, not
// miniredis's in-process shortcuts.
func BenchmarkStore(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(b).Addr})
	defer client.Close()
	adaptertest.Benchmark(b, redishash.New(client, nil))
}
