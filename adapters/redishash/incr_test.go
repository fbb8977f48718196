package redishash_test

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// TestIncrAgreesWithParseIntOnEveryBackend checks that Incr accepts and
// refuses exactly what driver.AddInt (strconv.ParseInt, what the in-process
// stores use) does, on miniredis and on a real server, whose HINCRBYs both
// differ from it: Redis refuses "+5", "007" and "-0"; miniredis wraps
// around on overflow. It checks the result, the text stored, and that a
// refusal leaves the field as it was, in a small (listpack) and a large
// (hashtable) record.
func TestIncrAgreesWithParseIntOnEveryBackend(t *testing.T) { onBothBackends(t, checkIncrValues) }

func checkIncrValues(t *testing.T, client *redis.Client) {
	ctx := t.Context()
	store := redishash.New(client, nil)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	values := []string{
		"5", "-5", "0", "+5", "007", "-007", "-0", "+0", "00", "0009223372036854775807",
		"9007199254740993", "-9007199254740993", // past 2^53: exact only as text
		"9223372036854775807", "-9223372036854775808", "+9223372036854775807",
		"9223372036854775808", "-9223372036854775809",
		"", " 5", "5 ", "1.5", "1e3", "0x10", "1_000", "+", "-", "--5", "+-5", "٥", `"5"`,
	}
	deltas := []int64{1, -1, 0, 2, math.MaxInt64, math.MinInt64}
	for _, size := range []int{1, 200, -1, -200} { // negative: the same under a key with a policy (the fast path)
		key := fmt.Sprintf("session:{incr}%d", size)
		if size < 0 {
			size = -size
			key = policyKey(key, exp)
		}
		fields := make([]sessionkit.Field, size)
		for i := range fields {
			fields[i] = sessionkit.Field{Name: fmt.Sprint("f", i), Value: []byte("1")}
		}
		require.NoError(t, store.Create(ctx, key, fields, exp))
		for _, v := range values {
			for _, d := range deltas {
				what := fmt.Sprintf("%d fields, %q + %d", size, v, d)
				require.NoError(t, client.HSet(ctx, recordKey(key), "n", v).Err())
				want, wantErr := driver.AddInt([]byte(v), d)
				got, err := store.Incr(ctx, key, "n", d, 0)
				stored, herr := client.HGet(ctx, recordKey(key), "n").Result()
				require.NoError(t, herr)
				if wantErr != nil {
					require.ErrorIs(t, err, sessionkit.ErrDecode, what)
					require.Equal(t, v, stored, "%s: a refused Incr changed the field", what)
					continue
				}
				require.NoError(t, err, what)
				require.Equal(t, want, got, what)
				require.Equal(t, strconv.FormatInt(want, 10), stored, what)
			}
		}
		// A missing field counts as 0, whatever the delta.
		for _, d := range deltas {
			require.NoError(t, client.HDel(ctx, recordKey(key), "n").Err())
			got, err := store.Incr(ctx, key, "n", d, 0)
			require.NoError(t, err)
			require.Equal(t, d, got)
		}
		// Pop of an empty value is an empty value, not a missing one.
		require.NoError(t, client.HSet(ctx, recordKey(key), "empty", "").Err())
		v, err := store.Pop(ctx, key, "empty")
		require.NoError(t, err)
		require.Equal(t, []byte{}, v)
		v, err = store.Pop(ctx, key, "empty")
		require.NoError(t, err)
		require.Nil(t, v)
		_, err = store.Incr(ctx, key, "__sk_d", 1, 0)
		require.True(t, errors.Is(err, sessionkit.ErrInvalidKey), "Incr of a metadata field: %v", err)
		_, err = store.Pop(ctx, key, "__sk_d")
		require.True(t, errors.Is(err, sessionkit.ErrInvalidKey), "Pop of a metadata field: %v", err)
	}
}

// policyKey is name padded to the length of a token's hash, then a policy
// of exp from now, as the Manager builds keys: the store takes its fast
// path on it, and keeps the record under recordKey(key).
func policyKey(name string, exp sessionkit.Expiry) string {
	for len(name)-strings.LastIndexByte(name, '}')-1 < 43 {
		name += "x"
	}
	return name + "." + strconv.FormatInt(time.Now().UnixMilli(), 36) + "." +
		strconv.FormatInt(exp.Idle.Milliseconds(), 36) + "." + strconv.FormatInt(exp.Absolute.Milliseconds(), 36)
}

// TestFastIncrAnswersAsTheScript: Incr's MULTI on a key with a policy, on
// the cases where it must hand over to a script: over the field limit
// (nothing is left of the field), through a renewed key (the marker keeps
// no field and its own expiry), on a key whose record is gone (no key is
// left), after SetExpiry (the TTL follows the record's new policy).
func TestFastIncrAnswersAsTheScript(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		exp := sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

		full := policyKey("session:{fincr}full", exp)
		require.NoError(t, store.Create(ctx, full, []sessionkit.Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}, exp))
		_, err := store.Incr(ctx, full, "c", 5, 2)
		require.ErrorIs(t, err, sessionkit.ErrTooManyFields)
		require.False(t, client.HExists(ctx, recordKey(full), "c").Val(), "the refused field is gone")
		n, err := store.Incr(ctx, full, "a", 5, 2)
		require.NoError(t, err, "an existing field at the limit")
		require.Equal(t, int64(6), n)

		renewed := policyKey("session:{fincr}old", exp)
		require.NoError(t, store.Create(ctx, renewed, nil, exp))
		require.NoError(t, store.Rename(ctx, renewed, policyKey("session:{fincr}new", exp)))
		_, err = store.Incr(ctx, renewed, "n", 1, 0)
		require.ErrorIs(t, err, sessionkit.ErrRenewed)
		marker := client.HGetAll(ctx, recordKey(renewed)).Val()
		require.NotContains(t, marker, "n", "the marker keeps no field of the Incr")
		ttl := client.PTTL(ctx, recordKey(renewed)).Val()
		require.True(t, ttl > 0 && ttl <= sessionkit.RenewMarkerTTL, "the marker's own expiry is back: %v", ttl)

		gone := policyKey("session:{fincr}gone", exp)
		_, err = store.Incr(ctx, gone, "n", 1, 0)
		require.ErrorIs(t, err, sessionkit.ErrNotFound)
		require.Zero(t, client.Exists(ctx, recordKey(gone)).Val(), "an Incr on no record leaves no key")

		moved := policyKey("session:{fincr}moved", exp)
		require.NoError(t, store.Create(ctx, moved, nil, exp))
		require.NoError(t, store.SetExpiry(ctx, moved, sessionkit.Expiry{Idle: time.Minute, Absolute: 2 * time.Hour}))
		n, err = store.Incr(ctx, moved, "n", 3, 0)
		require.NoError(t, err)
		require.Equal(t, int64(3), n)
		ttl = client.PTTL(ctx, recordKey(moved)).Val()
		require.True(t, ttl > 0 && ttl <= time.Minute, "the record's own idle timeout, not the key's: %v", ttl)
		n, err = store.Incr(ctx, moved, "n", 3, 0)
		require.NoError(t, err)
		require.Equal(t, int64(6), n, "the increment ran once")
	})
}
