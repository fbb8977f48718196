package adaptertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Run runs the whole conformance suite against the stores that mk makes.
func Run(t *testing.T, mk Maker) {
	t.Helper()
	for _, c := range storeCases {
		t.Run(c.name, func(t *testing.T) { c.run(newEnv(t, mk)) })
	}
	for _, c := range managerCases {
		t.Run("Manager/"+c.name, func(t *testing.T) { c.run(newEnv(t, mk)) })
	}
	for _, c := range userCases {
		t.Run("Users/"+c.name, func(t *testing.T) { c.run(newEnv(t, mk)) })
	}
	for _, c := range adminCases {
		t.Run("Admin/"+c.name, func(t *testing.T) { c.run(newEnv(t, mk)) })
	}
}

type testCase struct {
	name string
	run  func(e *env)
}

// env is one subtest's view of a harness.
type env struct {
	*testing.T
	h   *Harness
	s   sessionkit.Store
	ctx context.Context
	n   int // counter for fresh keys
}

func newEnv(t *testing.T, mk Maker) *env {
	h := mk(t)
	require.NotNil(t, h, "Maker returned no harness")
	require.NotNil(t, h.Store, "Harness.Store is required")
	require.NotNil(t, h.TTL, "Harness.TTL is required")
	if h.Close != nil {
		t.Cleanup(h.Close)
	}
	return &env{T: t, h: h, s: h.Store, ctx: t.Context()}
}

// fakeClock reports whether the suite controls the store's clock.
func (e *env) fakeClock() bool { return e.h.Advance != nil }

// unit is the time step of expiry cases: a minute on a fake clock, a fifth
// of a second on the wall clock (so a case takes a few seconds, and a
// scheduling delay on a loaded machine stays well inside one idle timeout).
func (e *env) unit() time.Duration {
	if e.fakeClock() {
		return time.Minute
	}
	return 200 * time.Millisecond
}

// expiry is the default policy of the suite's sessions: long enough never
// to run out during a case that does not wait for it.
func (e *env) expiry() sessionkit.Expiry {
	return sessionkit.Expiry{Idle: 100 * e.unit(), Absolute: 300 * e.unit()}
}

// key returns a fresh key. Every key of one subtest carries the same Redis
// Cluster hash tag, as every generation of one session does (Rename may
// rely on it).
func (e *env) key() string {
	e.n++
	return fmt.Sprintf("adaptertest:{%s}:%d", e.Name(), e.n)
}

// create makes a record with fields {"a": "1", "b": "2"} under the default
// policy and returns its key.
func (e *env) create() string {
	return e.createWith(e.expiry(), fieldList("a", "1", "b", "2"))
}

func (e *env) createWith(exp sessionkit.Expiry, fields []sessionkit.Field) string {
	e.Helper()
	k := e.key()
	require.NoError(e, e.s.Create(e.ctx, k, fields, exp))
	return k
}

// ttl reads the backend's expiry of key without refreshing it.
func (e *env) ttl(key string) (time.Duration, bool) {
	e.Helper()
	ttl, ok, err := e.h.TTL(e.ctx, key)
	require.NoError(e, err, "Harness.TTL")
	return ttl, ok
}

// requireExpiryWithin fails unless key has a record whose expiry is set
// and at most max away.
func (e *env) requireExpiryWithin(key string, max time.Duration) {
	e.Helper()
	ttl, ok := e.ttl(key)
	require.True(e, ok, "the record must exist")
	require.GreaterOrEqual(e, ttl, time.Duration(0), "the record must carry an expiry")
	require.LessOrEqual(e, ttl, max, "the expiry must not be further away than the policy allows")
}

func (e *env) requireNoRecord(key string) {
	e.Helper()
	_, ok := e.ttl(key)
	require.False(e, ok, "no record may exist under %q", key)
}

func (e *env) requireNotFound(err error, what string) {
	e.Helper()
	require.ErrorIs(e, err, sessionkit.ErrNotFound, what)
}

// waitGone lets the record under key expire: on a fake clock it advances by
// d; on the wall clock it polls the backend (without touching the record)
// until the record is gone, failing if that takes much longer than d.
func (e *env) waitGone(key string, d time.Duration) {
	e.Helper()
	if e.fakeClock() {
		e.h.Advance(d)
		return
	}
	start := time.Now()
	deadline := start.Add(d + 2*time.Second)
	for {
		if _, ok := e.ttl(key); !ok {
			return
		}
		if time.Now().After(deadline) {
			e.Fatalf("record %q still exists %v after it should have expired", key, time.Since(start)-d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fieldList returns the fields name, value, … for a write.
func fieldList(kv ...string) []sessionkit.Field {
	fields := make([]sessionkit.Field, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		fields = append(fields, sessionkit.Field{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return fields
}

// fieldsOf returns the fields name, value, … as GetAll returns them.
func fieldsOf(kv ...string) map[string][]byte {
	m := make(map[string][]byte, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func (e *env) requireFields(key string, want map[string][]byte) {
	e.Helper()
	got, err := e.s.GetAll(e.ctx, key)
	require.NoError(e, err)
	require.Equal(e, want, got)
}

var storeCases = []testCase{
	{"CorruptRecordReadsAsGoneAndIsRemoved", func(e *env) {
		if e.h.Corrupt == nil {
			e.Skip("the harness has no Corrupt")
		}
		kinds := []Corruption{MetadataRemoved, MetadataMalformed, WrongType, Garbage}
		ops := operations(e.expiry())
		ops["Rename"] = func(ctx context.Context, s sessionkit.Store, k string) error { return s.Rename(ctx, k, k+":renamed") }
		for _, kind := range kinds {
			e.Run(kind.String(), func(t *testing.T) {
				e := &env{T: t, h: e.h, s: e.s, ctx: e.ctx}
				for name, op := range ops {
					k := e.create()
					err := e.h.Corrupt(e.ctx, k, kind)
					if errors.Is(err, errors.ErrUnsupported) {
						e.Skipf("%v cannot happen on this backend", kind)
					}
					require.NoError(e, err, "Harness.Corrupt")
					err = op(e.ctx, e.s, k)
					e.requireNotFound(err, name+" on a corrupt record reads it as gone, never as an outage")
					e.requireNoRecord(k)
					e.requireNoRecord(k + ":renamed")
					require.NoError(e, e.s.Create(e.ctx, k, fieldList("a", "new"), e.expiry()), "the key is usable again")
					e.requireFields(k, fieldsOf("a", "new"))
				}
				k := e.create()
				require.NoError(e, e.h.Corrupt(e.ctx, k, kind))
				require.NoError(e, e.s.Destroy(e.ctx, k), "Destroy removes a corrupt record")
				e.requireNoRecord(k)
			})
		}
	}},
	{"CreateThenGetReturnsTheFields", func(e *env) {
		k := e.create()
		vals, err := e.s.Get(e.ctx, k, "a", "missing", "b")
		require.NoError(e, err)
		require.Equal(e, [][]byte{[]byte("1"), nil, []byte("2")}, vals, "values in the order asked, nil for a missing field")
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
	}},
	{"CreateWithNoFieldsMakesAnEmptySession", func(e *env) {
		k := e.createWith(e.expiry(), nil)
		n, err := e.s.Len(e.ctx, k)
		require.NoError(e, err)
		require.Zero(e, n)
		e.requireFields(k, map[string][]byte{})
	}},
	{"CreateFailsIfTheKeyExists", func(e *env) {
		k := e.create()
		err := e.s.Create(e.ctx, k, fieldList("a", "other"), e.expiry())
		require.ErrorIs(e, err, sessionkit.ErrExists)
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
	}},
	{"EmptyValueIsNotAMissingField", func(e *env) {
		k := e.create()
		require.NoError(e, e.s.Set(e.ctx, k, []sessionkit.Field{{Name: "empty", Value: []byte{}}}, 0))
		vals, err := e.s.Get(e.ctx, k, "empty")
		require.NoError(e, err)
		require.NotNil(e, vals[0])
		require.Empty(e, vals[0])
		has, err := e.s.Has(e.ctx, k, "empty")
		require.NoError(e, err)
		require.True(e, has)
	}},
	{"BinaryValuesRoundTrip", func(e *env) {
		k := e.create()
		bin := []byte{0, 1, 2, 0xff, '\r', '\n', ' ', 0}
		require.NoError(e, e.s.Set(e.ctx, k, []sessionkit.Field{{Name: "bin", Value: bin}, {Name: "sp ace\n", Value: []byte("x")}}, 0))
		vals, err := e.s.Get(e.ctx, k, "bin", "sp ace\n")
		require.NoError(e, err)
		require.Equal(e, [][]byte{bin, []byte("x")}, vals)
	}},
	{"SetWritesOnlyItsFields", func(e *env) {
		k := e.create()
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("b", "two", "c", "3"), 0))
		e.requireFields(k, fieldsOf("a", "1", "b", "two", "c", "3"))
	}},
	{"DeleteRemovesOnlyTheNamedFields", func(e *env) {
		k := e.create()
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("c", "3"), 0))
		require.NoError(e, e.s.Delete(e.ctx, k, "a", "c", "never-set"))
		e.requireFields(k, fieldsOf("b", "2"))
	}},
	{"LenKeysAndHasDescribeTheFields", func(e *env) {
		k := e.create()
		n, err := e.s.Len(e.ctx, k)
		require.NoError(e, err)
		require.Equal(e, 2, n)
		keys, err := e.s.Keys(e.ctx, k)
		require.NoError(e, err)
		sort.Strings(keys)
		require.Equal(e, []string{"a", "b"}, keys)
		has, err := e.s.Has(e.ctx, k, "a")
		require.NoError(e, err)
		require.True(e, has)
		has, err = e.s.Has(e.ctx, k, "zz")
		require.NoError(e, err)
		require.False(e, has)
	}},
	{"ClearRemovesTheDataButKeepsTheSession", func(e *env) {
		k := e.create()
		require.NoError(e, e.s.Clear(e.ctx, k))
		e.requireFields(k, map[string][]byte{})
		e.requireExpiryWithin(k, e.expiry().Idle)
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("c", "3"), 0), "the cleared session still takes writes")
		e.requireFields(k, fieldsOf("c", "3"))
	}},
	{"EveryOperationOnAMissingSessionReturnsErrNotFound", func(e *env) {
		k := e.key()
		for name, op := range operations(e.expiry()) {
			e.requireNotFound(op(e.ctx, e.s, k), name)
		}
		e.requireNoRecord(k)
	}},
	{"DestroyOfAMissingSessionIsNotAnError", func(e *env) {
		require.NoError(e, e.s.Destroy(e.ctx, e.key()))
	}},
	{"WriteAfterDestroyCreatesNothing", func(e *env) {
		k := e.create()
		require.NoError(e, e.s.Destroy(e.ctx, k))
		for name, op := range operations(e.expiry()) {
			e.requireNotFound(op(e.ctx, e.s, k), name)
			e.requireNoRecord(k)
		}
	}},
	{"WriteAfterExpiryCreatesNothing", func(e *env) {
		exp := sessionkit.Expiry{Idle: 3 * e.unit(), Absolute: 300 * e.unit()}
		k := e.createWith(exp, fieldList("a", "1"))
		e.waitGone(k, exp.Idle)
		for name, op := range operations(e.expiry()) {
			e.requireNotFound(op(e.ctx, e.s, k), name)
			e.requireNoRecord(k)
		}
	}},
	{"SessionLivesJustBeforeTheIdleTimeoutAndNotAfter", func(e *env) {
		exp := sessionkit.Expiry{Idle: 5 * e.unit(), Absolute: 300 * e.unit()}
		k := e.createWith(exp, fieldList("a", "1"))
		if e.fakeClock() {
			e.h.Advance(exp.Idle - time.Millisecond)
			_, err := e.s.Get(e.ctx, k, "a")
			require.NoError(e, err, "1ms before the idle timeout the session lives")
			e.h.Advance(exp.Idle)
			_, err = e.s.Get(e.ctx, k, "a")
			e.requireNotFound(err, "at the idle timeout the session is gone")
			return
		}
		// Wall clock: the expiry set by a use is the idle timeout, and the
		// record goes no sooner than that after the use.
		before := time.Now()
		_, err := e.s.Get(e.ctx, k, "a")
		require.NoError(e, err)
		ttl, ok := e.ttl(k)
		require.True(e, ok)
		require.LessOrEqual(e, ttl, exp.Idle)
		require.Greater(e, ttl, exp.Idle-time.Since(before)-10*time.Millisecond, "a use sets the expiry to the idle timeout")
		e.waitGone(k, exp.Idle)
		require.GreaterOrEqual(e, time.Since(before), exp.Idle-5*time.Millisecond, "the record went before the idle timeout")
		_, err = e.s.Get(e.ctx, k, "a")
		e.requireNotFound(err, "after the idle timeout the session is gone")
	}},
	{"UseSlidesTheIdleTimeout", func(e *env) {
		exp := sessionkit.Expiry{Idle: 5 * e.unit(), Absolute: 300 * e.unit()}
		k := e.createWith(exp, fieldList("a", "1"))
		// Ten uses, each two units apart: twenty units in all, four idle
		// timeouts, and the session lives through them.
		for i := 0; i < 10; i++ {
			if e.fakeClock() {
				e.h.Advance(2 * e.unit())
			} else {
				time.Sleep(2 * e.unit())
			}
			_, err := e.s.Get(e.ctx, k, "a")
			require.NoError(e, err, "use %d", i)
			e.requireExpiryWithin(k, exp.Idle)
		}
	}},
	{"UseNeverExtendsTheAbsoluteLifetime", func(e *env) {
		exp := sessionkit.Expiry{Idle: 10 * e.unit(), Absolute: 20 * e.unit()}
		start := time.Now()
		k := e.createWith(exp, fieldList("a", "1"))
		if e.fakeClock() {
			for _, step := range []time.Duration{8, 8, 3} { // 19 units: one before the lifetime
				e.h.Advance(step * e.unit())
				_, err := e.s.Touch(e.ctx, k)
				require.NoError(e, err)
			}
			e.requireExpiryWithin(k, e.unit())
			e.h.Advance(e.unit())
			_, err := e.s.Touch(e.ctx, k)
			e.requireNotFound(err, "at the absolute lifetime the session is gone, though used a unit ago")
			e.requireNoRecord(k)
			return
		}
		// Wall clock: touch every half unit until the session goes. The
		// expiry is checked while the deadline is not too close for the
		// record to vanish between the touch and the check.
		var err error
		for time.Since(start) < exp.Absolute+2*time.Second {
			if _, err = e.s.Touch(e.ctx, k); err != nil {
				break
			}
			if left := exp.Absolute - time.Since(start); left > 100*time.Millisecond {
				e.requireExpiryWithin(k, left+50*time.Millisecond)
			}
			time.Sleep(e.unit() / 2)
		}
		e.requireNotFound(err, "a session used all along still ends at its absolute lifetime")
		require.GreaterOrEqual(e, time.Since(start), exp.Absolute-5*time.Millisecond, "the session ended before its lifetime")
		e.requireNoRecord(k)
	}},
	{"EveryRecordWrittenHasAnExpiry", func(e *env) {
		exp := e.expiry()
		k := e.create()
		e.requireExpiryWithin(k, exp.Idle)
		for name, op := range operations(exp) {
			require.NoError(e, op(e.ctx, e.s, k), name)
			e.requireExpiryWithin(k, exp.Idle)
		}
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		e.requireExpiryWithin(moved, exp.Idle)
	}},
	{"TouchReturnsTheTimeLeft", func(e *env) {
		exp := sessionkit.Expiry{Idle: 10 * e.unit(), Absolute: 300 * e.unit()}
		k := e.createWith(exp, nil)
		left, err := e.s.Touch(e.ctx, k)
		require.NoError(e, err)
		require.LessOrEqual(e, left, exp.Idle)
		require.Greater(e, left, exp.Idle-e.unit())
	}},
	{"SetExpiryReplacesThePolicyButNotTheCreationTime", func(e *env) {
		k := e.createWith(sessionkit.Expiry{Idle: 2 * e.unit(), Absolute: 5 * e.unit()}, fieldList("a", "1"))
		long := sessionkit.Expiry{Idle: 50 * e.unit(), Absolute: 100 * e.unit()}
		require.NoError(e, e.s.SetExpiry(e.ctx, k, long))
		ttl, ok := e.ttl(k)
		require.True(e, ok)
		require.Greater(e, ttl, 40*e.unit(), "the new idle timeout applies at once")
		require.LessOrEqual(e, ttl, long.Idle)

		// A policy whose lifetime, counted from creation, has already
		// passed ends the session.
		if e.fakeClock() {
			e.h.Advance(3 * e.unit())
		} else {
			time.Sleep(3 * e.unit())
		}
		err := e.s.SetExpiry(e.ctx, k, sessionkit.Expiry{Idle: 50 * e.unit(), Absolute: 2 * e.unit()})
		e.requireNotFound(err, "the lifetime counts from creation")
		e.requireNoRecord(k)
	}},
	{"ConcurrentDisjointWritesAllSurvive", func(e *env) {
		k := e.createWith(e.expiry(), nil)
		const writers = 50
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				errs[i] = e.s.Set(e.ctx, k, fieldList(fmt.Sprintf("k%d", i), fmt.Sprint(i)), 0)
			})
		}
		wg.Wait()
		want := map[string][]byte{}
		for i := range writers {
			require.NoError(e, errs[i], "writer %d", i)
			want[fmt.Sprintf("k%d", i)] = []byte(fmt.Sprint(i))
		}
		e.requireFields(k, want)
	}},
	{"DestroyRacingWritersLeavesNoSessionAndNoRecordWithoutExpiry", func(e *env) {
		for round := 0; round < 5; round++ {
			k := e.create()
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 20 {
				wg.Go(func() {
					<-start
					for j := 0; j < 5; j++ {
						err := e.s.Set(e.ctx, k, fieldList(fmt.Sprintf("w%d", i), "x"), 0)
						if err != nil && !errors.Is(err, sessionkit.ErrNotFound) {
							assert.NoError(e, err, "a write racing a destroy either lands or finds the session gone")
						}
					}
				})
			}
			wg.Go(func() {
				<-start
				assert.NoError(e, e.s.Destroy(e.ctx, k))
			})
			close(start)
			wg.Wait()
			e.requireNoRecord(k)
			_, err := e.s.Get(e.ctx, k, "w0")
			e.requireNotFound(err, "after the race the session is gone")
		}
	}},
	{"BytesPassedInAreNotAliased", func(e *env) {
		val := []byte("original")
		k := e.createWith(e.expiry(), []sessionkit.Field{{Name: "a", Value: val}})
		copy(val, "CHANGED!")
		set := []byte("second")
		require.NoError(e, e.s.Set(e.ctx, k, []sessionkit.Field{{Name: "b", Value: set}}, 0))
		copy(set, "SECOND")
		e.requireFields(k, fieldsOf("a", "original", "b", "second"))
	}},
	{"BytesReturnedAreNotAliased", func(e *env) {
		k := e.create()
		vals, err := e.s.Get(e.ctx, k, "a")
		require.NoError(e, err)
		vals[0][0] = 'X'
		all, err := e.s.GetAll(e.ctx, k)
		require.NoError(e, err)
		all["b"][0] = 'Y'
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
	}},
	{"SetOverMaxFieldsFailsAndChangesNothing", func(e *env) {
		k := e.create() // a, b
		err := e.s.Set(e.ctx, k, fieldList("a", "new", "c", "3", "d", "4"), 3)
		require.ErrorIs(e, err, sessionkit.ErrTooManyFields)
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
		// Overwriting existing fields does not count as growth.
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("a", "new", "b", "two", "c", "3"), 3))
		e.requireFields(k, fieldsOf("a", "new", "b", "two", "c", "3"))
		// One new field over the limit is refused as well; one existing
		// field at the limit is not.
		require.ErrorIs(e, e.s.Set(e.ctx, k, fieldList("d", "4"), 3), sessionkit.ErrTooManyFields)
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("c", "three"), 3))
		e.requireFields(k, fieldsOf("a", "new", "b", "two", "c", "three"))
	}},
	{"RenameMovesTheSessionAndTheOldKeyIsDead", func(e *env) {
		k := e.create()
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		e.requireFields(moved, fieldsOf("a", "1", "b", "2"))
		_, err := e.s.Get(e.ctx, k, "a")
		require.ErrorIs(e, err, sessionkit.ErrRenewed, "the old key is dead")
		err = e.s.Set(e.ctx, k, fieldList("a", "x"), 0)
		require.ErrorIs(e, err, sessionkit.ErrRenewed, "the old key takes no writes")
		e.requireFields(moved, fieldsOf("a", "1", "b", "2"))
	}},
	{"RenameLeavesAMarkerThatRefusesEveryOperation", func(e *env) {
		k := e.create()
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		for name, op := range operations(e.expiry()) {
			require.ErrorIs(e, op(e.ctx, e.s, k), sessionkit.ErrRenewed, name)
		}
		other := e.key()
		require.ErrorIs(e, e.s.Rename(e.ctx, k, other), sessionkit.ErrRenewed, "a second rename of the old key")
		e.requireNoRecord(other)
		require.ErrorIs(e, e.s.Create(e.ctx, k, fieldList("a", "x"), e.expiry()), sessionkit.ErrExists, "Create over a marker")
		require.ErrorIs(e, e.s.Rename(e.ctx, e.create(), k), sessionkit.ErrExists, "Rename onto a marker")
		e.requireExpiryWithin(k, sessionkit.RenewMarkerTTL)
		e.requireFields(moved, fieldsOf("a", "1", "b", "2"))
	}},
	{"RenameMarkerLivesNoLongerThanTheSession", func(e *env) {
		// An idle timeout well under RenewMarkerTTL, so that a marker
		// kept for RenewMarkerTTL regardless would be caught.
		exp := sessionkit.Expiry{Idle: min(3*e.unit(), sessionkit.RenewMarkerTTL/3), Absolute: 300 * e.unit()}
		k := e.createWith(exp, fieldList("a", "1"))
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		e.requireExpiryWithin(k, exp.Idle)
		e.waitGone(k, exp.Idle)
		_, err := e.s.Get(e.ctx, k, "a")
		e.requireNotFound(err, "once the marker is gone the old key is simply missing")
		e.requireNoRecord(k)
	}},
	{"RenameMarkerEndsAfterRenewMarkerTTL", func(e *env) {
		if !e.fakeClock() {
			e.Skip("waits RenewMarkerTTL: fake clock only (the expiry bound itself is checked by RenameLeavesAMarkerThatRefusesEveryOperation)")
		}
		k := e.create() // idle 100 minutes
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		e.h.Advance(sessionkit.RenewMarkerTTL)
		_, err := e.s.Get(e.ctx, k, "a")
		e.requireNotFound(err, "the marker is gone after RenewMarkerTTL")
		e.requireNoRecord(k)
		e.requireFields(moved, fieldsOf("a", "1", "b", "2"))
	}},
	{"ConcurrentRenamesLeaveExactlyOneLiveCopy", func(e *env) {
		const renamers = 4
		for round := range 20 {
			k := e.create()
			targets := make([]string, renamers)
			errs := make([]error, renamers)
			for i := range targets {
				targets[i] = e.key()
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range renamers {
				wg.Go(func() {
					<-start
					errs[i] = e.s.Rename(e.ctx, k, targets[i])
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for i, err := range errs {
				if err == nil {
					won++
					e.requireFields(targets[i], fieldsOf("a", "1", "b", "2"))
					continue
				}
				require.ErrorIs(e, err, sessionkit.ErrRenewed, "round %d: a losing rename says the session was renewed", round)
				e.requireNoRecord(targets[i])
			}
			require.Equal(e, 1, won, "round %d: exactly one of %d concurrent renames wins", round, renamers)
		}
	}},
	{"WritesAndDeletesOverlappingARenameAreNeverLost", func(e *env) {
		const writers = 10
		for round := range 10 {
			k := e.create()
			for i := range writers {
				require.NoError(e, e.s.Set(e.ctx, k, fieldList(fmt.Sprintf("d%d", i), "x"), 0))
			}
			moved := e.key()
			setErrs := make([]error, writers)
			delErrs := make([]error, writers)
			var renameErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range writers {
				wg.Go(func() {
					<-start
					setErrs[i] = e.s.Set(e.ctx, k, fieldList(fmt.Sprintf("w%d", i), "x"), 0)
				})
				wg.Go(func() {
					<-start
					delErrs[i] = e.s.Delete(e.ctx, k, fmt.Sprintf("d%d", i))
				})
			}
			wg.Go(func() {
				<-start
				renameErr = e.s.Rename(e.ctx, k, moved)
			})
			close(start)
			wg.Wait()
			require.NoError(e, renameErr)
			got, err := e.s.GetAll(e.ctx, moved)
			require.NoError(e, err)
			for i := range writers {
				w, d := fmt.Sprintf("w%d", i), fmt.Sprintf("d%d", i)
				if setErrs[i] == nil {
					require.Contains(e, got, w, "round %d: an acknowledged write is carried over", round)
				} else {
					require.ErrorIs(e, setErrs[i], sessionkit.ErrRenewed, "round %d", round)
					require.NotContains(e, got, w, "round %d: a refused write wrote nothing", round)
				}
				if delErrs[i] == nil {
					require.NotContains(e, got, d, "round %d: an acknowledged delete is carried over", round)
				} else {
					require.ErrorIs(e, delErrs[i], sessionkit.ErrRenewed, "round %d", round)
					require.Contains(e, got, d, "round %d: a refused delete deleted nothing", round)
				}
			}
		}
	}},
	{"RenameRacingDestroyLeavesNothingLive", func(e *env) {
		for round := range 20 {
			k := e.create()
			moved := e.key()
			var renameErr, destroyErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Go(func() { <-start; renameErr = e.s.Rename(e.ctx, k, moved) })
			wg.Go(func() { <-start; destroyErr = e.s.Destroy(e.ctx, k) })
			close(start)
			wg.Wait()
			require.NoError(e, destroyErr)
			if renameErr != nil {
				e.requireNotFound(renameErr, "a rename that comes second finds the session destroyed")
			}
			_, err := e.s.Get(e.ctx, moved, "a")
			e.requireNotFound(err, fmt.Sprintf("round %d: whichever ran first, the session is gone under its new key", round))
			e.requireNoRecord(moved)
			e.requireNoRecord(k)
		}
	}},
	{"DestroyThroughARenamedKeyEndsTheSession", func(e *env) {
		k := e.create()
		second, third := e.key(), e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, second))
		require.NoError(e, e.s.Rename(e.ctx, second, third))
		require.NoError(e, e.s.Destroy(e.ctx, k), "logout through the first token")
		for _, key := range []string{k, second, third} {
			_, err := e.s.Get(e.ctx, key, "a")
			e.requireNotFound(err, key)
			e.requireNoRecord(key)
		}
	}},
	{"RenameRefusesAnExistingTargetAndAMissingSource", func(e *env) {
		k, other := e.create(), e.create()
		require.ErrorIs(e, e.s.Rename(e.ctx, k, other), sessionkit.ErrExists)
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
		missing, target := e.key(), e.key()
		e.requireNotFound(e.s.Rename(e.ctx, missing, target), "rename of a missing session")
		e.requireNoRecord(target)
	}},
	{"RenameKeepsTheAbsoluteLifetime", func(e *env) {
		exp := sessionkit.Expiry{Idle: 20 * e.unit(), Absolute: 10 * e.unit()}
		k := e.createWith(exp, fieldList("a", "1"))
		moved := e.key()
		require.NoError(e, e.s.Rename(e.ctx, k, moved))
		e.requireExpiryWithin(moved, exp.Absolute)
		e.waitGone(moved, exp.Absolute)
		_, err := e.s.Get(e.ctx, moved, "a")
		e.requireNotFound(err, "the renamed session ends when the original would have")
	}},
	{"IncrCountsFromZeroAndRefusesWhatIsNotAnInteger", func(e *env) {
		k := e.create() // a=1, b=2
		n, err := e.s.Incr(e.ctx, k, "hits", 5, 0)
		require.NoError(e, err)
		require.Equal(e, int64(5), n, "a missing field counts as 0")
		n, err = e.s.Incr(e.ctx, k, "hits", -7, 0)
		require.NoError(e, err)
		require.Equal(e, int64(-2), n)
		n, err = e.s.Incr(e.ctx, k, "a", 41, 0)
		require.NoError(e, err)
		require.Equal(e, int64(42), n, "an existing integer field")
		require.NoError(e, e.s.Set(e.ctx, k, fieldList("s", `"x"`, "big", "9223372036854775807"), 0))
		_, err = e.s.Incr(e.ctx, k, "s", 1, 0)
		require.ErrorIs(e, err, sessionkit.ErrDecode, "a field that is not an integer")
		_, err = e.s.Incr(e.ctx, k, "big", 1, 0)
		require.ErrorIs(e, err, sessionkit.ErrDecode, "a result past int64")
		_, err = e.s.Incr(e.ctx, k, "new", 1, 5)
		require.ErrorIs(e, err, sessionkit.ErrTooManyFields, "a new field counts against the limit (a, b, hits, s, big: 5)")
		n, err = e.s.Incr(e.ctx, k, "hits", 1, 5)
		require.NoError(e, err, "an existing field at the limit")
		require.Equal(e, int64(-1), n)
		e.requireFields(k, fieldsOf("a", "42", "b", "2", "hits", "-1", "s", `"x"`, "big", "9223372036854775807"))
		e.requireExpiryWithin(k, e.expiry().Idle)
	}},
	{"ConcurrentNewFieldsNeverPassTheLimit", func(e *env) {
		const writers, limit = 30, 10
		for name, write := range map[string]func(k, field string) error{
			"Set": func(k, field string) error { return e.s.Set(e.ctx, k, fieldList(field, "1"), limit) },
			"Incr": func(k, field string) error {
				_, err := e.s.Incr(e.ctx, k, field, 1, limit)
				return err
			},
		} {
			k := e.createWith(e.expiry(), nil)
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() { errs[i] = write(k, fmt.Sprintf("f%d", i)) })
			}
			wg.Wait()
			written := 0
			for _, err := range errs {
				if err == nil {
					written++
					continue
				}
				require.ErrorIs(e, err, sessionkit.ErrTooManyFields, name)
			}
			require.Equal(e, limit, written, "%s: exactly as many new fields as the limit are written", name)
			n, err := e.s.Len(e.ctx, k)
			require.NoError(e, err)
			require.Equal(e, limit, n, name)
			all, err := e.s.GetAll(e.ctx, k)
			require.NoError(e, err)
			require.Len(e, all, limit, "%s: the count agrees with the fields", name)
		}
	}},
	{"ConcurrentIncrsAreNeverLost", func(e *env) {
		k := e.create()
		const n = 50
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = e.s.Incr(e.ctx, k, "hits", 1, 0) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(e, err)
		}
		vals, err := e.s.Get(e.ctx, k, "hits")
		require.NoError(e, err)
		require.Equal(e, []byte("50"), vals[0], "50 concurrent Incrs of 1")
	}},
	{"PopRacingPopGivesTheValueToExactlyOne", func(e *env) {
		for round := range 10 {
			k := e.create()
			require.NoError(e, e.s.Set(e.ctx, k, fieldList("flash", "saved"), 0))
			const poppers = 8
			got := make([][]byte, poppers)
			errs := make([]error, poppers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range poppers {
				wg.Go(func() { <-start; got[i], errs[i] = e.s.Pop(e.ctx, k, "flash") })
			}
			close(start)
			wg.Wait()
			winners := 0
			for i := range poppers {
				require.NoError(e, errs[i])
				if got[i] != nil {
					winners++
					require.Equal(e, []byte("saved"), got[i])
				}
			}
			require.Equal(e, 1, winners, "round %d: exactly one Pop gets the value", round)
			e.requireFields(k, fieldsOf("a", "1", "b", "2"))
		}
		k := e.create()
		v, err := e.s.Pop(e.ctx, k, "never")
		require.NoError(e, err)
		require.Nil(e, v, "a missing field pops nil")
	}},
	{"CallsWithTenThousandNamesWork", func(e *env) {
		const n = 10000
		k := e.create()
		fields := make([]sessionkit.Field, n)
		names := make([]string, n)
		for i := range fields {
			names[i] = fmt.Sprintf("f%05d", i)
			fields[i] = sessionkit.Field{Name: names[i], Value: []byte(fmt.Sprint(i))}
		}
		require.NoError(e, e.s.Set(e.ctx, k, fields, 0))
		vals, err := e.s.Get(e.ctx, k, names...)
		require.NoError(e, err)
		require.Len(e, vals, n)
		for i, v := range vals {
			require.Equal(e, fields[i].Value, v, names[i])
		}
		count, err := e.s.Len(e.ctx, k)
		require.NoError(e, err)
		require.Equal(e, n+2, count)
		require.NoError(e, e.s.Delete(e.ctx, k, names...))
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
	}},
	{"CancelledContextReturnsTheContextError", func(e *env) {
		k := e.create()
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		for name, op := range operations(e.expiry()) {
			err := op(ctx, e.s, k)
			require.ErrorIs(e, err, context.Canceled, name)
			require.NotErrorIs(e, err, sessionkit.ErrNotFound, name)
		}
		require.ErrorIs(e, e.s.Create(ctx, e.key(), nil, e.expiry()), context.Canceled, "Create")
		require.ErrorIs(e, e.s.Destroy(ctx, k), context.Canceled, "Destroy")
		require.ErrorIs(e, e.s.Rename(ctx, k, e.key()), context.Canceled, "Rename")
		e.requireFields(k, fieldsOf("a", "1", "b", "2"))
	}},
	{"CounterCountsOnlyLiveSessions", func(e *env) {
		counter, ok := e.s.(sessionkit.Counter)
		if !ok {
			e.Skip("the store does not implement sessionkit.Counter")
		}
		short := sessionkit.Expiry{Idle: 3 * e.unit(), Absolute: 300 * e.unit()}
		gone := e.createWith(short, nil)
		e.create()
		e.create()
		n, err := counter.Count(e.ctx, "")
		require.NoError(e, err)
		require.Equal(e, 3, n)
		e.waitGone(gone, short.Idle)
		n, err = counter.Count(e.ctx, "")
		require.NoError(e, err)
		require.Equal(e, 2, n, "an expired session is not counted, swept or not")
	}},
	{"HandEditedFieldIsReadBack", func(e *env) {
		if e.h.SetRaw == nil {
			e.Skip("the harness has no SetRaw")
		}
		k := e.create()
		require.NoError(e, e.h.SetRaw(e.ctx, k, "a", []byte("edited")))
		vals, err := e.s.Get(e.ctx, k, "a")
		require.NoError(e, err)
		require.Equal(e, []byte("edited"), vals[0])
	}},
}

// operations are the store calls that act on an existing record, each with
// arguments that succeed on a live one.
func operations(exp sessionkit.Expiry) map[string]func(context.Context, sessionkit.Store, string) error {
	return map[string]func(context.Context, sessionkit.Store, string) error{
		"Get": func(ctx context.Context, s sessionkit.Store, k string) error {
			_, err := s.Get(ctx, k, "a")
			return err
		},
		"GetAll": func(ctx context.Context, s sessionkit.Store, k string) error { _, err := s.GetAll(ctx, k); return err },
		"Keys":   func(ctx context.Context, s sessionkit.Store, k string) error { _, err := s.Keys(ctx, k); return err },
		"Has": func(ctx context.Context, s sessionkit.Store, k string) error {
			_, err := s.Has(ctx, k, "a")
			return err
		},
		"Len": func(ctx context.Context, s sessionkit.Store, k string) error { _, err := s.Len(ctx, k); return err },
		"Set": func(ctx context.Context, s sessionkit.Store, k string) error {
			return s.Set(ctx, k, fieldList("z", "26"), 0)
		},
		"Delete": func(ctx context.Context, s sessionkit.Store, k string) error { return s.Delete(ctx, k, "z") },
		"Incr": func(ctx context.Context, s sessionkit.Store, k string) error {
			_, err := s.Incr(ctx, k, "n", 1, 0)
			return err
		},
		"Pop": func(ctx context.Context, s sessionkit.Store, k string) error {
			_, err := s.Pop(ctx, k, "z")
			return err
		},
		"Clear": func(ctx context.Context, s sessionkit.Store, k string) error { return s.Clear(ctx, k) },
		"Touch": func(ctx context.Context, s sessionkit.Store, k string) error { _, err := s.Touch(ctx, k); return err },
		"SetExpiry": func(ctx context.Context, s sessionkit.Store, k string) error {
			return s.SetExpiry(ctx, k, exp)
		},
	}
}

// jsonNumber is how the default codec decodes a number into an any.
func jsonNumber(n int) any { return json.Number(fmt.Sprint(n)) }
