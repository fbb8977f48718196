package redishash_test

import (
	"errors"
	"fmt"
	"math"
	"strconv"
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
	for _, size := range []int{1, 200} {
		key := fmt.Sprintf("session:{incr}%d", size)
		fields := make([]sessionkit.Field, size)
		for i := range fields {
			fields[i] = sessionkit.Field{Name: fmt.Sprint("f", i), Value: []byte("1")}
		}
		require.NoError(t, store.Create(ctx, key, fields, exp))
		for _, v := range values {
			for _, d := range deltas {
				what := fmt.Sprintf("%d fields, %q + %d", size, v, d)
				require.NoError(t, client.HSet(ctx, key, "n", v).Err())
				want, wantErr := driver.AddInt([]byte(v), d)
				got, err := store.Incr(ctx, key, "n", d, 0)
				stored, herr := client.HGet(ctx, key, "n").Result()
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
			require.NoError(t, client.HDel(ctx, key, "n").Err())
			got, err := store.Incr(ctx, key, "n", d, 0)
			require.NoError(t, err)
			require.Equal(t, d, got)
		}
		// Pop of an empty value is an empty value, not a missing one.
		require.NoError(t, client.HSet(ctx, key, "empty", "").Err())
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
