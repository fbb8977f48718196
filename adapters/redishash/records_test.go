package redishash_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// TestCorruptMetadataOfEveryShapeReadsAsGone runs every operation on
// records whose metadata was hand-edited in ways the suite's Corrupt does
// not cover, on miniredis and on a real server (their Lua differs), and
// checks each is ErrNotFound, removes the key, and that Create then works.
func TestCorruptMetadataOfEveryShapeReadsAsGone(t *testing.T) { onBothBackends(t, checkCorruptShapes) }

// onBothBackends runs check on miniredis and on a real redis-server: their
// Lua and their commands differ at the edges.
func onBothBackends(t *testing.T, check func(*testing.T, *redis.Client)) {
	t.Run("miniredis", func(t *testing.T) {
		client := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
		t.Cleanup(func() { client.Close() })
		check(t, client)
	})
	t.Run("redis-server", func(t *testing.T) {
		client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
		t.Cleanup(func() { client.Close() })
		check(t, client)
	})
}

func checkCorruptShapes(t *testing.T, client *redis.Client) {
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	shapes := map[string]func(key string) error{
		"idle 1.5 and no expiry": func(k string) error {
			if err := client.HSet(ctx, k, "__sk_i", "1.5").Err(); err != nil {
				return err
			}
			return client.Persist(ctx, k).Err()
		},
		"deadline not a number": func(k string) error { return client.HSet(ctx, k, "__sk_d", "soon").Err() },
		"deadline negative":     func(k string) error { return client.HSet(ctx, k, "__sk_d", "-5").Err() },
		"deadline 1e300":        func(k string) error { return client.HSet(ctx, k, "__sk_d", "1e300").Err() },
		"idle zero":             func(k string) error { return client.HSet(ctx, k, "__sk_i", "0").Err() },
		"idle nan":              func(k string) error { return client.HSet(ctx, k, "__sk_i", "nan").Err() },
		"creation missing":      func(k string) error { return client.HDel(ctx, k, "__sk_c").Err() },
		"a list":                func(k string) error { client.Del(ctx, k); return client.RPush(ctx, k, "x").Err() },
		// Shaped like a Rename marker, but not one Rename leaves: these
		// must not answer ErrRenewed for ever.
		"empty marker": func(k string) error { client.Del(ctx, k); return client.HSet(ctx, k, "__sk_r", "").Err() },
		"marker without expiry": func(k string) error {
			client.Del(ctx, k)
			return client.HSet(ctx, k, "__sk_r", "session:{zzzz}nothing").Err()
		},
		"marker with an hour to live": func(k string) error {
			client.Del(ctx, k)
			if err := client.HSet(ctx, k, "__sk_r", "session:{zzzz}nothing").Err(); err != nil {
				return err
			}
			return client.PExpire(ctx, k, time.Hour).Err()
		},
	}
	n := 0
	for shape, damage := range shapes {
		for op, run := range operationsOn(store) {
			n++
			k := fmt.Sprintf("session:{corrupt}%d", n)
			require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
			require.NoError(t, damage(k), shape)
			require.ErrorIs(t, run(ctx, k), sessionkit.ErrNotFound, "%s on %s", op, shape)
			require.Zero(t, client.Exists(ctx, k).Val(), "%s on %s left the key", op, shape)
		}
		n++
		k := fmt.Sprintf("session:{corrupt}%d", n)
		require.NoError(t, store.Create(ctx, k, nil, exp))
		require.NoError(t, damage(k), shape)
		require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, exp), "Create over %s", shape)
		all, err := store.GetAll(ctx, k)
		require.NoError(t, err)
		require.Equal(t, map[string][]byte{"b": []byte("2")}, all, "Create over %s kept nothing of it", shape)
	}
}

// TestStrayMarkerFieldOnALiveRecordIsIgnored: a marker field hand-added
// to a record whose metadata is intact does not make it a marker. The
// scripts do not look for it on a live record (a field that is missing
// costs a scan of the whole record: see guard), so the record stays live:
// every operation works, none answers ErrRenewed, the first one gives the
// key its TTL back, field counts leave the stray field out, and Destroy
// does not follow it to the key it names.
func TestStrayMarkerFieldOnALiveRecordIsIgnored(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
		stray := func(k, target string) {
			require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
			require.NoError(t, client.HSet(ctx, k, "__sk_r", target).Err())
			require.NoError(t, client.Persist(ctx, k).Err())
		}
		n := 0
		for op, run := range operationsOn(store) {
			n++
			k := fmt.Sprintf("session:{stray}%d", n)
			stray(k, "session:{stray}x")
			require.NoError(t, run(ctx, k), op)
			live := k
			if op == "Rename" {
				live = k + "-renamed"
			}
			ttl := client.PTTL(ctx, live).Val()
			require.True(t, ttl > 0 && ttl <= time.Hour, "%s left %s with TTL %v", op, live, ttl)
		}

		k, target := "session:{stray}counted", "session:{stray}target"
		require.NoError(t, store.Create(ctx, target, nil, exp))
		stray(k, target)
		l, err := store.Len(ctx, k)
		require.NoError(t, err)
		require.Equal(t, 1, l, "Len counts the stray field")
		require.NoError(t, store.Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 2), "the stray field counts against maxFields")
		keys, err := store.Keys(ctx, k)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"a", "b"}, keys)
		require.NoError(t, store.Destroy(ctx, k))
		require.Zero(t, client.Exists(ctx, k).Val())
		_, err = store.Len(ctx, target)
		require.NoError(t, err, "Destroy followed the stray field to the key it names")
	})
}

// operationsOn are the store calls on an existing record, as in the suite.
func operationsOn(s *redishash.Store) map[string]func(context.Context, string) error {
	return map[string]func(context.Context, string) error{
		"Get":    func(ctx context.Context, k string) error { _, err := s.Get(ctx, k, "a"); return err },
		"GetAll": func(ctx context.Context, k string) error { _, err := s.GetAll(ctx, k); return err },
		"Keys":   func(ctx context.Context, k string) error { _, err := s.Keys(ctx, k); return err },
		"Has":    func(ctx context.Context, k string) error { _, err := s.Has(ctx, k, "a"); return err },
		"Len":    func(ctx context.Context, k string) error { _, err := s.Len(ctx, k); return err },
		"Set": func(ctx context.Context, k string) error {
			return s.Set(ctx, k, []sessionkit.Field{{Name: "z", Value: []byte("26")}}, 0)
		},
		"Incr":   func(ctx context.Context, k string) error { _, err := s.Incr(ctx, k, "a", 1, 0); return err },
		"Pop":    func(ctx context.Context, k string) error { _, err := s.Pop(ctx, k, "a"); return err },
		"Delete": func(ctx context.Context, k string) error { return s.Delete(ctx, k, "a") },
		"Clear":  func(ctx context.Context, k string) error { return s.Clear(ctx, k) },
		"Touch":  func(ctx context.Context, k string) error { _, err := s.Touch(ctx, k); return err },
		"SetExpiry": func(ctx context.Context, k string) error {
			return s.SetExpiry(ctx, k, sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour})
		},
		"Rename": func(ctx context.Context, k string) error { return s.Rename(ctx, k, k+"-renamed") },
	}
}

// redisNow reads a server's clock in Unix ms.
func redisNow(t *testing.T, client redis.UniversalClient) int64 {
	t.Helper()
	now, err := client.Time(t.Context()).Result()
	require.NoError(t, err)
	return now.UnixMilli()
}

// meta reads a record's creation time and deadline, and its absolute
// expiry (PEXPIRETIME), all in Unix ms on Redis's clock.
func meta(t *testing.T, client redis.UniversalClient, key string) (created, deadline, expiresAt int64) {
	t.Helper()
	ctx := t.Context()
	vals, err := client.HMGet(ctx, key, "__sk_c", "__sk_d").Result()
	require.NoError(t, err)
	created, err = strconv.ParseInt(vals[0].(string), 10, 64)
	require.NoError(t, err)
	deadline, err = strconv.ParseInt(vals[1].(string), 10, 64)
	require.NoError(t, err)
	expiresAt, err = client.Do(ctx, "PEXPIRETIME", key).Int64()
	require.NoError(t, err)
	return created, deadline, expiresAt
}

// TestExpiryIsOnRedisClock checks on a real server that the creation time
// and deadline are Redis's TIME, and that no operation sets a key's expiry
// past its deadline: the key expires at min(last use + idle, deadline),
// with no application clock in the computation.
func TestExpiryIsOnRedisClock(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)

	// Lifetime shorter than the idle timeout: the key expires at the deadline.
	before := redisNow(t, client)
	require.NoError(t, store.Create(ctx, "session:{clock}a", nil, sessionkit.Expiry{Idle: time.Hour, Absolute: 10 * time.Second}))
	after := redisNow(t, client)
	created, deadline, expiresAt := meta(t, client, "session:{clock}a")
	require.GreaterOrEqual(t, created, before, "creation is Redis's TIME")
	require.LessOrEqual(t, created, after, "creation is Redis's TIME")
	require.Equal(t, created+10_000, deadline)
	require.Equal(t, deadline, expiresAt, "the key expires exactly at its deadline")
	for op, run := range operationsOn(store) {
		if op == "Rename" || op == "SetExpiry" {
			continue
		}
		require.NoError(t, run(ctx, "session:{clock}a"), op)
		_, _, expiresAt = meta(t, client, "session:{clock}a")
		require.Equal(t, deadline, expiresAt, "%s moved the expiry off the deadline", op)
	}

	// Idle timeout shorter: each use sets the expiry to now + idle on
	// Redis's clock, never past the deadline.
	require.NoError(t, store.Create(ctx, "session:{clock}b", nil, sessionkit.Expiry{Idle: 2 * time.Second, Absolute: time.Hour}))
	for op, run := range operationsOn(store) {
		if op == "Rename" || op == "SetExpiry" {
			continue
		}
		before := redisNow(t, client)
		require.NoError(t, run(ctx, "session:{clock}b"), op)
		after := redisNow(t, client)
		_, deadline, expiresAt := meta(t, client, "session:{clock}b")
		require.GreaterOrEqual(t, expiresAt, before+2000, op)
		require.LessOrEqual(t, expiresAt, min(after+2000, deadline), op)
	}

	// SetExpiry counts the new lifetime from creation, on Redis's clock.
	created, _, _ = meta(t, client, "session:{clock}b")
	require.NoError(t, store.SetExpiry(ctx, "session:{clock}b", sessionkit.Expiry{Idle: time.Hour, Absolute: time.Minute}))
	_, deadline, expiresAt = meta(t, client, "session:{clock}b")
	require.Equal(t, created+60_000, deadline)
	require.Equal(t, deadline, expiresAt)

	// Rename keeps the deadline, and the marker expires no later.
	require.NoError(t, store.Rename(ctx, "session:{clock}b", "session:{clock}c"))
	_, moved, expiresAt := meta(t, client, "session:{clock}c")
	require.Equal(t, deadline, moved)
	require.Equal(t, deadline, expiresAt)
	marker, err := client.Do(ctx, "PEXPIRETIME", "session:{clock}b").Int64()
	require.NoError(t, err)
	require.Positive(t, marker)
	require.LessOrEqual(t, marker, deadline)
}

// TestKeyLayoutIsAsDocumented checks the package doc's # Key layout: the
// record's fields and the marker Rename leaves.
func TestKeyLayoutIsAsDocumented(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testserver.Redis(t).Addr})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: 30 * time.Minute, Absolute: 24 * time.Hour}
	require.NoError(t, store.Create(ctx, "session:{AbCd}old", []sessionkit.Field{{Name: "user", Value: []byte(`"ana"`)}}, exp))
	all, err := client.HGetAll(ctx, "session:{AbCd}old").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"__sk_d", "__sk_i", "__sk_c", "user"}, keysOf(all))
	require.Equal(t, "1800000", all["__sk_i"])
	require.Equal(t, `"ana"`, all["user"])

	require.NoError(t, store.Rename(ctx, "session:{AbCd}old", "session:{AbCd}new"))
	marker, err := client.HGetAll(ctx, "session:{AbCd}old").Result()
	require.NoError(t, err)
	expireAt, err := client.Do(ctx, "PEXPIRETIME", "session:{AbCd}old").Int64()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"__sk_r": "session:{AbCd}new", "__sk_x": strconv.FormatInt(expireAt, 10)}, marker, "the marker names the new key and keeps its own expiry time")
	ttl, err := client.PTTL(ctx, "session:{AbCd}old").Result()
	require.NoError(t, err)
	require.Positive(t, ttl)
	require.LessOrEqual(t, ttl, sessionkit.RenewMarkerTTL)
	moved, err := client.HGetAll(ctx, "session:{AbCd}new").Result()
	require.NoError(t, err)
	require.Equal(t, all, moved)
}

func keysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
