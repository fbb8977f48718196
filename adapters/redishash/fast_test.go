package redishash_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// The fast path (fast.go): a key that carries its policy makes Get one
// pipeline of plain commands and Set one MULTI, with the scripts as the
// fallback that answers and puts right whatever the plain commands did to
// a key that was not a live record of that policy.

// fastExpiry has an idle timeout far longer than RenewMarkerTTL, so that a
// marker a plain PEXPIRE stretched shows in its TTL.
var fastExpiry = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

// fastManager returns a Manager on client, with fastExpiry unless opts
// says otherwise, and its store.
func fastManager(t *testing.T, client *redis.Client, opts sessionkit.Options) (*sessionkit.Manager, *redishash.Store) {
	t.Helper()
	store := redishash.New(client, nil)
	opts.Store = store
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = fastExpiry.Idle
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = fastExpiry.Absolute
	}
	m, err := sessionkit.New(&opts)
	require.NoError(t, err)
	return m, store
}

// fastStored stores a session holding a = 1 through m and returns its
// handle, token and storage key.
func fastStored(t *testing.T, m *sessionkit.Manager) (s *sessionkit.Session, token, key string) {
	t.Helper()
	s = m.NewSession()
	require.NoError(t, s.Set(t.Context(), "a", 1))
	token = s.Token()
	return s, token, m.StorageKey(token)
}

// fastPolicyNow is a policy of exp created now on Redis's clock.
func fastPolicyNow(t *testing.T, client *redis.Client, exp sessionkit.Expiry) sessionkit.Policy {
	t.Helper()
	return sessionkit.Policy{Created: redisNow(t, client), Idle: exp.Idle.Milliseconds(), Absolute: exp.Absolute.Milliseconds()}
}

// fastKey is a storage key shaped as the Manager's ("session:{tag}", the
// 43-character hash, the policy), named by name, carrying p.
func fastKey(name string, p sessionkit.Policy) string {
	h := sha256.Sum256([]byte(name))
	var b strings.Builder
	b.WriteString("session:{fast}")
	b.WriteString(base64.RawURLEncoding.EncodeToString(h[:]))
	for _, v := range []int64{p.Created, p.Idle, p.Absolute} {
		b.WriteString("." + strconv.FormatInt(v, 36))
	}
	return b.String()
}

func fastHash(t *testing.T, client *redis.Client, key string) map[string]string {
	t.Helper()
	h, err := client.HGetAll(t.Context(), key).Result()
	require.NoError(t, err)
	return h
}

// fastUserFields is a record's hash without its metadata.
func fastUserFields(t *testing.T, client *redis.Client, key string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range fastHash(t, client, key) {
		if !strings.HasPrefix(k, sessionkit.ReservedPrefix) {
			out[k] = v
		}
	}
	return out
}

func fastPTTL(t *testing.T, client *redis.Client, key string) time.Duration {
	t.Helper()
	ms, err := client.Do(t.Context(), "PTTL", key).Int64()
	require.NoError(t, err)
	return time.Duration(ms) * time.Millisecond
}

func fastExpireTime(t *testing.T, client *redis.Client, key string) int64 {
	t.Helper()
	at, err := client.Do(t.Context(), "PEXPIRETIME", key).Int64()
	require.NoError(t, err)
	return at
}

func fastDBSize(t *testing.T, client *redis.Client) int64 {
	t.Helper()
	n, err := client.DBSize(t.Context()).Result()
	require.NoError(t, err)
	return n
}

func fastInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err, "%q", s)
	return n
}

// fastRequireMarker checks that marker is a Rename marker as Rename leaves
// it: only __sk_r (naming target) and __sk_x, and a TTL within
// RenewMarkerTTL (not the idle timeout a plain PEXPIRE gave it).
func fastRequireMarker(t *testing.T, client *redis.Client, marker, target, what string) {
	t.Helper()
	h := fastHash(t, client, marker)
	require.ElementsMatch(t, []string{"__sk_r", "__sk_x"}, keysOf(h), "%s: the marker holds %v", what, h)
	require.Equal(t, target, h["__sk_r"], what)
	ttl := fastPTTL(t, client, marker)
	require.True(t, ttl > 0 && ttl <= sessionkit.RenewMarkerTTL, "%s: the marker's TTL is %v, want (0, %v]", what, ttl, sessionkit.RenewMarkerTTL)
}

// fastSetMulti sends by hand exactly the MULTI of a fast Set without a
// field limit (HMGET, HSET, PEXPIRE, PEXPIREAT … LT) to key, a record key
// (the storage key without its policy): what a client that died before
// its second round trip leaves.
func fastSetMulti(t *testing.T, client *redis.Client, key string, p sessionkit.Policy, name, value string) {
	t.Helper()
	ctx := t.Context()
	tx := client.TxPipeline()
	tx.HMGet(ctx, key, "__sk_d", "__sk_i", name)
	tx.HSet(ctx, key, name, value)
	tx.Do(ctx, "pexpire", key, p.Idle)
	tx.Do(ctx, "pexpireat", key, p.Deadline(), "lt")
	_, err := tx.Exec(ctx)
	require.NoError(t, err)
}

func isRealServer(t *testing.T) bool { return strings.HasSuffix(t.Name(), "/redis-server") }

// fastTrips is what c recorded since the last call, without a new
// connection's handshake (go-redis sends HELLO and CLIENT SETINFO once per
// connection it opens): the round trips of the operations.
func fastTrips(c *counter) []string {
	var out []string
	for _, trip := range c.take() {
		if trip != "HELLO" && trip != "CLIENT" && !strings.HasPrefix(trip, "PIPELINE(CLIENT") {
			out = append(out, trip)
		}
	}
	return out
}

// fastExpiryMark is a value that changes only when something sets key's
// expiry: PEXPIRETIME on a real server; PTTL on miniredis, whose TTLs do
// not run down on their own (and whose PEXPIRETIME moves with the wall
// clock).
func fastExpiryMark(t *testing.T, client *redis.Client, key string) int64 {
	t.Helper()
	if isRealServer(t) {
		return fastExpireTime(t, client, key)
	}
	return fastPTTL(t, client, key).Milliseconds()
}

// fastRequireNotPast checks that key expires, and no later than deadline
// (Unix ms): its PTTL is at most the time left from now, Redis's clock read
// before the operation that set it, and on a real server its PEXPIRETIME
// is at most deadline.
func fastRequireNotPast(t *testing.T, client *redis.Client, key string, deadline, now int64, what string) {
	t.Helper()
	ttl := fastPTTL(t, client, key)
	require.Positive(t, ttl, "%s: key without a TTL (%v)", what, ttl)
	require.LessOrEqual(t, ttl.Milliseconds(), deadline-now, "%s: PTTL longer than the time left to the deadline", what)
	if isRealServer(t) {
		at := fastExpireTime(t, client, key)
		require.Positive(t, at, what)
		require.LessOrEqual(t, at, deadline, "%s: PEXPIRETIME past the deadline", what)
	}
}

// 1. A Manager-issued key makes Get one pipeline and Set one MULTI, and
// the record lives under the key without its policy, with the policy's
// metadata.
func TestFastManagerKeyIsOnePipelineAndOneMulti(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		c := &counter{}
		client.AddHook(c)
		m, store := fastManager(t, client, sessionkit.Options{})
		s, token, key := fastStored(t, m)

		require.Greater(t, len(token), sessionkit.TokenLength, "a stored session's token carries its policy")
		base, p, ok := sessionkit.KeyPolicy(key)
		require.True(t, ok, "the storage key carries the policy: %s", key)
		require.Equal(t, recordKey(key), base)
		require.NotEqual(t, key, base)
		require.Equal(t, fastExpiry.Idle.Milliseconds(), p.Idle)
		require.Equal(t, fastExpiry.Absolute.Milliseconds(), p.Absolute)

		require.Zero(t, client.Exists(ctx, key).Val(), "nothing under the key with its policy")
		require.EqualValues(t, 1, client.Exists(ctx, base).Val(), "the record lives under recordKey(key)")
		h := fastHash(t, client, base)
		require.Equal(t, strconv.FormatInt(p.Created, 10), h["__sk_c"], "__sk_c is the policy's creation")
		require.Equal(t, strconv.FormatInt(p.Deadline(), 10), h["__sk_d"], "__sk_d is the policy's deadline")
		require.Equal(t, strconv.FormatInt(p.Idle, 10), h["__sk_i"], "__sk_i is the policy's idle timeout")
		require.Equal(t, "1", h["a"])

		var admin *redis.Client
		if isRealServer(t) {
			admin = redis.NewClient(&redis.Options{Addr: client.Options().Addr})
			t.Cleanup(func() { admin.Close() })
		}
		const get = "PIPELINE(PEXPIRE PEXPIREAT HMGET)"                              // the HMGET last: it checks what the refresh acted on
		const set = "PIPELINE(MULTI HMGET HLEN PEXPIRE PEXPIREAT HSET PEXPIRE EXEC)" // the refresh before the write; the last PEXPIRE (NX) gives a stray hash a minute
		const setNoLimit = set
		a := sessionkit.NewKey[int]("a")
		steps := []struct {
			name string
			trip string
			run  func() error
		}{
			{"store Get", get, func() error {
				vals, err := store.Get(ctx, key, "a", "missing")
				require.Equal(t, [][]byte{[]byte("1"), nil}, vals)
				return err
			}},
			{"Session Get", get, func() error {
				v, found, err := a.Get(ctx, s)
				require.True(t, found)
				require.Equal(t, 1, v)
				return err
			}},
			{"store Set", set, func() error {
				return store.Set(ctx, key, []sessionkit.Field{{Name: "b", Value: []byte("2")}, {Name: "a", Value: []byte("3")}}, sessionkit.DefaultMaxFields)
			}},
			{"store Set without a limit", setNoLimit, func() error {
				return store.Set(ctx, key, []sessionkit.Field{{Name: "c", Value: []byte("4")}}, 0)
			}},
			{"Session Set", set, func() error { return s.Set(ctx, "d", 5) }},
		}
		for _, st := range steps {
			var before map[string]int
			if admin != nil {
				before = commandStats(t, admin)
			}
			fastTrips(c)
			require.NoError(t, st.run(), st.name)
			require.Equal(t, []string{st.trip}, fastTrips(c), "%s: one round trip of plain commands", st.name)
			if admin != nil {
				ran := statsDelta(before, commandStats(t, admin))
				t.Logf("%s: server ran %s", st.name, ran)
				require.NotContains(t, ran, "EVAL", "%s ran a script", st.name)
			}
			ttl := fastPTTL(t, client, base)
			require.True(t, ttl > fastExpiry.Idle-time.Minute && ttl <= fastExpiry.Idle, "%s: TTL %v, want about the idle timeout", st.name, ttl)
		}
		require.Equal(t, map[string]string{"a": "3", "b": "2", "c": "4", "d": "5"}, fastUserFields(t, client, base))
		h = fastHash(t, client, base)
		require.Equal(t, strconv.FormatInt(p.Created, 10), h["__sk_c"], "the writes left the metadata alone")
		require.Equal(t, strconv.FormatInt(p.Deadline(), 10), h["__sk_d"])
		require.Equal(t, strconv.FormatInt(p.Idle, 10), h["__sk_i"])
	})
}

// 2. Get and Set through a renewed token answer ErrRenewed and leave the
// marker as Rename left it: its TTL within RenewMarkerTTL (the script
// restored it from __sk_x after the plain PEXPIRE stretched it), and none
// of the fields the Set wrote.
func TestFastRenewedTokenIsErrRenewedAndTheMarkerStaysAMarker(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		m, store := fastManager(t, client, sessionkit.Options{})
		s, oldToken, oldKey := fastStored(t, m)
		stale, err := m.Load(oldToken)
		require.NoError(t, err)
		require.NoError(t, s.Renew(ctx))
		newKey := m.StorageKey(s.Token())
		_, oldPolicy, ok := sessionkit.KeyPolicy(oldKey)
		require.True(t, ok)
		_, newPolicy, ok := sessionkit.KeyPolicy(newKey)
		require.True(t, ok)
		require.Equal(t, oldPolicy, newPolicy, "Renew keeps the policy")
		marker, target := recordKey(oldKey), recordKey(newKey)
		fastRequireMarker(t, client, marker, target, "after Renew")
		record := fastHash(t, client, target)

		checkThrough(t, client, store, oldKey, marker, target)

		_, err = stale.Get(ctx, "a")
		require.ErrorIs(t, err, sessionkit.ErrRenewed, "Session.Get through the renewed token")
		fastRequireMarker(t, client, marker, target, "after Session.Get")
		require.ErrorIs(t, stale.Set(ctx, "z", 26), sessionkit.ErrRenewed, "Session.Set through the renewed token")
		fastRequireMarker(t, client, marker, target, "after Session.Set")
		require.Equal(t, record, fastHash(t, client, target), "the record the marker leads to is untouched")

		// At the store level: Create under a policy key, Rename to another
		// key of the same policy, then Set and Get on the first.
		p := fastPolicyNow(t, client, fastExpiry)
		k1, k2 := fastKey("renew-1", p), fastKey("renew-2", p)
		require.NoError(t, store.Create(ctx, k1, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, fastExpiry))
		require.NoError(t, store.Rename(ctx, k1, k2))
		fastRequireMarker(t, client, recordKey(k1), recordKey(k2), "after store.Rename")
		record = fastHash(t, client, recordKey(k2))
		checkThrough(t, client, store, k1, recordKey(k1), recordKey(k2))
		require.Equal(t, record, fastHash(t, client, recordKey(k2)), "the record the marker leads to is untouched")
	})
}

// checkThrough runs store calls through key, whose record is the marker
// leading to target, and checks each answers ErrRenewed and leaves it a
// marker.
func checkThrough(t *testing.T, client *redis.Client, store *redishash.Store, key, marker, target string) {
	t.Helper()
	ctx := t.Context()
	_, err := store.Get(ctx, key, "a")
	require.ErrorIs(t, err, sessionkit.ErrRenewed, "Get")
	fastRequireMarker(t, client, marker, target, "after Get")
	for _, c := range []struct {
		name      string
		fields    []sessionkit.Field
		maxFields int
	}{
		{"Set of a new field", []sessionkit.Field{{Name: "z", Value: []byte("26")}}, sessionkit.DefaultMaxFields},
		{"Set of the record's field", []sessionkit.Field{{Name: "a", Value: []byte("2")}}, sessionkit.DefaultMaxFields},
		{"Set of two fields, no limit", []sessionkit.Field{{Name: "y", Value: []byte("25")}, {Name: "x", Value: []byte("24")}}, 0},
		{"Set of a field at a limit of 1", []sessionkit.Field{{Name: "w", Value: []byte("23")}}, 1},
	} {
		require.ErrorIs(t, store.Set(ctx, key, c.fields, c.maxFields), sessionkit.ErrRenewed, c.name)
		fastRequireMarker(t, client, marker, target, "after "+c.name)
	}
	_, err = store.Get(ctx, key, "a", "z")
	require.ErrorIs(t, err, sessionkit.ErrRenewed, "Get after the Sets")
	fastRequireMarker(t, client, marker, target, "after the last Get")
}

// 3. Set and Get on a key whose record is gone (destroyed, or never
// created, under a valid policy) answer ErrNotFound and leave no key.
func TestFastSetAndGetOnAGoneRecordLeaveNothing(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		m, store := fastManager(t, client, sessionkit.Options{})
		s, token, destroyed := fastStored(t, m)
		require.NoError(t, s.Destroy(ctx))
		require.Zero(t, fastDBSize(t, client))
		never := fastKey("never-created", fastPolicyNow(t, client, fastExpiry))
		_, _, ok := sessionkit.KeyPolicy(never)
		require.True(t, ok)

		for what, key := range map[string]string{"destroyed": destroyed, "never created": never} {
			for _, c := range []struct {
				name      string
				fields    []sessionkit.Field
				maxFields int
			}{
				{"Set", []sessionkit.Field{{Name: "a", Value: []byte("2")}}, sessionkit.DefaultMaxFields},
				{"Set without a limit", []sessionkit.Field{{Name: "a", Value: []byte("2")}, {Name: "b", Value: []byte("3")}}, 0},
				{"Set at a limit of 1", []sessionkit.Field{{Name: "a", Value: []byte("2")}}, 1},
			} {
				require.ErrorIs(t, store.Set(ctx, key, c.fields, c.maxFields), sessionkit.ErrNotFound, "%s on the %s record", c.name, what)
				require.Zero(t, client.Exists(ctx, recordKey(key), key).Val(), "%s on the %s record left its key", c.name, what)
				require.Zero(t, fastDBSize(t, client), "%s on the %s record left a key", c.name, what)
			}
			_, err := store.Get(ctx, key, "a")
			require.ErrorIs(t, err, sessionkit.ErrNotFound, "Get on the %s record", what)
			require.Zero(t, fastDBSize(t, client), "Get on the %s record created a key", what)
		}

		// Through the Manager: the gone session reads as empty, and a write
		// starts a new one under a fresh token.
		h, err := m.Load(token)
		require.NoError(t, err)
		_, found, err := sessionkit.NewKey[int]("a").Get(ctx, h)
		require.NoError(t, err)
		require.False(t, found)
		require.Zero(t, fastDBSize(t, client))
		require.NoError(t, h.Set(ctx, "b", 2))
		require.NotEqual(t, token, h.Token())
		require.Zero(t, client.Exists(ctx, recordKey(destroyed)).Val(), "the old token's record stays gone")
		require.EqualValues(t, 1, fastDBSize(t, client))
	})
}

// 4. A client that dies between the fast Set's MULTI and setFixScript:
// (a) on a marker, a Get through it still answers ErrRenewed and gives the
// marker its own TTL back; (b) on a missing key, the hash the HSET made has
// no metadata and a TTL of at most the idle timeout, and a Get reads it as
// no session and removes it.
func TestFastCrashBetweenTheTwoRoundTrips(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		m, store := fastManager(t, client, sessionkit.Options{})

		// (a) A marker.
		s, oldToken, oldKey := fastStored(t, m)
		require.NoError(t, s.Renew(ctx))
		marker, target := recordKey(oldKey), recordKey(m.StorageKey(s.Token()))
		_, p, ok := sessionkit.KeyPolicy(oldKey)
		require.True(t, ok)
		fastSetMulti(t, client, marker, p, "z", "26")
		h := fastHash(t, client, marker)
		require.Equal(t, "26", h["z"], "the MULTI wrote into the marker")
		require.Greater(t, fastPTTL(t, client, marker), sessionkit.RenewMarkerTTL, "the MULTI stretched the marker's TTL (the crash state)")

		_, err := store.Get(ctx, oldKey, "a")
		require.ErrorIs(t, err, sessionkit.ErrRenewed, "Get through the marker after the crash")
		ttl := fastPTTL(t, client, marker)
		require.True(t, ttl > 0 && ttl <= sessionkit.RenewMarkerTTL, "the Get gave the marker its TTL back: %v", ttl)
		require.Equal(t, target, fastHash(t, client, marker)["__sk_r"])
		stale, err := m.Load(oldToken)
		require.NoError(t, err)
		_, err = stale.Get(ctx, "a")
		require.ErrorIs(t, err, sessionkit.ErrRenewed, "Session.Get through the marker after the crash")
		_, found, err := sessionkit.NewKey[int]("a").Get(ctx, s)
		require.NoError(t, err)
		require.True(t, found, "the renewed session is untouched")
		require.NotContains(t, fastHash(t, client, target), "z")

		// (b) A missing key.
		p = fastPolicyNow(t, client, fastExpiry)
		missing := fastKey("crash-missing", p)
		fastSetMulti(t, client, recordKey(missing), p, "z", "26")
		require.Equal(t, map[string]string{"z": "26"}, fastHash(t, client, recordKey(missing)), "the HSET made a hash without metadata")
		ttl = fastPTTL(t, client, recordKey(missing))
		require.True(t, ttl > 0 && ttl <= time.Duration(p.Idle)*time.Millisecond, "its TTL is at most the idle timeout: %v", ttl)

		_, err = store.Get(ctx, missing, "z")
		require.ErrorIs(t, err, sessionkit.ErrNotFound, "the hash reads as no session")
		require.Zero(t, client.Exists(ctx, recordKey(missing)).Val(), "the Get removed it")

		// The same with a deadline nearer than the idle timeout: the TTL is
		// at most the time left.
		short := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Minute}
		p = fastPolicyNow(t, client, short)
		missing = fastKey("crash-missing-short", p)
		now := redisNow(t, client)
		fastSetMulti(t, client, recordKey(missing), p, "z", "26")
		fastRequireNotPast(t, client, recordKey(missing), p.Deadline(), now, "the hash the MULTI made")
		require.ErrorIs(t, store.Set(ctx, missing, []sessionkit.Field{{Name: "y", Value: []byte("1")}}, sessionkit.DefaultMaxFields), sessionkit.ErrNotFound)
		require.Zero(t, client.Exists(ctx, recordKey(missing)).Val(), "the Set removed it")
	})
}

// 5. The field limit on the fast path: a new field past maxFields is
// refused and not there after; an existing field at the limit is written.
func TestFastMaxFields(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		c := &counter{}
		client.AddHook(c)
		key := fastKey("max", fastPolicyNow(t, client, fastExpiry))
		rk := recordKey(key)
		require.NoError(t, store.Create(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}, fastExpiry))

		require.ErrorIs(t, store.Set(ctx, key, []sessionkit.Field{{Name: "c", Value: []byte("3")}}, 2), sessionkit.ErrTooManyFields)
		require.Equal(t, map[string]string{"a": "1", "b": "2"}, fastUserFields(t, client, rk), "the refused field is not there")
		require.ErrorIs(t, store.Set(ctx, key, []sessionkit.Field{{Name: "c", Value: []byte("3")}, {Name: "d", Value: []byte("4")}}, 3), sessionkit.ErrTooManyFields)
		require.Equal(t, map[string]string{"a": "1", "b": "2"}, fastUserFields(t, client, rk), "neither refused field is there")

		fastTrips(c)
		require.NoError(t, store.Set(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("one")}}, 2), "an existing field at the limit")
		require.Len(t, fastTrips(c), 1, "the fast path answered it alone")
		require.NoError(t, store.Set(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("uno")}, {Name: "b", Value: []byte("dos")}}, 2), "two existing fields at the limit")
		require.Equal(t, map[string]string{"a": "uno", "b": "dos"}, fastUserFields(t, client, rk))
		require.NoError(t, store.Set(ctx, key, []sessionkit.Field{{Name: "c", Value: []byte("3")}}, 3), "a new field up to the limit")
		require.Equal(t, map[string]string{"a": "uno", "b": "dos", "c": "3"}, fastUserFields(t, client, rk))
		ttl := fastPTTL(t, client, rk)
		require.True(t, ttl > 0 && ttl <= fastExpiry.Idle, "TTL %v", ttl)

		// Through a Manager with MaxFields.
		m, _ := fastManager(t, client, sessionkit.Options{MaxFields: 2})
		s, _, mk := fastStored(t, m)
		require.NoError(t, s.Set(ctx, "b", 2))
		require.ErrorIs(t, s.Set(ctx, "c", 3), sessionkit.ErrTooManyFields)
		require.Equal(t, map[string]string{"a": "1", "b": "2"}, fastUserFields(t, client, recordKey(mk)))
		require.NoError(t, s.Set(ctx, "a", 10))
		require.Equal(t, map[string]string{"a": "10", "b": "2"}, fastUserFields(t, client, recordKey(mk)))
	})
}

// A Set refused for the field limit changes nothing, also when it names an
// existing field along with a new one: Session.SetMany promises "On any
// error nothing is written: ... a write that would leave more than
// MaxFields keys (ErrTooManyFields)", as the suite's
// SetOverMaxFieldsFailsAndChangesNothing checks on keys without a policy.
// The fast path's MULTI writes first, so setFixScript takes the write back:
// new fields removed, overwritten ones given their old value (found as a
// bug by this test: it restored only the new ones).
func TestFastSetOverMaxFieldsChangesNothing(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		fields := []sessionkit.Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}
		write := []sessionkit.Field{{Name: "a", Value: []byte("new")}, {Name: "c", Value: []byte("3")}}
		for _, c := range []struct{ what, key string }{
			{"a key without a policy (the script)", "session:{fast}plain"},
			{"a key with a policy (the fast path)", fastKey("over", fastPolicyNow(t, client, fastExpiry))},
		} {
			require.NoError(t, store.Create(ctx, c.key, fields, fastExpiry))
			require.ErrorIs(t, store.Set(ctx, c.key, write, 2), sessionkit.ErrTooManyFields, c.what)
			require.Equal(t, map[string]string{"a": "1", "b": "2"}, fastUserFields(t, client, recordKey(c.key)), "%s: the refused Set changed the record", c.what)
		}

		m, _ := fastManager(t, client, sessionkit.Options{MaxFields: 2})
		s, _, key := fastStored(t, m)
		require.NoError(t, s.Set(ctx, "b", 2))
		require.ErrorIs(t, s.SetMany(ctx, map[string]any{"a": "changed", "c": 3}), sessionkit.ErrTooManyFields)
		require.Equal(t, map[string]string{"a": "1", "b": "2"}, fastUserFields(t, client, recordKey(key)), "SetMany refused with ErrTooManyFields changed the session")
	})
}

// 6. After SetExpiry, a key carrying the old policy still works (the
// script answers) and leaves the TTL per the new policy, never longer.
// SetExpiry is the store's: the record's policy changes while the key
// keeps the old one, as when Session.SetExpiry's second step (the Rename
// to a token with the new policy) failed, or for a handle still holding
// the token issued before.
func TestFastSetExpiryFallsBackToTheScript(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		c := &counter{}
		client.AddHook(c)
		m, store := fastManager(t, client, sessionkit.Options{})
		for _, exp := range []sessionkit.Expiry{
			{Idle: 2 * time.Minute, Absolute: 2 * time.Hour},    // only a shorter idle timeout
			{Idle: 2 * time.Minute, Absolute: 90 * time.Minute}, // a shorter idle timeout and lifetime
			{Idle: time.Hour, Absolute: 5 * time.Minute},        // only a deadline nearer than the idle timeout
			{Idle: 2 * time.Hour, Absolute: 4 * time.Hour},      // a longer idle timeout and lifetime
		} {
			_, token, key := fastStored(t, m)
			rk := recordKey(key)
			_, old, ok := sessionkit.KeyPolicy(key)
			require.True(t, ok)
			require.NoError(t, store.SetExpiry(ctx, key, exp))
			h := fastHash(t, client, rk)
			require.Equal(t, strconv.FormatInt(exp.Idle.Milliseconds(), 10), h["__sk_i"], "the record's policy changed")
			deadline := fastInt(t, h["__sk_d"])
			require.Equal(t, old.Created+exp.Absolute.Milliseconds(), deadline)
			s, err := m.Load(token)
			require.NoError(t, err)

			check := func(what string, run func() error) {
				t.Helper()
				now := redisNow(t, client)
				fastTrips(c)
				require.NoError(t, run(), "%v: %s through the old policy", exp, what)
				trips := fastTrips(c)
				t.Logf("%v, %s: %d round trips: %v", exp, what, len(trips), trips)
				ttl := fastPTTL(t, client, rk)
				require.LessOrEqual(t, ttl, exp.Idle, "%v: %s left TTL %v, longer than the new idle timeout", exp, what, ttl)
				if exp.Idle > fastExpiry.Idle {
					require.Greater(t, ttl, fastExpiry.Idle, "%v: %s left the old idle timeout", exp, what)
				}
				fastRequireNotPast(t, client, rk, deadline, now, fmt.Sprintf("%v: %s", exp, what))
				require.Equal(t, h["__sk_i"], fastHash(t, client, rk)["__sk_i"], "%v: %s changed the policy back", exp, what)
				require.Equal(t, h["__sk_d"], fastHash(t, client, rk)["__sk_d"], "%v: %s changed the deadline back", exp, what)
			}
			check("store Get", func() error {
				vals, err := store.Get(ctx, key, "a")
				require.Equal(t, [][]byte{[]byte("1")}, vals)
				return err
			})
			check("store Set", func() error {
				return store.Set(ctx, key, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, sessionkit.DefaultMaxFields)
			})
			check("Session Get", func() error {
				v, found, err := sessionkit.NewKey[int]("b").Get(ctx, s)
				require.True(t, found)
				require.Equal(t, 2, v)
				return err
			})
			check("Session Set", func() error { return s.Set(ctx, "c", 3) })
			require.Equal(t, token, s.Token(), "the handle stayed on its token")
			require.Equal(t, map[string]string{"a": "1", "b": "2", "c": "3"}, fastUserFields(t, client, rk))
		}
	})
}

// 7. Clock skew: Create under a policy created 5 s away from Redis's clock
// is ErrClockSkew and writes nothing; a Manager whose clock is an hour off
// stores its sessions under tokens without a policy, which work.
func TestFastClockSkew(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		for _, off := range []time.Duration{5 * time.Second, -5 * time.Second} {
			p := fastPolicyNow(t, client, fastExpiry)
			p.Created += off.Milliseconds()
			key := fastKey("skew"+off.String(), p)
			err := store.Create(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, fastExpiry)
			require.ErrorIs(t, err, sessionkit.ErrClockSkew, "created %v away", off)
			require.Zero(t, fastDBSize(t, client), "a refused Create wrote something")
		}
		p := fastPolicyNow(t, client, fastExpiry)
		p.Created -= 200
		require.NoError(t, store.Create(ctx, fastKey("skew-200ms", p), nil, fastExpiry), "200 ms of skew is accepted")
		require.NoError(t, client.FlushDB(ctx).Err())

		for _, off := range []time.Duration{time.Hour, -time.Hour} {
			m, _ := fastManager(t, client, sessionkit.Options{Clock: func() time.Time { return time.Now().Add(off) }})
			s, token, key := fastStored(t, m)
			require.Len(t, token, sessionkit.TokenLength, "clock %v off: the token carries no policy", off)
			_, _, ok := sessionkit.KeyPolicy(key)
			require.False(t, ok)
			require.EqualValues(t, 1, fastDBSize(t, client), "clock %v off: only the session without a policy was written", off)
			require.NoError(t, s.Set(ctx, "b", 2))

			h, err := m.Load(token)
			require.NoError(t, err)
			v, found, err := sessionkit.NewKey[int]("a").Get(ctx, h)
			require.NoError(t, err)
			require.True(t, found, "clock %v off: the session reads", off)
			require.Equal(t, 1, v)
			require.NoError(t, h.Set(ctx, "c", 3))
			require.Equal(t, token, h.Token())
			require.Equal(t, map[string]string{"a": "1", "b": "2", "c": "3"}, fastUserFields(t, client, key))
			ttl := fastPTTL(t, client, key)
			require.True(t, ttl > 0 && ttl <= fastExpiry.Idle, "TTL %v", ttl)
			require.NoError(t, client.FlushDB(ctx).Err())
		}
	})
}

// 8. A token whose policy was altered (still valid base 36) names no
// record: Load gives a handle that reads a fresh session, and the real
// session, fields and expiry, is untouched.
func TestFastAlteredPolicyInATokenNamesNoRecord(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		m, store := fastManager(t, client, sessionkit.Options{})
		_, token, key := fastStored(t, m)
		rk := recordKey(key)
		parts := strings.Split(token[sessionkit.TokenLength+1:], ".")
		require.Len(t, parts, 3, token)
		record := fastHash(t, client, rk)
		expiresAt := fastExpiryMark(t, client, rk)
		require.Positive(t, expiresAt)

		for j, part := range []string{"created", "idle", "absolute"} {
			altered := append([]string(nil), parts...)
			v, err := strconv.ParseInt(parts[j], 36, 64)
			require.NoError(t, err)
			altered[j] = strconv.FormatInt(v*2, 36)
			tok := token[:sessionkit.TokenLength] + "." + strings.Join(altered, ".")
			require.NotEqual(t, token, tok)

			h, err := m.Load(tok)
			require.NoError(t, err, "the altered %s is a valid token", part)
			_, found, err := sessionkit.NewKey[int]("a").Get(ctx, h)
			require.NoError(t, err)
			require.False(t, found, "the token with its %s altered reads the session", part)
			require.NotEqual(t, tok, h.Token(), "the handle turned fresh")

			ak := m.StorageKey(tok)
			require.NotEqual(t, rk, recordKey(ak))
			require.ErrorIs(t, store.Set(ctx, ak, []sessionkit.Field{{Name: "a", Value: []byte("evil")}}, sessionkit.DefaultMaxFields), sessionkit.ErrNotFound)
			_, err = store.Get(ctx, ak, "a")
			require.ErrorIs(t, err, sessionkit.ErrNotFound)

			require.EqualValues(t, 1, fastDBSize(t, client), "altered %s: a key was created", part)
			require.Equal(t, record, fastHash(t, client, rk), "altered %s: the real session changed", part)
			require.Equal(t, expiresAt, fastExpiryMark(t, client, rk), "altered %s: the real session's expiry moved", part)
		}
	})
}

// 9. The fast path never sets an expiry past the deadline: a session of
// Absolute 1.5 s and Idle 1 h, used every 20 ms until it ends, has after
// every Get and Set a PTTL no longer than the time left and (on a real
// server) a PEXPIRETIME no later than __sk_d; on a real server it ends at
// its deadline, not before.
func TestFastNeverPassesTheDeadline(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		m, store := fastManager(t, client, sessionkit.Options{IdleTimeout: time.Hour, Lifetime: 1500 * time.Millisecond})
		_, _, key := fastStored(t, m)
		rk := recordKey(key)
		_, p, ok := sessionkit.KeyPolicy(key)
		require.True(t, ok)
		deadline := fastInt(t, fastHash(t, client, rk)["__sk_d"])
		require.Equal(t, p.Deadline(), deadline)

		real := isRealServer(t)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		uses, ended := 0, false
		for !ended {
			now := redisNow(t, client)
			require.Less(t, now, deadline+5000, "the session outlived its deadline by 5 s")
			if !real && now >= deadline-100 {
				break // miniredis expires keys only when told to (FastForward): nothing more to see
			}
			var err error
			what := fmt.Sprintf("use %d (Get)", uses)
			if uses%2 == 0 {
				_, err = store.Get(ctx, key, "a")
			} else {
				what = fmt.Sprintf("use %d (Set)", uses)
				err = store.Set(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte(strconv.Itoa(uses))}}, sessionkit.DefaultMaxFields)
			}
			switch {
			case errors.Is(err, sessionkit.ErrNotFound):
				require.True(t, real, "%s: gone on miniredis", what)
				require.GreaterOrEqual(t, redisNow(t, client), deadline, "%s: the session ended before its deadline", what)
				ended = true
			case client.Exists(ctx, rk).Val() == 0: // expired between the use and the check
				require.NoError(t, err, what)
				require.GreaterOrEqual(t, redisNow(t, client), deadline, "%s: the key expired before its deadline", what)
			default:
				require.NoError(t, err, what)
				fastRequireNotPast(t, client, rk, deadline, now, what)
				uses++
				<-tick.C
			}
		}
		t.Logf("%d uses before the deadline, ended: %v", uses, ended)
		require.Greater(t, uses, 10)
		require.Equal(t, real, ended)
	})
}

// The fast path reads as gone what the scripts read as corrupt, under a
// key carrying the record's own policy: "A record with missing or
// malformed metadata, of the wrong type, or that cannot be decoded reads as
// ErrNotFound and is removed" (sessionkit.Store). When the fast path
// checked only __sk_d and __sk_i, a record whose __sk_c is missing or
// malformed was served as live (found as a bug by this test); now __sk_c must be
// the policy's creation too.
func TestFastCorruptRecordUnderAPolicyKeyReadsAsGone(t *testing.T) {
	onBothBackends(t, func(t *testing.T, client *redis.Client) {
		ctx := t.Context()
		store := redishash.New(client, nil)
		shapes := map[string]func(k string) error{
			"metadata removed": func(k string) error { return client.HDel(ctx, k, "__sk_d", "__sk_i", "__sk_c").Err() },
			"idle 1.5":         func(k string) error { return client.HSet(ctx, k, "__sk_i", "1.5").Err() },
			"a string":         func(k string) error { client.Del(ctx, k); return client.Set(ctx, k, "x", 0).Err() },
			"a list":           func(k string) error { client.Del(ctx, k); return client.RPush(ctx, k, "x").Err() },
			"creation missing": func(k string) error { return client.HDel(ctx, k, "__sk_c").Err() },
			"creation garbage": func(k string) error { return client.HSet(ctx, k, "__sk_c", "soon").Err() },
		}
		ops := map[string]func(k string) error{
			"Get": func(k string) error { _, err := store.Get(ctx, k, "a"); return err },
			"Set": func(k string) error {
				return store.Set(ctx, k, []sessionkit.Field{{Name: "z", Value: []byte("26")}}, sessionkit.DefaultMaxFields)
			},
		}
		for shape, damage := range shapes {
			for op, run := range ops {
				key := fastKey(shape+op, fastPolicyNow(t, client, fastExpiry))
				require.NoError(t, store.Create(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, fastExpiry))
				require.NoError(t, damage(recordKey(key)))
				require.ErrorIs(t, run(key), sessionkit.ErrNotFound, "%s on %q", op, shape)
				require.Zero(t, client.Exists(ctx, recordKey(key)).Val(), "%s on %q left the key", op, shape)
			}
		}
	})
}
