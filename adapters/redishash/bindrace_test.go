package redishash

// Races of Bind's steps with Destroy, Revoke, a second login and a lost
// reply, each forced at the worst moment with a hook that holds one
// script until released. Found by review (each failed before the fix).

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// holdHook holds the first run of one script until release is closed.
type holdHook struct {
	sha              string
	once             sync.Once
	reached, release chan struct{}
}

func (h *holdHook) DialHook(n redis.DialHook) redis.DialHook { return n }
func (h *holdHook) ProcessPipelineHook(n redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return n
}
func (h *holdHook) ProcessHook(n redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 {
			if s, _ := args[1].(string); s == h.sha {
				h.once.Do(func() { close(h.reached); <-h.release })
			}
		}
		return n(ctx, cmd)
	}
}

var hour = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

const anaIndex = "s:{ana}u:idx"

func anaBinding(id string, max int, refuse bool) sessionkit.Binding {
	return sessionkit.Binding{Index: anaIndex, User: "ana", ID: id, Expiry: hour, Max: max, Refuse: refuse}
}

// held returns a store on a real server, and one whose first run of sc
// waits until the hook is released.
func held(t *testing.T, sc *redis.Script) (*Store, *Store, *holdHook) {
	addr := testserver.Redis(t).Addr
	plain := redis.NewClient(&redis.Options{Addr: addr})
	slow := redis.NewClient(&redis.Options{Addr: addr})
	h := &holdHook{sha: sc.Hash(), reached: make(chan struct{}), release: make(chan struct{})}
	slow.AddHook(h)
	t.Cleanup(func() { plain.Close(); slow.Close() })
	return New(plain, nil), New(slow, nil), h
}

func TestADestroyBetweenBindsStepsEndsTheSession(t *testing.T) {
	ctx := t.Context()
	s, slow, h := held(t, bindInScript)
	require.NoError(t, s.Create(ctx, "s:{x}1", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
	done := make(chan error, 1)
	go func() { done <- slow.Bind(ctx, "s:{x}1", "s:{ana}a", anaBinding("a", 0, false)) }()
	<-h.reached // step 1 done: the record is on its way
	require.NoError(t, s.Destroy(ctx, "s:{x}1"))
	close(h.release)
	require.ErrorIs(t, <-done, sessionkit.ErrNotFound, "the login learns that the session ended")
	_, err := s.Info(ctx, "s:{ana}a")
	require.ErrorIs(t, err, sessionkit.ErrNotFound, "a Destroy that returned leaves nothing live")
	l, err := s.UserSessions(ctx, anaIndex)
	require.NoError(t, err)
	require.Empty(t, l)
}

func TestALoginAgainRacingANewLoginKeepsTheCap(t *testing.T) {
	ctx := t.Context()
	s, slow, h := held(t, bindSameScript)
	require.NoError(t, s.Bind(ctx, "", "s:{ana}a", anaBinding("a", 2, true)))
	require.NoError(t, s.Bind(ctx, "", "s:{ana}b", anaBinding("b", 2, true)))
	done := make(chan error, 1)
	go func() { done <- slow.Bind(ctx, "s:{ana}a", "s:{ana}a2", anaBinding("a2", 2, true)) }()
	<-h.reached
	require.ErrorIs(t, s.Bind(ctx, "", "s:{ana}c", anaBinding("c", 2, true)), sessionkit.ErrTooManySessions,
		"the session logging in again still counts")
	close(h.release)
	require.NoError(t, <-done)
	l, err := s.UserSessions(ctx, anaIndex)
	require.NoError(t, err)
	require.Len(t, l, 2, "cap 2")
}

func TestARevokeDuringALoginAgainMissesNothing(t *testing.T) {
	ctx := t.Context()
	s, slow, h := held(t, bindSameScript)
	require.NoError(t, s.Bind(ctx, "", "s:{ana}a", anaBinding("a", 0, false)))
	done := make(chan error, 1)
	go func() { done <- slow.Bind(ctx, "s:{ana}a", "s:{ana}a2", anaBinding("a2", 0, false)) }()
	<-h.reached
	n, err := s.Revoke(ctx, anaIndex, nil, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	close(h.release)
	require.ErrorIs(t, <-done, sessionkit.ErrNotFound)
	for _, k := range []string{"s:{ana}a", "s:{ana}a2"} {
		_, err = s.Info(ctx, k)
		require.ErrorIs(t, err, sessionkit.ErrNotFound, k)
	}
}

func TestARetriedBindStepNeverForksTheSession(t *testing.T) {
	ctx := t.Context()
	addr := testserver.Redis(t).Addr
	plain := redis.NewClient(&redis.Options{Addr: addr})
	lossy := redis.NewClient(&redis.Options{Addr: testserver.DropProxy(t, addr, "", bindInScript.Hash())}) // default retries
	t.Cleanup(func() { plain.Close(); lossy.Close() })
	s := New(plain, nil)
	require.NoError(t, bindInScript.Load(ctx, plain).Err()) // so the client sends the SHA
	require.NoError(t, s.Create(ctx, "s:{x}1", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
	require.NoError(t, New(lossy, nil).Bind(ctx, "s:{x}1", "s:{ana}a", anaBinding("a", 0, false)),
		"the retry of step 2 finds its own record")
	_, errOld := s.Info(ctx, "s:{x}1")
	require.ErrorIs(t, errOld, sessionkit.ErrNotFound, "the old key is a marker")
	v, err := s.Get(ctx, "s:{ana}a", "a")
	require.NoError(t, err)
	require.Equal(t, "1", string(v[0]))
}

func TestABindingNamingAnotherSlotIsCorruptOnCluster(t *testing.T) {
	c := testserver.RedisCluster(t, 3, 0)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	s := New(client, nil)
	require.NoError(t, s.Bind(ctx, "", "s:{ana}c", anaBinding("c", 0, false)))
	require.NoError(t, client.HSet(ctx, "s:{ana}c", fieldBinding, "s:{bob}u:idx\nc\nana\n\n").Err())
	require.ErrorIs(t, s.Rename(ctx, "s:{ana}c", "s:{ana}c2"), sessionkit.ErrNotFound, "corrupt reads as gone")
	require.Zero(t, client.Exists(ctx, "s:{ana}c").Val(), "and is removed")
	require.ErrorIs(t, s.Rename(ctx, "s:{ana}c", "s:{ana}c2"), sessionkit.ErrNotFound, "no lasting error")
}

// A stolen session of one user, logged in again and again as another user
// who is at the cap (refused, and put back each time), must not slip out
// of a revocation of its user while it is on its way.
func TestARevokeReachesASessionOnItsWayToAnotherUser(t *testing.T) {
	ctx := t.Context()
	s, slow, h := held(t, bindInScript)
	vic := sessionkit.Binding{Index: "s:{vic}u:idx", User: "vic", ID: "v", Expiry: hour}
	require.NoError(t, s.Bind(ctx, "", "s:{vic}a", vic))
	full := func(id string) sessionkit.Binding {
		return sessionkit.Binding{Index: "s:{ful}u:idx", User: "full", ID: id, Expiry: hour, Max: 1, Refuse: true}
	}
	require.NoError(t, s.Bind(ctx, "", "s:{ful}1", full("f1")))
	done := make(chan error, 1)
	go func() { done <- slow.Bind(ctx, "s:{vic}a", "s:{ful}2", full("f2")) }()
	<-h.reached // step 1 done: the session is a marker, on its way
	// vic logs in elsewhere meanwhile: its index is cleaned, and must keep
	// the session on its way.
	require.NoError(t, s.Bind(ctx, "", "s:{vic}b", sessionkit.Binding{Index: vic.Index, User: "vic", ID: "v2", Expiry: hour, Max: 5}))
	n, err := s.Revoke(ctx, vic.Index, nil, "")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the session at rest")
	close(h.release)
	require.ErrorIs(t, <-done, sessionkit.ErrTooManySessions)
	for _, k := range []string{"s:{vic}a", "s:{vic}b", "s:{ful}2"} {
		_, err := s.Info(ctx, k)
		require.ErrorIs(t, err, sessionkit.ErrNotFound, "%s: nothing of vic's survives the revocation", k)
	}
}
