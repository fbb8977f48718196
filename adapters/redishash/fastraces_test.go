package redishash_test

// Races and failures of the fast path, found by a review of it: each test
// failed before its fix (fixScript answering from what the MULTI saw,
// HLEN before the write, the fix after a lost reply, bounded boxing, OOM
// from the queued commands). Interleavings are forced with go-redis hooks
// and a proxy that drops replies (no sleeps).

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

var rvExp = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

// rvHook calls afterPipeline after every pipeline (the fast path's
// commands), afterMulti after every MULTI, and afterScript after every
// successful EVALSHA of sha; each test sends one of what it waits for.
type rvHook struct {
	sha           string
	afterPipeline func()
	afterMulti    func()
	afterScript   func()
}

func (h *rvHook) DialHook(n redis.DialHook) redis.DialHook { return n }
func (h *rvHook) ProcessHook(n redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := n(ctx, cmd)
		if a := cmd.Args(); h.afterScript != nil && len(a) > 1 && a[1] == h.sha && err == nil {
			h.afterScript()
		}
		return err
	}
}
func (h *rvHook) ProcessPipelineHook(n redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := n(ctx, cmds)
		if h.afterPipeline != nil {
			h.afterPipeline()
		}
		if h.afterMulti != nil && len(cmds) > 0 && cmds[0].Name() == "multi" {
			h.afterMulti()
		}
		return err
	}
}

func rvClients(t *testing.T) (addr string, plain *redis.Client) {
	addr = testserver.Redis(t).Addr
	plain = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { plain.Close() })
	return addr, plain
}

func rvHooked(t *testing.T, addr string, h redis.Hook) *redishash.Store {
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.AddHook(h)
	t.Cleanup(func() { c.Close() })
	return redishash.New(c, nil)
}

// duringARefusedLogin runs write on a session holding fields, through a
// store whose MULTI lands on the marker that the first step of a login
// (Bind) left, and waits there until the cap has refused the login and
// its third step has put the record back. It returns the plain client,
// the session's key and write's error.
func duringARefusedLogin(t *testing.T, fields []sessionkit.Field, write func(s *redishash.Store, key string) error) (*redis.Client, string, error) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	k := policyKey("s:{x}k", rvExp)
	require.NoError(t, store.Create(ctx, k, fields, rvExp))
	b := sessionkit.Binding{Index: "s:{ana}u:idx", User: "ana", ID: "o", Expiry: rvExp, Max: 1, Refuse: true}
	require.NoError(t, store.Bind(ctx, "", policyKey("s:{ana}other", rvExp), b))

	multiDone, release := make(chan struct{}), make(chan struct{})
	writer := rvHooked(t, addr, &rvHook{afterMulti: func() { close(multiDone); <-release }})
	written := make(chan error, 1)
	out := testhook.RedisScript("bind-out").(*redis.Script)
	require.NoError(t, out.Load(ctx, plain).Err())
	binder := rvHooked(t, addr, &rvHook{sha: out.Hash(), afterScript: func() {
		go func() { written <- write(writer, k) }()
		<-multiDone // the MULTI ran on the marker; bindIn and bindBack run next
	}})
	b.ID = "a"
	require.ErrorIs(t, binder.Bind(ctx, k, policyKey("s:{ana}new", rvExp), b), sessionkit.ErrTooManySessions)
	close(release)
	return plain, k, <-written
}

// 1. A fast Set whose MULTI lands on the marker of a login that the cap
// then refuses (the record is put back before the fix-up runs) is not
// reported done: the fix-up used to see the live record and answer OK,
// while the write was gone.
func TestFastSetOnTheMarkerOfARefusedLoginIsNotReportedDone(t *testing.T) {
	plain, k, err := duringARefusedLogin(t, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, func(s *redishash.Store, k string) error {
		return s.Set(context.Background(), k, []sessionkit.Field{{Name: "x", Value: []byte("w")}}, 0)
	})
	h := plain.HGetAll(t.Context(), recordKey(k)).Val()
	t.Logf("Set: %v; record now %v", err, h)
	require.True(t, err != nil || h["x"] == "w", "Set reported success but its field is not in the session")
}

// 2. The same for Incr: it used to report the value HINCRBY made on the
// marker.
func TestFastIncrOnTheMarkerOfARefusedLoginIsNotReportedDone(t *testing.T) {
	var n int64
	plain, k, err := duringARefusedLogin(t, []sessionkit.Field{{Name: "n", Value: []byte("5")}}, func(s *redishash.Store, k string) (err error) {
		n, err = s.Incr(context.Background(), k, "n", 1, 0)
		return err
	})
	stored := plain.HGet(t.Context(), recordKey(k), "n").Val()
	t.Logf("Incr: %d, %v; stored %q", n, err, stored)
	require.True(t, err != nil || (n == 6 && stored == "6"), "Incr reported %d but the session holds %q", n, stored)
}

// 3. A Set over MaxFields (setFix must take it back) racing a Rename:
// setFix finds the marker and answers ErrRenewed; the write went with the
// record, which now holds more than MaxFields.
func TestFastOverLimitSetRacingRenameIsTakenBackAfterTheMove(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	k, k2 := policyKey("s:{r}old", rvExp), policyKey("s:{r}new", rvExp)
	require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, rvExp))
	setter := rvHooked(t, addr, &rvHook{afterMulti: func() { require.NoError(t, store.Rename(ctx, k, k2)) }})
	err := setter.Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 1)
	fields := fastUserFields(t, plain, recordKey(k2))
	t.Logf("Set: %v; renamed record holds %v", err, fields)
	require.LessOrEqual(t, len(fields), 1, "the record holds more than MaxFields (Set answered %v)", err)
}

// 4. An Incr through a key whose policy SetExpiry changed, racing a Rename:
// ErrRenewed ("changed nothing") though the increment landed.
func TestFastIncrThatLandedBeforeAMoveIsReportedDone(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	k, k2 := policyKey("s:{r}old", rvExp), policyKey("s:{r}new", rvExp)
	require.NoError(t, store.Create(ctx, k, nil, rvExp))
	require.NoError(t, store.SetExpiry(ctx, k, sessionkit.Expiry{Idle: 2 * time.Hour, Absolute: 3 * time.Hour}))
	incr := rvHooked(t, addr, &rvHook{afterMulti: func() { require.NoError(t, store.Rename(ctx, k, k2)) }})
	_, err := incr.Incr(ctx, k, "n", 1, 0)
	stored := plain.HGet(ctx, recordKey(k2), "n").Val()
	t.Logf("Incr: %v; renamed record n=%q", err, stored)
	if err != nil {
		require.Empty(t, stored, "Incr answered %v, yet the increment is in the session", err)
	}
}

// 5. setFix is not idempotent: its reply lost, go-redis (default
// MaxRetries) runs it again; the second run finds the record within the
// limit and answers OK. Set reports success; its field was taken back.
func TestFastFixRetriedAfterALostReplyAnswersTheSame(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	warm := policyKey("s:{w}warm", rvExp)
	require.NoError(t, store.Create(ctx, warm, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, rvExp))
	require.ErrorIs(t, store.Set(ctx, warm, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 1), sessionkit.ErrTooManyFields) // loads setFix
	k := policyKey("s:{w}k", rvExp)
	require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, rvExp))
	lossy := redis.NewClient(&redis.Options{Addr: testserver.DropProxy(t, addr, "\r\nexec\r\n", "evalsha")})
	t.Cleanup(func() { lossy.Close() })
	err := redishash.New(lossy, nil).Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 1)
	fields := fastUserFields(t, plain, recordKey(k))
	t.Logf("Set: %v; record holds %v", err, fields)
	require.True(t, err != nil || fields["b"] == "2", "Set reported success, but b is not in the session")
}

// 6. The MULTI ran but its reply was lost (a read timeout, a reset): no
// setFix runs, and a forged policy's hash stays for ~31,000 years. The
// docs name only a crash or a failed second round trip.
func TestFastLostMultiReplyLeavesNoHash(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	k := policyKey("s:{f}gone", rvExp)
	k = k[:strings.LastIndexByte(k, '}')+1+43] + "." + strconv.FormatInt(time.Now().UnixMilli(), 36) + ".9ugxnorjlr.9ugxnorjlr"
	lossy := redis.NewClient(&redis.Options{Addr: testserver.DropProxy(t, addr, "", "\r\nexec\r\n")})
	t.Cleanup(func() { lossy.Close() })
	err := redishash.New(lossy, nil).Set(ctx, k, []sessionkit.Field{{Name: "x", Value: []byte("planted")}}, 0)
	ttl := plain.PTTL(ctx, recordKey(k)).Val()
	t.Logf("Set: %v; left %v with PTTL %v", err, plain.HGetAll(ctx, recordKey(k)).Val(), ttl)
	require.Zero(t, plain.Exists(ctx, recordKey(k)).Val(), "a hash without metadata was left (PTTL %v)", ttl)
}

// rvNoNet short-circuits every command: no server needed.
type rvNoNet struct{}

func (rvNoNet) DialHook(n redis.DialHook) redis.DialHook { return n }
func (rvNoNet) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(context.Context, redis.Cmder) error { return nil }
}
func (rvNoNet) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(context.Context, []redis.Cmder) error { return nil }
}

// 7. boxIdle caches every idle timeout a key names, forever: the idle
// comes from the client's token, so forged tokens grow the Store's memory
// without bound.
func TestFastForgedIdleTimeoutsDoNotGrowTheStore(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	c.AddHook(rvNoNet{})
	t.Cleanup(func() { c.Close() })
	store := redishash.New(c, nil)
	ctx := context.Background()
	base := "s:{abcd}" + strings.Repeat("h", 43)
	created := strconv.FormatInt(time.Now().UnixMilli(), 36)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const n = 200_000
	before := heap()
	for range n { // control: one idle timeout
		_, _ = store.Get(ctx, fmt.Sprintf("%s.%s.%s.2s0", base, created, strconv.FormatInt(1000, 36)), "a")
	}
	control := int64(heap()) - int64(before)
	t.Logf("control, %d calls with one idle timeout: heap +%d KB", n, control/1024)
	before = heap()
	for i := range n {
		_, _ = store.Get(ctx, fmt.Sprintf("%s.%s.%s.2s0", base, created, strconv.FormatInt(int64(1000+i), 36)), "a")
	}
	grown := int64(heap()) - int64(before)
	runtime.KeepAlive(store)
	t.Logf("%d forged idle timeouts: heap +%d KB (%d B each)", n, grown/1024, grown/n)
	require.Less(t, grown, int64(4<<20), "the Store keeps what forged tokens name")
}

// 8. Under noeviction over maxmemory a fast Set/Incr is refused with
// Redis's OOM error, as the script path is (oom_test's requireOOM).
func TestFastPathOOMIsReportedAsOOM(t *testing.T) {
	srv := testserver.Redis(t, "--maxmemory", strconv.Itoa(4<<20), "--maxmemory-policy", "noeviction")
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { plain.Close() })
	ctx := t.Context()
	store := redishash.New(plain, nil)
	k := policyKey("s:{oom}k", rvExp)
	require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "n", Value: []byte("1")}}, rvExp))
	big := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		if err := plain.Set(ctx, fmt.Sprint("fill", i), big, 0).Err(); err != nil {
			require.Contains(t, err.Error(), "OOM")
			break
		}
	}
	err := store.Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 0)
	t.Logf("fast Set: %v", err)
	_, ierr := store.Incr(ctx, k, "m", 1, 0)
	t.Logf("fast Incr: %v", ierr)
	requireOOM(t, err, "fast Set")
	requireOOM(t, ierr, "fast Incr")
	v, err := store.Get(ctx, k, "n")
	require.NoError(t, err, "reads keep working")
	require.Equal(t, "1", string(v[0]))
}

// 9. A Set over MaxFields whose record is moved and bound by a login
// before the fix-up runs: the fix-up follows it and counts the binding as
// metadata, so the write is taken back there. Found from outside (a login
// racing writes at -max-fields 5 left 6 keys, all answered 200): the
// fix-up counted the bound record's fields with the unbound record's
// metadata count.
func TestFastOverLimitSetRacingALoginIsTakenBackWhereTheSessionWent(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	k, moved := policyKey("s:{x}lim", rvExp), policyKey("s:{ana}lim", rvExp)
	require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, rvExp))
	b := sessionkit.Binding{Index: "s:{ana}u:lim", User: "ana", ID: "lim", Expiry: rvExp}
	setter := rvHooked(t, addr, &rvHook{afterMulti: func() {
		require.NoError(t, store.Bind(ctx, k, moved, b)) // the login, between the MULTI and its fix-up
	}})
	err := setter.Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 1)
	require.ErrorIs(t, err, sessionkit.ErrTooManyFields)
	h := plain.HGetAll(ctx, recordKey(moved)).Val()
	require.NotContains(t, h, "b", "the refused field is in the session it moved to: %v", h)
	require.Equal(t, "1", h["a"])
}

// 10. The same while the login is still on its way: Bind's first step has
// read the record, with the write, and its second step has not written
// it yet when the fix-up follows the marker. The fix-up waits for it to
// land and takes the write back there (a login racing writes at
// -max-fields 5 left records with up to 19 fields before).
func TestFastOverLimitSetRacingALoginOnItsWayIsTakenBackWhereItLands(t *testing.T) {
	ctx := t.Context()
	addr, plain := rvClients(t)
	store := redishash.New(plain, nil)
	k, moved := policyKey("s:{x}way", rvExp), policyKey("s:{ana}way", rvExp)
	require.NoError(t, store.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, rvExp))
	b := sessionkit.Binding{Index: "s:{ana}u:way", User: "ana", ID: "way", Expiry: rvExp}

	out := testhook.RedisScript("bind-out").(*redis.Script)
	fix := testhook.RedisScript("fix").(*redis.Script)
	require.NoError(t, out.Load(ctx, plain).Err())
	require.NoError(t, fix.Load(ctx, plain).Err())
	outDone, resume := make(chan struct{}), make(chan struct{})
	binder := rvHooked(t, addr, &rvHook{sha: out.Hash(), afterScript: func() { close(outDone); <-resume }})
	bound := make(chan error, 1)
	var fixes atomic.Int32
	setter := rvHooked(t, addr, &rvHook{sha: fix.Hash(), afterScript: func() {
		if fixes.Add(1) == 2 { // the fix-up on the moved key has seen it missing
			close(resume)
		}
	}, afterMulti: func() {
		go func() { bound <- binder.Bind(context.Background(), k, moved, b) }()
		<-outDone // the login has read the record, with the write
	}})
	err := setter.Set(ctx, k, []sessionkit.Field{{Name: "b", Value: []byte("2")}}, 1)
	require.NoError(t, <-bound)
	require.ErrorIs(t, err, sessionkit.ErrTooManyFields)
	require.GreaterOrEqual(t, fixes.Load(), int32(3), "the fix-up waited for the login (old key, moved key missing, moved key)")
	h := plain.HGetAll(ctx, recordKey(moved)).Val()
	require.NotContains(t, h, "b", "the refused field is in the session the login made: %v", h)
	require.Equal(t, "1", h["a"])
}
