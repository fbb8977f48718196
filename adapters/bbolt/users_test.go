package bbolt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/sessionkit"
)

var (
	hour  = sessionkit.Expiry{Idle: time.Hour, Absolute: 24 * time.Hour}
	alice = "p{aaaa}u:alice"
	bob   = "p{bbbb}u:bob"
)

func binding(index, id string) sessionkit.Binding {
	return sessionkit.Binding{Index: index, User: index[len(index)-5:], ID: id, Device: "dev " + id, IP: "10.0.0.1", Expiry: hour}
}

func fresh(t *testing.T) (*bbolt.Store, *adaptertest.Clock) {
	clock := adaptertest.NewClock()
	return open(t, filepath.Join(t.TempDir(), "s.db"), clock), clock
}

func ids(t *testing.T, s *bbolt.Store, index string) []string {
	t.Helper()
	infos, err := s.UserSessions(t.Context(), index)
	require.NoError(t, err)
	var out []string
	for _, i := range infos {
		out = append(out, i.ID)
	}
	slices.Sort(out)
	return out
}

func TestBindNewSessionIsListedAndInfoDoesNotRefresh(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	start := clock.Now()
	require.NoError(t, s.Bind(ctx, "", "p{aaaa}k1", binding(alice, "id1")))
	clock.Advance(time.Minute)

	info, err := s.Info(ctx, "p{aaaa}k1")
	require.NoError(t, err)
	require.Equal(t, "p{aaaa}k1", info.Key)
	require.Equal(t, "id1", info.ID)
	require.Equal(t, "alice", info.User)
	require.Equal(t, "dev id1", info.Device)
	require.Equal(t, "10.0.0.1", info.IP)
	require.True(t, info.Created.Equal(start))
	require.True(t, info.Expires.Equal(start.Add(time.Hour)), "Info does not refresh")
	require.Equal(t, time.Hour, info.Idle)

	infos, err := s.UserSessions(ctx, alice)
	require.NoError(t, err)
	require.Len(t, infos, 1)
	require.Equal(t, info, infos[0])
	info, err = s.Info(ctx, "p{aaaa}k1")
	require.NoError(t, err)
	require.True(t, info.Expires.Equal(start.Add(time.Hour)), "UserSessions does not refresh")

	fields, err := s.GetAll(ctx, "p{aaaa}k1")
	require.NoError(t, err)
	require.Empty(t, fields, "the binding is not a field")
	n, err := s.Len(ctx, "p{aaaa}k1")
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestBindMovesTheRecordLikeRename(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	created := clock.Now()
	require.NoError(t, s.Create(ctx, "old", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
	clock.Advance(10 * time.Minute)
	require.NoError(t, s.Bind(ctx, "old", "new", binding(alice, "id1")))

	vals, err := s.Get(ctx, "new", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
	_, err = s.Get(ctx, "old", "a")
	require.ErrorIs(t, err, sessionkit.ErrRenewed)
	info, err := s.Info(ctx, "new")
	require.NoError(t, err)
	require.True(t, info.Created.Equal(created), "the creation time is kept")
	_, err = s.Info(ctx, "old")
	require.ErrorIs(t, err, sessionkit.ErrNotFound, "a marker has no info")

	require.ErrorIs(t, s.Bind(ctx, "old", "x", binding(alice, "id2")), sessionkit.ErrRenewed)
	require.ErrorIs(t, s.Bind(ctx, "missing", "x", binding(alice, "id2")), sessionkit.ErrNotFound)
	require.NoError(t, s.Create(ctx, "other", nil, hour))
	require.ErrorIs(t, s.Bind(ctx, "other", "new", binding(alice, "id2")), sessionkit.ErrExists)
	require.ErrorIs(t, s.Bind(ctx, "other", "old", binding(alice, "id2")), sessionkit.ErrExists, "onto a marker")
	require.ErrorIs(t, s.Bind(ctx, "", "new", binding(alice, "id2")), sessionkit.ErrExists)
	require.Equal(t, []string{"id1"}, ids(t, s, alice), "failed Binds change nothing")

	// Destroy through the marker ends the bound session and its entry.
	require.NoError(t, s.Destroy(ctx, "old"))
	require.Empty(t, ids(t, s, alice))
	require.Equal(t, bbolt.IndexState{Bindings: 0}, s.IndexState(), "the index went with its last entry")
}

func TestRenameAndRebindMoveTheEntry(t *testing.T) {
	ctx := t.Context()
	s, _ := fresh(t)
	require.NoError(t, s.Bind(ctx, "", "k1", binding(alice, "id1")))
	require.NoError(t, s.Bind(ctx, "", "k2", binding(alice, "id2")))
	require.NoError(t, s.Rename(ctx, "k1", "k1b"))
	infos, err := s.UserSessions(ctx, alice)
	require.NoError(t, err)
	keys := map[string]string{}
	for _, i := range infos {
		keys[i.ID] = i.Key
	}
	require.Equal(t, map[string]string{"id1": "k1b", "id2": "k2"}, keys, "the public ID is kept across Rename")
	require.Equal(t, bbolt.IndexState{Indexes: 1, Entries: 2, Bindings: 2, Due: 1, DueEntries: 1}, s.IndexState())

	// Binding alice's k2 to bob ends its binding to alice.
	require.NoError(t, s.Bind(ctx, "k2", "k2b", binding(bob, "id3")))
	require.Equal(t, []string{"id1"}, ids(t, s, alice))
	require.Equal(t, []string{"id3"}, ids(t, s, bob))
	// Binding again to the same user replaces the entry.
	require.NoError(t, s.Bind(ctx, "k1b", "k1c", binding(alice, "id4")))
	require.Equal(t, []string{"id4"}, ids(t, s, alice))
	require.Equal(t, bbolt.IndexState{Indexes: 2, Entries: 2, Bindings: 2, Due: 2, DueEntries: 2}, s.IndexState())
}

func TestCapEvictsTheOldestOrRefusesAndChangesNothing(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	b := binding(alice, "")
	b.Max = 3
	for i := range 5 {
		b.ID = fmt.Sprint("id", i)
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("k", i), b))
		clock.Advance(time.Second)
	}
	require.Equal(t, []string{"id2", "id3", "id4"}, ids(t, s, alice))
	_, err := s.Get(ctx, "k0")
	require.ErrorIs(t, err, sessionkit.ErrNotFound, "the evicted session is destroyed")

	// Rebinding one of the three does not count it against itself.
	b.ID = "id2b"
	require.NoError(t, s.Bind(ctx, "k2", "k2b", b))
	require.Equal(t, []string{"id2b", "id3", "id4"}, ids(t, s, alice))

	require.NoError(t, s.Create(ctx, "anon", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
	b.Refuse, b.ID = true, "id5"
	err = s.Bind(ctx, "anon", "k5", b)
	require.ErrorIs(t, err, sessionkit.ErrTooManySessions)
	require.NotErrorIs(t, err, sessionkit.ErrUnavailable)
	vals, err := s.Get(ctx, "anon", "a")
	require.NoError(t, err, "the refused session stays usable under its key")
	require.Equal(t, []byte("1"), vals[0])
	_, err = s.Get(ctx, "k5")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	require.Equal(t, []string{"id2b", "id3", "id4"}, ids(t, s, alice))
	require.ErrorIs(t, s.Bind(ctx, "", "k6", b), sessionkit.ErrTooManySessions)

	// A dead session does not count.
	require.NoError(t, s.Destroy(ctx, "k3"))
	require.NoError(t, s.Bind(ctx, "anon", "k5", b))
	require.Equal(t, []string{"id2b", "id4", "id5"}, ids(t, s, alice))
}

func TestCapHoldsUnderConcurrentBinds(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprint("refuse=", refuse), func(t *testing.T) {
			ctx := t.Context()
			s, _ := fresh(t)
			var stop atomic.Bool
			var most atomic.Int64
			watcher := make(chan struct{})
			go func() { // every committed state has at most 3
				defer close(watcher)
				for !stop.Load() {
					infos, err := s.UserSessions(ctx, alice)
					if err == nil && int64(len(infos)) > most.Load() {
						most.Store(int64(len(infos)))
					}
				}
			}()
			var wg sync.WaitGroup
			var ok, refused atomic.Int64
			for i := range 20 {
				wg.Go(func() {
					b := binding(alice, fmt.Sprint("id", i))
					b.Max, b.Refuse = 3, refuse
					key := fmt.Sprint("anon", i)
					if err := s.Create(ctx, key, nil, hour); err != nil {
						t.Error(err)
						return
					}
					err := s.Bind(ctx, key, fmt.Sprint("k", i), b)
					switch {
					case err == nil:
						ok.Add(1)
					case refuse && errors.Is(err, sessionkit.ErrTooManySessions):
						refused.Add(1)
						if err := s.Destroy(ctx, key); err != nil {
							t.Error(err)
						}
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			stop.Store(true)
			<-watcher
			require.Len(t, ids(t, s, alice), 3)
			n, err := s.Count(ctx, "")
			require.NoError(t, err)
			require.Equal(t, 3, n)
			if refuse {
				require.EqualValues(t, 3, ok.Load())
				require.EqualValues(t, 17, refused.Load())
			} else {
				require.EqualValues(t, 20, ok.Load())
			}
			require.LessOrEqual(t, most.Load(), int64(3), "at most 3 live bound sessions at every moment")
		})
	}
}

func TestCapHoldsAtEveryMoment(t *testing.T) {
	ctx := t.Context()
	s, _ := fresh(t)
	var stop atomic.Bool
	var most atomic.Int64
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		for !stop.Load() {
			infos, err := s.UserSessions(ctx, alice)
			if err == nil && int64(len(infos)) > most.Load() {
				most.Store(int64(len(infos)))
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			b := binding(alice, fmt.Sprint("id", i))
			b.Max = 3
			if err := s.Bind(ctx, "", fmt.Sprint("k", i), b); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	<-watcher
	require.LessOrEqual(t, most.Load(), int64(3))
	require.Len(t, ids(t, s, alice), 3)
	n, err := s.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 3, n, "the evicted sessions are gone, not just unlisted")
}

func TestRevoke(t *testing.T) {
	ctx := t.Context()
	s, _ := fresh(t)
	for i := range 4 {
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("a", i), binding(alice, fmt.Sprint("id", i))))
	}
	require.NoError(t, s.Bind(ctx, "", "b0", binding(bob, "bid")))
	n, err := s.Revoke(ctx, alice, []string{"id1", "nope", "bid"}, "")
	require.NoError(t, err)
	require.Equal(t, 1, n, "an ID of another user's session is ignored")
	require.Equal(t, []string{"id0", "id2", "id3"}, ids(t, s, alice))
	n, err = s.Revoke(ctx, alice, []string{}, "")
	require.NoError(t, err)
	require.Zero(t, n, "an empty list selects nothing")
	n, err = s.Revoke(ctx, alice, nil, "id2")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{"id2"}, ids(t, s, alice))
	_, err = s.Get(ctx, "a0")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	n, err = s.Revoke(ctx, alice, nil, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, ids(t, s, alice))
	require.Equal(t, []string{"bid"}, ids(t, s, bob))
	require.Equal(t, bbolt.IndexState{Indexes: 1, Entries: 1, Bindings: 1, Due: 1, DueEntries: 1}, s.IndexState())
}

func TestRevokeIsCompleteUnderConcurrentBinds(t *testing.T) {
	ctx := t.Context()
	s, _ := fresh(t)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 50 {
				i := next.Add(1)
				if err := s.Bind(ctx, "", fmt.Sprint("k", i), binding(alice, fmt.Sprint("id", i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for rounds := 0; ; rounds++ {
		before, err := s.UserSessions(ctx, alice)
		require.NoError(t, err)
		_, err = s.Revoke(ctx, alice, nil, "")
		require.NoError(t, err)
		for _, i := range before {
			_, err := s.Info(ctx, i.Key)
			require.ErrorIs(t, err, sessionkit.ErrNotFound, "a session listed before Revoke lives on")
		}
		select {
		case <-done:
			n, err := s.Revoke(ctx, alice, nil, "")
			require.NoError(t, err)
			n2, err := s.Count(ctx, "")
			require.NoError(t, err)
			require.Zero(t, n2, "after the last Revoke (%d ended) nothing is left", n)
			t.Logf("%d rounds", rounds)
			return
		default:
		}
	}
}

func TestIndexExpiresAndIsSweptWithItsSessions(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	short := sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}
	start := clock.Now()
	for i := range 3 {
		b := binding(alice, fmt.Sprint("id", i))
		b.Expiry = short
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("k", i), b))
	}
	require.True(t, s.IndexDeadline(alice).Equal(start.Add(time.Hour)), "the index lives to the latest absolute deadline")
	// SetExpiry that extends a session's deadline extends the index.
	require.NoError(t, s.SetExpiry(ctx, "k2", sessionkit.Expiry{Idle: time.Minute, Absolute: 2 * time.Hour}))
	require.True(t, s.IndexDeadline(alice).Equal(start.Add(2*time.Hour)))

	clock.Advance(2 * time.Minute)
	require.Empty(t, ids(t, s, alice), "expired sessions are not listed, swept or not")
	require.Equal(t, bbolt.IndexState{}, s.IndexState(), "listing removed the dead entries and the empty index")

	// The sweeper removes the entries along with the sessions.
	for i := range 3 {
		b := binding(alice, fmt.Sprint("id", i))
		b.Expiry = short
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("j", i), b))
	}
	clock.Advance(2 * time.Minute)
	_, err := s.Sweep()
	require.NoError(t, err)
	require.Equal(t, bbolt.IndexState{}, s.IndexState())
}

func TestIndexDeadlineSweepDropsWhatExpiredUnseen(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	long := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	b := binding(alice, "id1")
	b.Expiry = long
	require.NoError(t, s.Bind(ctx, "", "k1", b))
	// Damage the record so that neither the session sweeper nor a read
	// removes it: only the index's own deadline is left to clean it.
	require.NoError(t, s.Corrupt("k1", adaptertest.WrongType))
	clock.Advance(time.Hour)
	_, err := s.Sweep()
	require.NoError(t, err)
	require.Equal(t, bbolt.IndexState{}, s.IndexState(), "the index does not outlive its deadline")
}

func TestUserSessionsShrinksTheIndexAfterThousandsExpired(t *testing.T) {
	ctx := t.Context()
	s, clock := fresh(t)
	short := sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}
	for i := range leakSessions {
		b := binding(alice, fmt.Sprint("s", i))
		b.Expiry = short
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("s", i), b))
	}
	require.NoError(t, s.Bind(ctx, "", "live", binding(alice, "live")))
	require.Equal(t, leakSessions+1, s.IndexState().Entries)
	clock.Advance(2 * time.Minute)
	require.Equal(t, []string{"live"}, ids(t, s, alice))
	require.Equal(t, bbolt.IndexState{Indexes: 1, Entries: 1, Bindings: 1, Due: 1, DueEntries: 1}, s.IndexState())
	require.True(t, s.IndexDeadline(alice).Equal(clock.Now().Add(-2*time.Minute).Add(hour.Absolute)),
		"the deadline shrinks to that of the live entries")
}

func TestBindingsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	clock := adaptertest.NewClock()
	s := open(t, path, clock)
	require.NoError(t, s.Bind(ctx, "", "k1", binding(alice, "id1")))
	require.NoError(t, s.Close())
	s = open(t, path, clock)
	require.Equal(t, []string{"id1"}, ids(t, s, alice))
	info, err := s.Info(ctx, "k1")
	require.NoError(t, err)
	require.Equal(t, "alice", info.User)
}

func TestScanCountAndDestroyAll(t *testing.T) {
	ctx := t.Context()
	s, _ := fresh(t)
	for i := range 25 {
		require.NoError(t, s.Create(ctx, fmt.Sprintf("p{x}%02d", i), nil, hour))
	}
	for i := range 5 {
		require.NoError(t, s.Bind(ctx, "", fmt.Sprintf("p{aaaa}%02d", i), binding(alice, fmt.Sprint("id", i))))
	}
	require.NoError(t, s.Create(ctx, "q{x}other", nil, hour))
	require.NoError(t, s.Rename(ctx, "p{x}00", "p{x}99")) // leaves a marker
	n, err := s.Count(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, 30, n)

	var seen []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.Scan(ctx, "p", cursor, 7)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 7)
		for _, i := range page {
			seen = append(seen, i.Key)
			if strings.HasPrefix(i.Key, "p{aaaa}") {
				require.NotEmpty(t, i.ID)
				require.Equal(t, "alice", i.User)
			}
		}
		pages++
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, 30)
	require.NotContains(t, seen, "p{x}00", "a marker is not a session")
	require.NotContains(t, seen, alice, "an index is not a session")
	require.Equal(t, 5, pages)

	n, err = s.DestroyAll(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, 30, n)
	n, err = s.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the session outside the prefix stays")
	require.Equal(t, bbolt.IndexState{}, s.IndexState())
	_, err = s.Get(ctx, "p{x}00")
	require.ErrorIs(t, err, sessionkit.ErrNotFound, "markers go too")
}

func TestUsersCancelledContext(t *testing.T) {
	s, _ := fresh(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, s.Bind(ctx, "", "k", binding(alice, "id")), context.Canceled)
	_, err := s.UserSessions(ctx, alice)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Revoke(ctx, alice, nil, "")
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.Info(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	_, _, err = s.Scan(ctx, "", "", 10)
	require.ErrorIs(t, err, context.Canceled)
	_, err = s.DestroyAll(ctx, "")
	require.ErrorIs(t, err, context.Canceled)
}

func BenchmarkCreateVsBind(b *testing.B) {
	for _, bound := range []bool{false, true} {
		b.Run(fmt.Sprint("bound=", bound), func(b *testing.B) {
			s, err := bbolt.Open(filepath.Join(b.TempDir(), "s.db"), &bbolt.Options{NoSync: true})
			require.NoError(b, err)
			defer s.Close()
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				k := fmt.Sprint("k", i)
				if bound {
					err = s.Bind(ctx, "", k, binding(alice, k))
				} else {
					err = s.Create(ctx, k, nil, hour)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestBackgroundSweeperCleansTheIndex(t *testing.T) {
	ctx := t.Context()
	clock := adaptertest.NewClock()
	s, err := bbolt.Open(filepath.Join(t.TempDir(), "s.db"), &bbolt.Options{Clock: clock.Now, NoSync: true, SweepInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	short := sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}
	for i := range 3 {
		b := binding(alice, fmt.Sprint("id", i))
		b.Expiry = short
		require.NoError(t, s.Bind(ctx, "", fmt.Sprint("k", i), b))
	}
	require.Equal(t, 3, s.IndexState().Entries)
	clock.Advance(2 * time.Minute)
	require.Eventually(t, func() bool { return s.IndexState() == bbolt.IndexState{} }, 10*time.Second, 5*time.Millisecond,
		"the sweeper removes the expired sessions' bindings, entries and the emptied index")
}
