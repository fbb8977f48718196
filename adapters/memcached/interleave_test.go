package memcached

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// proxy sits between a client and memcached and lets a test stop a client
// just before one of its commands reaches the server, to run the
// interleavings the package doc reasons about one by one.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	gates []*gate
	dead  bool     // a crash gate fired: nothing more goes through
	sent  []string // every command line forwarded, in order
}

// gate stops the first command that matches: reached is closed when it
// arrives, and it goes on when release is closed. A crash gate lets the
// command through and no other after it, on any connection, as if the
// client died once the server had taken it.
type gate struct {
	match   func(cmd string) bool
	crash   bool
	reached chan struct{}
	release chan struct{}
	used    bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// stopAt adds a gate on the next command that matches.
func (p *proxy) stopAt(match func(cmd string) bool) *gate {
	return p.add(&gate{match: match})
}

// crashAt adds a crash gate on the next command that matches.
func (p *proxy) crashAt(match func(cmd string) bool) *gate {
	return p.add(&gate{match: match, crash: true})
}

// is matches the command line cmd exactly.
func is(cmd string) func(string) bool { return func(c string) bool { return c == cmd } }

// storing matches a storage command (verb, key, then its arguments).
func storing(verb, key string) func(string) bool {
	return func(c string) bool { return strings.HasPrefix(c, verb+" "+key+" ") }
}

func (p *proxy) add(g *gate) *gate {
	g.reached, g.release = make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.gates = append(p.gates, g)
	p.mu.Unlock()
	return g
}

// take returns the verb and key of every command sent since the last take:
// one per round trip.
func (p *proxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.sent {
		f := strings.Fields(c)
		if f[0] == "gets" {
			out = append(out, strings.Join(f, " "))
		} else {
			out = append(out, f[0]+" "+f[1])
		}
	}
	p.sent = nil
	return out
}

// hold waits at the first unused gate cmd matches; false: the client has
// crashed and cmd must not reach the server.
func (p *proxy) hold(cmd string) bool {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return false
	}
	var g *gate
	for _, x := range p.gates {
		if !x.used && x.match(cmd) {
			g, x.used = x, true
			break
		}
	}
	p.mu.Unlock()
	if g == nil {
		return true
	}
	close(g.reached)
	if g.crash {
		p.mu.Lock()
		p.dead = true
		p.mu.Unlock()
		return true
	}
	<-g.release
	return true
}

func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go io.Copy(c, s)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		msg := []byte(line)
		if f := strings.Fields(line); len(f) >= 5 && strings.Contains(" set add cas replace append prepend ", " "+f[0]+" ") {
			n, err := strconv.Atoi(f[4])
			if err != nil {
				return
			}
			data := make([]byte, n+2)
			if _, err := io.ReadFull(r, data); err != nil {
				return
			}
			msg = append(msg, data...)
		}
		cmd := strings.TrimRight(line, "\r\n")
		if !p.hold(cmd) {
			return
		}
		p.mu.Lock()
		p.sent = append(p.sent, cmd)
		p.mu.Unlock()
		if _, err := s.Write(msg); err != nil {
			return
		}
	}
}

// interleaving is one run: a session under "old", a Store that renames it
// through one proxy and a Store that destroys or writes through another.
type interleaving struct {
	t              *testing.T
	check          *Store // straight to memcached
	renamer, other *Store
	rp, op         *proxy
}

func newInterleaving(t *testing.T, addr string) *interleaving {
	direct := memcache.New(addr)
	require.NoError(t, direct.FlushAll())
	t.Cleanup(func() { direct.Close() })
	clock := adaptertest.NewClock()
	through := func(p *proxy) *Store {
		c := memcache.New(p.ln.Addr().String())
		t.Cleanup(func() { c.Close() })
		return New(c, &Options{Clock: clock.Now, Timeout: 5 * time.Second})
	}
	in := &interleaving{t: t, check: New(direct, &Options{Clock: clock.Now}), rp: newProxy(t, addr), op: newProxy(t, addr)}
	in.renamer, in.other = through(in.rp), through(in.op)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	require.NoError(t, in.check.Create(t.Context(), "old", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	return in
}

// rename starts a Rename of old to new and returns its result channel.
func (in *interleaving) rename() <-chan error {
	done := make(chan error, 1)
	go func() { done <- in.renamer.Rename(in.t.Context(), "old", "new") }()
	return done
}

func (in *interleaving) destroy() <-chan error {
	done := make(chan error, 1)
	go func() { done <- in.other.Destroy(in.t.Context(), "old") }()
	return done
}

// requireNothingLive checks that neither key holds a live session or
// marker, whatever the adapter itself would say.
func (in *interleaving) requireNothingLive() {
	in.t.Helper()
	now := in.check.now().UnixMilli()
	for _, k := range []string{"old", "new"} {
		it, err := in.check.get(ItemKey(k))
		require.NoError(in.t, err)
		require.False(in.t, inspect(it, now).live(), "%s holds something live", k)
	}
}

// arrive waits until a command reaches g.
func arrive(t *testing.T, g *gate) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the command never came")
	}
}

// ran waits for a call's result.
func ran(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return")
		return nil
	}
}

func TestDestroyRacingRenameInEveryInterleaving(t *testing.T) {
	addr := testserver.Memcached(t).Addr
	ctx := t.Context()

	t.Run("DestroyWinsTheCasBeforeTheFreeze", func(t *testing.T) {
		in := newInterleaving(t, addr)
		freeze := in.rp.stopAt(storing("cas", "old"))
		renamed := in.rename()
		arrive(t, freeze)
		require.NoError(t, ran(t, in.destroy()))
		close(freeze.release)
		require.ErrorIs(t, ran(t, renamed), sessionkit.ErrNotFound)
		in.requireNothingLive()
	})
	t.Run("FreezeWinsTheCasBeforeDestroy", func(t *testing.T) {
		in := newInterleaving(t, addr)
		kill := in.op.stopAt(storing("cas", "old"))
		destroyed := in.destroy()
		arrive(t, kill)
		require.NoError(t, ran(t, in.rename()))
		close(kill.release)
		require.NoError(t, ran(t, destroyed))
		in.requireNothingLive()
	})
	t.Run("DestroyRunsBetweenFreezeAndCopy", func(t *testing.T) {
		in := newInterleaving(t, addr)
		cp := in.rp.stopAt(storing("add", "new"))
		renamed := in.rename()
		arrive(t, cp)
		require.NoError(t, ran(t, in.destroy()))
		close(cp.release)
		require.ErrorIs(t, ran(t, renamed), sessionkit.ErrNotFound, "the check finds the marker gone")
		in.requireNothingLive()
	})
	t.Run("DestroyRunsBetweenCopyAndCheck", func(t *testing.T) {
		in := newInterleaving(t, addr)
		// The renamer's first read asks for both keys ("gets old new"):
		// its only single-key read of old is the check.
		check := in.rp.stopAt(is("gets old"))
		renamed := in.rename()
		arrive(t, check)
		require.NoError(t, ran(t, in.destroy()))
		close(check.release)
		require.ErrorIs(t, ran(t, renamed), sessionkit.ErrNotFound)
		in.requireNothingLive()
	})
	t.Run("DestroyReadsTheMarkerAndDeletesItAfterTheCheck", func(t *testing.T) {
		// The interleaving that rules out "destroy the new key, then the
		// marker": Destroy reads the marker, Rename completes, and only
		// then does Destroy go on.
		in := newInterleaving(t, addr)
		cp := in.rp.stopAt(storing("add", "new"))
		renamed := in.rename()
		arrive(t, cp) // the marker is in place
		del := in.op.stopAt(is("delete old"))
		destroyed := in.destroy()
		arrive(t, del) // Destroy has read the marker
		close(cp.release)
		require.NoError(t, ran(t, renamed), "the check still finds the marker")
		close(del.release)
		require.NoError(t, ran(t, destroyed))
		in.requireNothingLive()
	})
	t.Run("DestroyDeletesTheMarkerThenPausesBeforeTheNewKey", func(t *testing.T) {
		in := newInterleaving(t, addr)
		cp := in.rp.stopAt(storing("add", "new"))
		renamed := in.rename()
		arrive(t, cp)
		follow := in.op.stopAt(is("gets new"))
		destroyed := in.destroy()
		arrive(t, follow) // the marker is deleted
		close(cp.release)
		require.ErrorIs(t, ran(t, renamed), sessionkit.ErrNotFound)
		close(follow.release)
		require.NoError(t, ran(t, destroyed))
		in.requireNothingLive()
	})
	_ = ctx
}

func TestWritesAroundTheFreezeAreCarriedOrRefused(t *testing.T) {
	addr := testserver.Memcached(t).Addr
	ctx := t.Context()
	in := newInterleaving(t, addr)
	freeze := in.rp.stopAt(storing("cas", "old"))
	cp := in.rp.stopAt(storing("add", "new"))
	renamed := in.rename()
	arrive(t, freeze) // the renamer has read the session and is about to freeze it
	require.NoError(t, in.other.Set(ctx, "old", []sessionkit.Field{{Name: "before", Value: []byte("x")}}, 0))
	close(freeze.release) // loses its cas to the write, reads again, freezes
	arrive(t, cp)
	err := in.other.Set(ctx, "old", []sessionkit.Field{{Name: "after", Value: []byte("x")}}, 0)
	require.ErrorIs(t, err, sessionkit.ErrRenewed, "a write after the freeze is refused")
	require.ErrorIs(t, in.other.Delete(ctx, "old", "a"), sessionkit.ErrRenewed)
	close(cp.release)
	require.NoError(t, ran(t, renamed))
	all, err := in.check.GetAll(ctx, "new")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"a": []byte("1"), "before": []byte("x")}, all, "the acknowledged write moved with the session")
}

func TestACrashMidRenameFailsClosed(t *testing.T) {
	addr := testserver.Memcached(t).Addr
	ctx := t.Context()
	for _, c := range []struct {
		after    string
		match    func(string) bool
		old, new error // what each key reads as after the crash
	}{
		{"Read", is("gets old new"), nil, sessionkit.ErrNotFound},
		{"Freeze", storing("cas", "old"), sessionkit.ErrRenewed, sessionkit.ErrNotFound},
		{"Copy", storing("add", "new"), sessionkit.ErrRenewed, nil},
		{"Check", is("gets old"), sessionkit.ErrRenewed, nil},
	} {
		t.Run("After"+c.after, func(t *testing.T) {
			in := newInterleaving(t, addr)
			in.rp.crashAt(c.match)
			ran(t, in.rename()) // whatever it returns: a crashed process returns nothing
			_, err := in.check.GetAll(ctx, "old")
			requireIsOrNil(t, err, c.old, "old")
			_, err = in.check.GetAll(ctx, "new")
			requireIsOrNil(t, err, c.new, "new")
		})
	}
}

func requireIsOrNil(t *testing.T, err, want error, what string) {
	t.Helper()
	if want == nil {
		require.NoError(t, err, what)
	} else {
		require.ErrorIs(t, err, want, what)
	}
}

// The round trips the package doc states, as sent.
func TestRoundTrips(t *testing.T) {
	ctx := t.Context()
	in := newInterleaving(t, testserver.Memcached(t).Addr)
	s, p := in.renamer, in.rp
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	field := []sessionkit.Field{{Name: "b", Value: []byte("2")}}
	for _, c := range []struct {
		op   string
		call func() error
		want []string
	}{
		{"Create", func() error { return s.Create(ctx, "k", field, exp) }, []string{"add k"}},
		{"Get", func() error { _, err := s.Get(ctx, "k", "b"); return err }, []string{"gets k", "cas k"}},
		{"Set", func() error { return s.Set(ctx, "k", field, 0) }, []string{"gets k", "cas k"}},
		{"Incr", func() error { _, err := s.Incr(ctx, "k", "n", 1, 0); return err }, []string{"gets k", "cas k"}},
		{"Pop", func() error { _, err := s.Pop(ctx, "k", "n"); return err }, []string{"gets k", "cas k"}},
		{"Pop of a missing field", func() error { _, err := s.Pop(ctx, "k", "n"); return err }, []string{"gets k", "cas k"}},
		{"Rename", func() error { return s.Rename(ctx, "k", "k2") }, []string{"gets k k2", "cas k", "add k2", "gets k"}},
		{"Get on a marker", func() error {
			_, err := s.Get(ctx, "k", "b")
			require.ErrorIs(t, err, sessionkit.ErrRenewed)
			return nil
		}, []string{"gets k"}},
		{"Destroy", func() error { return s.Destroy(ctx, "k2") }, []string{"gets k2", "cas k2"}},
		{"Destroy again: the dead item it left", func() error { return s.Destroy(ctx, "k2") }, []string{"gets k2", "delete k2"}},
		{"Destroy of a missing key", func() error { return s.Destroy(ctx, "k2") }, []string{"gets k2"}},
		{"Destroy through a marker", func() error {
			require.NoError(t, s.Rename(ctx, "old", "new"))
			p.take()
			return s.Destroy(ctx, "old")
		}, []string{"gets old", "delete old", "gets new", "cas new"}},
	} {
		p.take()
		require.NoError(t, c.call(), c.op)
		require.Equal(t, c.want, p.take(), c.op)
	}
}
