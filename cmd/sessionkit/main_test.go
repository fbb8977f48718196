package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/storeurl"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testserver.StopPostgres()
	os.Exit(code)
}

// result is what one run of the command gave.
type result struct {
	code        int
	out, errOut string
}

// cli runs the command in process with stdin as its input.
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// backend is a store the command and the test reach through one URL.
type backend struct {
	url string
	// with runs f on a Manager over the store, and releases the store
	// after (a bbolt file belongs to one open handle at a time).
	with func(t *testing.T, f func(m *sessionkit.Manager))
}

func urlBackend(url string) backend {
	return backend{url: url, with: func(t *testing.T, f func(m *sessionkit.Manager)) {
		t.Helper()
		store, closer, err := storeurl.Open(url)
		require.NoError(t, err)
		defer closer.Close()
		require.Implements(t, (*sessionkit.Users)(nil), store)
		m, err := sessionkit.New(&sessionkit.Options{Store: store, KeyPrefix: "app:"})
		require.NoError(t, err)
		f(m)
	}}
}

// memoryBackend shares one in-process store between the test and the
// command (memory:// is a new, empty store at each Open).
func memoryBackend(t *testing.T) backend {
	store := memory.New(nil)
	old := openStore
	openStore = func(url string) (sessionkit.Store, io.Closer, error) {
		if url != "memory://" {
			return old(url)
		}
		return store, io.NopCloser(nil), nil
	}
	t.Cleanup(func() { openStore = old })
	return backend{url: "memory://", with: func(t *testing.T, f func(m *sessionkit.Manager)) {
		m, err := sessionkit.New(&sessionkit.Options{Store: store, KeyPrefix: "app:"})
		require.NoError(t, err)
		f(m)
	}}
}

func backends(t *testing.T) map[string]func(t *testing.T) backend {
	return map[string]func(t *testing.T) backend{
		"memory": memoryBackend,
		"redis": func(t *testing.T) backend {
			return urlBackend("redis://" + testserver.Redis(t).Addr + "/0")
		},
		"redis-cluster": func(t *testing.T) backend {
			c := testserver.RedisCluster(t, 3, 0)
			return urlBackend("redis+cluster://" + c.Addrs()[0] + "?addr=" + strings.Join(c.Addrs()[1:], "&addr="))
		},
		"bbolt": func(t *testing.T) backend {
			return urlBackend("bbolt://" + filepath.Join(t.TempDir(), "sessions.db"))
		},
		"postgres": func(t *testing.T) backend {
			// A long timeout: the first use creates the tables, which a
			// loaded machine under -race can take over a second to do.
			return urlBackend(testserver.Postgres(t).URL + "&table_prefix=cli_&timeout=20s")
		},
	}
}

// seeded is what seed stored.
type seeded struct {
	tokens map[string]string // name → token
	keys   map[string]string // name → storage key
	ids    map[string]string // name → public ID ("" when bound to no user)
}

func (s seeded) logID(name string) string { return sessionkit.KeyLogID(s.keys[name]) }

// seed binds three sessions to ana, two to bob, and stores one bound to no
// user, each with a field.
func seed(t *testing.T, b backend) seeded {
	t.Helper()
	s := seeded{tokens: map[string]string{}, keys: map[string]string{}, ids: map[string]string{}}
	ctx := t.Context()
	b.with(t, func(m *sessionkit.Manager) {
		for _, x := range []struct{ name, user, device string }{
			{"ana-phone", "ana", "Phone/1.0"}, {"ana-laptop", "ana", "Laptop/2.0"}, {"ana-tablet", "ana", "Tablet/3.0"},
			{"bob-1", "bob", "Bob's phone"}, {"bob-2", "bob", "Bob's laptop"},
		} {
			tok, err := m.Bind(ctx, "", x.user, sessionkit.Client{Device: x.device})
			require.NoError(t, err)
			s.tokens[x.name], s.keys[x.name] = tok, m.StorageKey(tok)
			sess, err := m.Load(tok)
			require.NoError(t, err)
			require.NoError(t, sess.Set(ctx, "device", x.device))
			info, err := m.Store().(sessionkit.Users).Info(ctx, s.keys[x.name])
			require.NoError(t, err)
			require.Equal(t, x.user, info.User)
			s.ids[x.name] = info.ID
			time.Sleep(2 * time.Millisecond) // distinct creation times, for the order of ls -user
		}
		anon := m.NewSession()
		require.NoError(t, anon.Set(ctx, "cart", 3))
		s.tokens["anon"], s.keys["anon"] = anon.Token(), m.StorageKey(anon.Token())
		// Outside the prefix: never counted, listed or revoked.
		other, err := sessionkit.New(&sessionkit.Options{Store: m.Store(), KeyPrefix: "other:"})
		require.NoError(t, err)
		out := other.NewSession()
		require.NoError(t, out.Set(ctx, "x", 1))
		s.tokens["other"], s.keys["other"] = out.Token(), other.StorageKey(out.Token())
	})
	return s
}

// live reports which of the named sessions are live.
func live(t *testing.T, b backend, s seeded, names ...string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	b.with(t, func(m *sessionkit.Manager) {
		for _, n := range names {
			_, err := m.Store().Len(t.Context(), s.keys[n])
			if err != nil {
				require.ErrorIs(t, err, sessionkit.ErrNotFound, n)
			}
			got[n] = err == nil
		}
	})
	return got
}

func TestCommandsOnEveryListingStore(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			s := seed(t, b)
			g := []string{"-store", b.url, "-prefix", "app:"}
			sk := func(stdin string, args ...string) result {
				t.Helper()
				return cli(t, stdin, append(append([]string{}, g...), args...)...)
			}

			r := sk("", "count")
			require.Equal(t, result{0, "6\n", ""}, r)

			// ls: a header and one line per session, with log ID, public ID,
			// user and device.
			r = sk("", "ls")
			require.Equal(t, 0, r.code, r.errOut)
			lines := strings.Split(strings.TrimSpace(r.out), "\n")
			require.Len(t, lines, 7, r.out)
			require.Regexp(t, `^LOG ID +PUBLIC ID +USER +DEVICE +CREATED +LAST SEEN +EXPIRES$`, lines[0])
			for _, n := range []string{"ana-phone", "ana-laptop", "bob-1", "anon"} {
				require.Contains(t, r.out, s.logID(n), n)
			}
			require.Contains(t, r.out, s.ids["ana-phone"])
			require.Contains(t, r.out, "Tablet/3.0")
			require.NotContains(t, r.out, s.logID("other"), "a session outside the prefix")
			require.NotContains(t, r.out, s.tokens["ana-phone"][5:], "never a token")

			// ls -json: one object per line.
			r = sk("", "ls", "-json", "-page", "2")
			require.Equal(t, 0, r.code, r.errOut)
			var entries []entry
			dec := json.NewDecoder(strings.NewReader(r.out))
			for dec.More() {
				var e entry
				require.NoError(t, dec.Decode(&e))
				entries = append(entries, e)
			}
			require.Len(t, entries, 6)
			byLog := map[string]entry{}
			for _, e := range entries {
				byLog[e.LogID] = e
			}
			phone := byLog[s.logID("ana-phone")]
			require.Equal(t, "ana", phone.User)
			require.Equal(t, s.ids["ana-phone"], phone.ID)
			require.Equal(t, "Phone/1.0", phone.Device)
			require.True(t, phone.Expires.After(time.Now()), "%v", phone.Expires)
			require.Empty(t, byLog[s.logID("anon")].User)

			// ls -user: the user's sessions, oldest first.
			r = sk("", "ls", "-user", "ana")
			require.Equal(t, 0, r.code, r.errOut)
			lines = strings.Split(strings.TrimSpace(r.out), "\n")
			require.Len(t, lines, 4, r.out)
			for i, n := range []string{"ana-phone", "ana-laptop", "ana-tablet"} {
				require.True(t, strings.HasPrefix(lines[i+1], s.logID(n)+" "), "line %d: %s", i+1, lines[i+1])
			}
			r = sk("", "ls", "-user", "nobody")
			require.Equal(t, 0, r.code, r.errOut)
			require.Equal(t, 1, strings.Count(r.out, "\n"), "a header only")

			// show, by public ID and by log ID, with the fields as JSON.
			r = sk("", "show", s.ids["ana-laptop"])
			require.Equal(t, 0, r.code, r.errOut)
			var got shown
			require.NoError(t, json.Unmarshal([]byte(r.out), &got), r.out)
			require.Equal(t, "ana", got.User)
			require.Equal(t, s.logID("ana-laptop"), got.LogID)
			require.Equal(t, map[string]any{"device": "Laptop/2.0"}, got.Fields)
			r = sk("", "show", s.logID("anon"))
			require.Equal(t, 0, r.code, r.errOut)
			got = shown{}
			require.NoError(t, json.Unmarshal([]byte(r.out), &got), r.out)
			require.Equal(t, map[string]any{"cart": float64(3)}, got.Fields)
			require.Empty(t, got.User)
			r = sk("", "show", "-meta", s.ids["bob-1"])
			require.Equal(t, 0, r.code, r.errOut)
			require.NotContains(t, r.out, `"fields"`)
			require.Contains(t, r.out, `"user": "bob"`)
			r = sk("", "show", "nosuchid")
			require.Equal(t, 1, r.code)
			require.Contains(t, r.errOut, `show: no live session has the public ID or log ID "nosuchid" under the prefix "app:"`)
			r = sk("", "show", s.logID("other"))
			require.Equal(t, 1, r.code, "outside the prefix")

			// revoke ID: one session bound to no user (by log ID), one bound
			// (by public ID).
			r = sk("", "revoke", s.logID("anon"))
			require.Equal(t, 0, r.code, r.errOut)
			require.Contains(t, r.out, "revoked session with log ID "+s.logID("anon"))
			r = sk("", "revoke", s.ids["bob-1"])
			require.Equal(t, 0, r.code, r.errOut)
			require.Equal(t, "revoked session "+s.ids["bob-1"]+" (log ID "+s.logID("bob-1")+`) of user "bob"`+"\n", r.out)
			require.Equal(t, map[string]bool{"anon": false, "bob-1": false, "bob-2": true, "ana-phone": true},
				live(t, b, s, "anon", "bob-1", "bob-2", "ana-phone"))
			r = sk("", "revoke", s.ids["bob-1"])
			require.Equal(t, 1, r.code, "gone already")
			require.Contains(t, r.errOut, "no live session has the public ID")
			require.Equal(t, result{0, "4\n", ""}, sk("", "count"))

			// revoke -user -except: a mistyped exception revokes nothing.
			r = sk("", "revoke", "-user", "ana", "-except", "typo")
			require.Equal(t, 1, r.code)
			require.Contains(t, r.errOut, `user "ana" has no live session with the public ID or log ID "typo": nothing revoked`)
			require.Equal(t, result{0, "4\n", ""}, sk("", "count"))
			r = sk("", "revoke", "-user", "ana", "-except", s.logID("ana-laptop"))
			require.Equal(t, 0, r.code, r.errOut)
			require.Equal(t, `revoked 2 sessions of user "ana", kept `+s.ids["ana-laptop"]+"\n", r.out)
			require.Equal(t, map[string]bool{"ana-phone": false, "ana-laptop": true, "ana-tablet": false},
				live(t, b, s, "ana-phone", "ana-laptop", "ana-tablet"))
			r = sk("", "revoke", "-user", "ana")
			require.Equal(t, result{0, `revoked 1 session of user "ana"` + "\n", ""}, r)

			// revoke -all asks, and anything but yes keeps every session.
			for _, answer := range []string{"", "no\n", "y\n"} {
				r = sk(answer, "revoke", "-all")
				require.Equal(t, 1, r.code, "answer %q", answer)
				require.Contains(t, r.errOut, `This ends all 1 session under the prefix "app:"`)
				require.Empty(t, r.out)
				require.Contains(t, r.errOut, "not confirmed: nothing revoked")
			}
			require.Equal(t, map[string]bool{"bob-2": true}, live(t, b, s, "bob-2"))
			r = sk("YES\n", "revoke", "-all")
			require.Equal(t, 0, r.code, r.errOut)
			require.Contains(t, r.out, `revoked 1 session under the prefix "app:"`)
			require.Equal(t, result{0, "0\n", ""}, sk("", "count"))
			require.Equal(t, map[string]bool{"bob-2": false, "other": true}, live(t, b, s, "bob-2", "other"))

			s = seed(t, b)
			r = sk("", "revoke", "-all", "-yes")
			require.Equal(t, result{0, `revoked 6 sessions under the prefix "app:"` + "\n", ""}, r)
			require.Equal(t, map[string]bool{"ana-phone": false, "anon": false}, live(t, b, s, "ana-phone", "anon"))
		})
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	memoryBackend(t)
	for _, c := range []struct {
		args []string
		says string
	}{
		{nil, "no command"},
		{[]string{"-store", "memory://", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"count"}, "no store: give -store URL"},
		{[]string{"-store", "memory://", "count", "extra"}, "count takes no arguments"},
		{[]string{"-store", "memory://", "-bogus", "count"}, "flag provided but not defined: -bogus"},
		{[]string{"-store", "memory://", "show"}, "show takes one session ID"},
		{[]string{"-store", "memory://", "revoke"}, "revoke what?"},
		{[]string{"-store", "memory://", "revoke", "x", "-all"}, "revoke takes one of"},
		{[]string{"-store", "memory://", "revoke", "x", "-except", "y"}, "-except goes with -user"},
		{[]string{"-store", "memory://", "revoke", "x", "-yes"}, "-yes goes with -all"},
		{[]string{"-store", "memory://", "revoke", "-user", "a\nb"}, "control character"},
		{[]string{"-store", "memory://", "ls", "ana"}, "did you mean ls -user ana?"},
		{[]string{"-store", "nosuch://x", "count"}, `unknown scheme "nosuch"; accepted schemes: redis://`},
		{[]string{"-store", "redis://:hunter2@127.0.0.1:1/0?x=", "-timeout", "0s", "count"}, "-timeout must be positive"},
		// An empty -user is a mistake (an unset shell variable, say), not
		// "every user": ls would list, and revoke end, someone else's.
		{[]string{"-store", "memory://", "ls", "-user", ""}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "ls", "-user="}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "ls", "-json", "-user", "", "-page", "3"}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "revoke", "-user", ""}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "revoke", "-user", "", "-all"}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "revoke", "-user", "", "-except", "x"}, "empty user ID (-user '')"},
		{[]string{"-store", "memory://", "revoke", "-user", "ana", "-except", ""}, "empty -except"},
		{[]string{"-store", "memory://", "revoke", ""}, "empty session ID"},
		{[]string{"-store", "memory://", "show", ""}, "show takes one session ID"},
		// An empty -prefix is not the default prefix, before or after the
		// command.
		{[]string{"-store", "memory://", "-prefix", "", "count"}, `empty -prefix: give the Manager's Options.KeyPrefix, or leave -prefix out for "session:"`},
		{[]string{"-store", "memory://", "-prefix=", "ls"}, "empty -prefix"},
		{[]string{"-store", "memory://", "ls", "-prefix", ""}, "empty -prefix"},
		{[]string{"-store", "memory://", "-prefix", "app:", "revoke", "-all", "-yes", "-prefix", ""}, "empty -prefix"},
	} {
		r := cli(t, "", c.args...)
		require.Equal(t, 2, r.code, "%q: %s", c.args, r.errOut)
		require.Contains(t, r.errOut, c.says, "%q", c.args)
		require.Empty(t, r.out)
	}
	r := cli(t, "", "-h")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.out, "Exit status: 0 done; 1 failed")
	// Flags after the command, and after its argument.
	r = cli(t, "", "count", "-store", "memory://", "-prefix", "x:")
	require.Equal(t, result{0, "0\n", ""}, r)
	// The last -prefix wins, as for any flag: an empty one then a good one
	// is no mistake.
	r = cli(t, "", "-prefix", "", "count", "-store", "memory://", "-prefix", "x:")
	require.Equal(t, result{0, "0\n", ""}, r)
}

// TestAnEmptyUserOrPrefixTouchesNothing: ls -user ” and revoke -user ”
// neither list nor end any session, and neither does -prefix ”; leaving
// the flags out still means every session, and the default prefix.
func TestAnEmptyUserOrPrefixTouchesNothing(t *testing.T) {
	b := memoryBackend(t)
	s := seed(t, b)
	def := ""
	b.with(t, func(m *sessionkit.Manager) {
		d, err := sessionkit.New(&sessionkit.Options{Store: m.Store()})
		require.NoError(t, err)
		sess := d.NewSession()
		require.NoError(t, sess.Set(t.Context(), "a", 1))
		def = sessionkit.KeyLogID(d.StorageKey(sess.Token()))
	})
	for _, args := range [][]string{
		{"-prefix", "app:", "ls", "-user", ""},
		{"-prefix", "app:", "ls", "-json", "-user="},
		{"-prefix", "app:", "revoke", "-user", ""},
		{"-prefix", "app:", "revoke", "-user", "ana", "-except", ""},
		{"-prefix", "", "ls"},
		{"-prefix", "", "revoke", "-all", "-yes"},
	} {
		r := cli(t, "", append([]string{"-store", "memory://"}, args...)...)
		require.Equal(t, 2, r.code, "%q", args)
		require.Empty(t, r.out, "%q", args)
	}
	require.Equal(t, result{0, "6\n", ""}, cli(t, "", "-store", "memory://", "-prefix", "app:", "count"))
	require.Equal(t, map[string]bool{"ana-phone": true, "bob-1": true, "anon": true},
		live(t, b, s, "ana-phone", "bob-1", "anon"))

	r := cli(t, "", "-store", "memory://", "-prefix", "app:", "ls")
	require.Equal(t, 0, r.code, r.errOut)
	require.Equal(t, 7, strings.Count(r.out, "\n"), "without -user: every session under the prefix\n%s", r.out)
	r = cli(t, "", "-store", "memory://", "ls")
	require.Equal(t, 0, r.code, r.errOut)
	require.Equal(t, 2, strings.Count(r.out, "\n"), "without -prefix: the default prefix\n%s", r.out)
	require.Contains(t, r.out, def)
}

func TestFailuresExitOneAndSayWhat(t *testing.T) {
	// A store that does not answer.
	r := cli(t, "", "-store", "redis://:hunter2@127.0.0.1:"+freePort(t)+"/0", "count")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.errOut, "does not answer")
	require.Contains(t, r.errOut, "connection refused")
	require.NotContains(t, r.errOut, "hunter2")

	// A bbolt file that is not there is not created.
	missing := filepath.Join(t.TempDir(), "typo.db")
	r = cli(t, "", "-store", "bbolt://"+missing, "ls")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.errOut, "no such file")
	_, err := os.Stat(missing)
	require.ErrorIs(t, err, os.ErrNotExist)

	// A store that cannot list its sessions names itself: memcached
	// without its crawler.
	mc := "memcached://" + testserver.Memcached(t, "-o", "no_lru_crawler").Addr
	for _, args := range [][]string{{"count"}, {"ls"}, {"show", "x"}, {"revoke", "x"}, {"revoke", "-all", "-yes"}} {
		r = cli(t, "", append([]string{"-store", mc}, args...)...)
		require.Equal(t, 1, r.code, "%q", args)
		require.Contains(t, r.errOut, "sessionkit: "+args[0]+": the memcached store ("+mc+") cannot do this: ", "%q", args)
		require.Contains(t, r.errOut, "lru_crawler", "%q", args)
		require.Contains(t, r.errOut, "docs/backends.md", "%q", args)
	}
}

// TestMemcachedListsButKeepsNoUserIndex runs the commands on a real
// memcached: it counts, lists, shows and revokes sessions (through its
// crawler), and the per-user commands say that memcached keeps no index.
func TestMemcachedListsButKeepsNoUserIndex(t *testing.T) {
	mc := "memcached://" + testserver.Memcached(t).Addr
	store, closer, err := storeurl.Open(mc)
	require.NoError(t, err)
	t.Cleanup(func() { closer.Close() })
	m, err := sessionkit.New(&sessionkit.Options{Store: store})
	require.NoError(t, err)
	ctx := t.Context()
	var keys []string
	for i := range 3 {
		s := m.NewSession()
		require.NoError(t, s.Set(ctx, "n", i))
		keys = append(keys, m.StorageKey(s.Token()))
	}
	sk := func(args ...string) result { return cli(t, "", append([]string{"-store", mc}, args...)...) }

	require.Equal(t, result{0, "3\n", ""}, sk("count"))
	r := sk("ls")
	require.Equal(t, 0, r.code, r.errOut)
	require.Equal(t, 4, strings.Count(r.out, "\n"), r.out)
	require.Contains(t, r.out, sessionkit.KeyLogID(keys[1]))
	r = sk("show", sessionkit.KeyLogID(keys[1]))
	require.Equal(t, 0, r.code, r.errOut)
	require.Contains(t, r.out, `"n": 1`)
	r = sk("revoke", sessionkit.KeyLogID(keys[1]))
	require.Equal(t, result{0, "revoked session with log ID " + sessionkit.KeyLogID(keys[1]) + " (bound to no user)\n", ""}, r)
	require.Equal(t, result{0, "2\n", ""}, sk("count"))

	for _, args := range [][]string{{"ls", "-user", "ana"}, {"revoke", "-user", "ana"}} {
		r = sk(args...)
		require.Equal(t, 1, r.code, "%q", args)
		require.Equal(t, "sessionkit: "+args[0]+": the memcached store ("+mc+") cannot index sessions by user: "+
			"it does not implement sessionkit.Users (docs/backends.md says why)\n", r.errOut)
	}
	require.Equal(t, result{0, "revoked 2 sessions under the prefix \"session:\"\n", ""}, sk("revoke", "-all", "-yes"))
	require.Equal(t, result{0, "0\n", ""}, sk("count"))
}

func freePort(t *testing.T) string { return strconv.Itoa(testserver.FreePort(t)) }

// TestTheBinaryAgainstRealRedis builds the command and runs it as an
// operator would, against a real redis-server: exit codes, stdin and the
// store shared with the service.
func TestTheBinaryAgainstRealRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	b := urlBackend("redis://" + testserver.Redis(t).Addr + "/0")
	s := seed(t, b)
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command builds the binary under test")
	bin := filepath.Join(t.TempDir(), "sessionkit")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	sk := func(stdin string, args ...string) result {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), "SESSIONKIT_STORE="+b.url)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return result{code, stdout.String(), stderr.String()}
	}
	require.Equal(t, result{0, "6\n", ""}, sk("", "-prefix", "app:", "count"))
	require.Equal(t, 2, sk("", "count", "-nope").code)
	r := sk("no\n", "-prefix", "app:", "revoke", "-all")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.errOut, "nothing revoked")
	r = sk("", "-prefix", "app:", "revoke", "-user", "ana", "-except", s.ids["ana-tablet"])
	require.Equal(t, result{0, `revoked 2 sessions of user "ana", kept ` + s.ids["ana-tablet"] + "\n", ""}, r)
	r = sk("yes\n", "-prefix", "app:", "revoke", "-all")
	require.Equal(t, 0, r.code, r.errOut)
	require.Contains(t, r.out, "revoked 4 sessions")
	require.Equal(t, map[string]bool{"ana-tablet": false, "bob-2": false, "other": true}, live(t, b, s, "ana-tablet", "bob-2", "other"))
}

// TestAStoreWithoutTheOptionalInterfaces: a store that is only a
// sessionkit.Store names what it lacks, for each command.
func TestAStoreWithoutTheOptionalInterfaces(t *testing.T) {
	bare := struct{ sessionkit.Store }{memory.New(nil)}
	old := openStore
	openStore = func(string) (sessionkit.Store, io.Closer, error) { return bare, io.NopCloser(nil), nil }
	t.Cleanup(func() { openStore = old })
	for args, says := range map[string]string{
		"count":            "cannot count its sessions: it implements neither sessionkit.Counter nor sessionkit.Scanner",
		"ls":               "cannot list its sessions: it does not implement sessionkit.Scanner",
		"ls -user ana":     "cannot index sessions by user: it does not implement sessionkit.Users",
		"show x":           "cannot list its sessions: it does not implement sessionkit.Scanner",
		"revoke x":         "cannot list its sessions: it does not implement sessionkit.Scanner",
		"revoke -user ana": "cannot index sessions by user: it does not implement sessionkit.Users",
		"revoke -all -yes": "cannot list its sessions: it does not implement sessionkit.Scanner",
	} {
		a := strings.Fields(args)
		r := cli(t, "", append([]string{"-store", "memory://"}, a...)...)
		require.Equal(t, 1, r.code, args)
		require.Equal(t, "sessionkit: "+a[0]+": the memory store (memory://) "+says+" (docs/backends.md says why)\n", r.errOut, args)
	}
}

// TestAnInterruptDuringTheQuestionRevokesNothing: revoke -all waiting for
// an answer stops at once when the command is interrupted (its context
// ends), and the question does not count against -timeout.
func TestAnInterruptDuringTheQuestionRevokesNothing(t *testing.T) {
	b := memoryBackend(t)
	b.with(t, func(m *sessionkit.Manager) {
		require.NoError(t, m.NewSession().Set(t.Context(), "a", 1))
	})
	stdin, answer := io.Pipe()
	t.Cleanup(func() { answer.Close() })

	ctx, interrupt := context.WithCancel(t.Context())
	var out bytes.Buffer
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-store", "memory://", "-prefix", "app:", "revoke", "-all"}, stdin, &out, &errOut)
	}()
	for start := time.Now(); !strings.Contains(errOut.String(), "Type yes to go on"); {
		require.Less(t, time.Since(start), 10*time.Second, "the question never came")
		time.Sleep(time.Millisecond) // polling for the question, not hoping
	}
	interrupt()
	select {
	case code := <-done:
		require.Equal(t, 1, code)
		require.Contains(t, errOut.String(), "no answer: nothing revoked: context canceled")
	case <-time.After(5 * time.Second):
		t.Fatal("the command kept waiting for an answer after the interrupt")
	}

	// An answer after longer than -timeout still revokes. (A new pipe:
	// the reader of the interrupted run is still waiting on the first.)
	answer.Close()
	stdin, answer = io.Pipe()
	go func() {
		time.Sleep(300 * time.Millisecond)
		answer.Write([]byte("yes\n"))
	}()
	r := result{}
	out.Reset()
	var errOut2 bytes.Buffer
	r.code = run(t.Context(), []string{"-store", "memory://", "-prefix", "app:", "-timeout", "200ms", "revoke", "-all"}, stdin, &out, &errOut2)
	require.Equal(t, 0, r.code, errOut2.String())
	require.Equal(t, `revoked 1 session under the prefix "app:"`+"\n", out.String())
}

// Public IDs are base64url: one in 64 starts with "-", and must still be
// taken as the ID it is, not as an unknown flag.
func TestAPublicIDThatStartsWithADashIsAnArgument(t *testing.T) {
	b := memoryBackend(t)
	var id string
	b.with(t, func(m *sessionkit.Manager) {
		for i := 0; id == "" && i < 5000; i++ {
			tok, err := m.Bind(t.Context(), "", "dash", sessionkit.Client{})
			require.NoError(t, err)
			info, err := m.Store().(sessionkit.Users).Info(t.Context(), m.StorageKey(tok))
			require.NoError(t, err)
			if strings.HasPrefix(info.ID, "-") {
				id = info.ID
			}
		}
	})
	require.NotEmpty(t, id, "no ID starting with a dash in 5000 tries")
	r := cli(t, "", "-store", "memory://", "-prefix", "app:", "show", "-meta", id)
	require.Equal(t, 0, r.code, r.errOut)
	require.Contains(t, r.out, id)
	r = cli(t, "", "-store", "memory://", "-prefix", "app:", "revoke", id)
	require.Equal(t, 0, r.code, r.errOut)
	r = cli(t, "", "-store", "memory://", "-prefix", "app:", "revoke", "-user", "dash", "-except", id)
	require.Equal(t, 1, r.code, "the excepted ID is gone now: %s", r.out)
	r = cli(t, "", "-store", "memory://", "-prefix", "app:", "revoke", "-bogus")
	require.Equal(t, 2, r.code, "an unknown flag that is not ID-shaped is still a usage error")
}

// syncBuffer is a bytes.Buffer that a test may read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTheCommandLiftsTheClientTimeouts: the URL's client timeouts, sized
// for a web request, become -timeout where the URL leaves them out; one the
// URL sets stays; a store without any is opened as given.
func TestTheCommandLiftsTheClientTimeouts(t *testing.T) {
	for _, c := range []struct{ url, opens string }{
		{"redis://:hunter2@127.0.0.1:6379/0", "redis://:hunter2@127.0.0.1:6379/0?read_timeout=5m0s&write_timeout=5m0s"},
		{"redis://127.0.0.1:6379/0?", "redis://127.0.0.1:6379/0?read_timeout=5m0s&write_timeout=5m0s"},
		{"REDISS://h:1/0?pool_size=3", "REDISS://h:1/0?pool_size=3&read_timeout=5m0s&write_timeout=5m0s"},
		{"redis://h:1/0?read_timeout=1s", "redis://h:1/0?read_timeout=1s&write_timeout=5m0s"},
		{"redis://h:1/0?write_timeout=2s&read_timeout=", "redis://h:1/0?write_timeout=2s&read_timeout="},
		{"redis://h:1/0#frag", "redis://h:1/0?read_timeout=5m0s&write_timeout=5m0s#frag"},
		{"redis+cluster://h:1?addr=h:2", "redis+cluster://h:1?addr=h:2&read_timeout=5m0s&write_timeout=5m0s"},
		{"memcached://h:1,h:2", "memcached://h:1,h:2?timeout=5m0s"},
		{"memcached://h:1?timeout=1s", "memcached://h:1?timeout=1s"},
		{"postgres://u:hunter2@h:5432/db?sslmode=disable", "postgres://u:hunter2@h:5432/db?sslmode=disable&timeout=5m0s"},
		{"postgresql://h/db?timeout=0", "postgresql://h/db?timeout=0"},
		{"bbolt:///var/lib/app/sessions.db", "bbolt:///var/lib/app/sessions.db"},
		{"memory://", "memory://"},
		{"redis://h:1/0?%zz", "redis://h:1/0?%zz"}, // storeurl says what is wrong
		{"nosuch://h", "nosuch://h"},
	} {
		require.Equal(t, c.opens, withClientTimeouts(c.url, 5*time.Minute), c.url)
	}

	// What storeurl makes of them: the names are its own, and take effect.
	open := func(u string) io.Closer {
		t.Helper()
		_, closer, err := storeurl.Open(withClientTimeouts(u, 5*time.Minute))
		require.NoError(t, err, u)
		t.Cleanup(func() { closer.Close() })
		return closer
	}
	o := open("redis://127.0.0.1:1/0").(*redis.Client).Options()
	require.Equal(t, []time.Duration{5 * time.Minute, 5 * time.Minute}, []time.Duration{o.ReadTimeout, o.WriteTimeout})
	require.Equal(t, 200*time.Millisecond, o.DialTimeout, "a dead server still fails at once")
	o = open("redis://127.0.0.1:1/0?read_timeout=2s").(*redis.Client).Options()
	require.Equal(t, []time.Duration{2 * time.Second, 5 * time.Minute}, []time.Duration{o.ReadTimeout, o.WriteTimeout})
	co := open("redis+cluster://127.0.0.1:1?addr=127.0.0.1:2").(*redis.ClusterClient).Options()
	require.Equal(t, []time.Duration{5 * time.Minute, 5 * time.Minute}, []time.Duration{co.ReadTimeout, co.WriteTimeout})
	require.Equal(t, 5*time.Minute, open("memcached://127.0.0.1:1").(*memcache.Client).Timeout)
	require.Equal(t, time.Second, open("memcached://127.0.0.1:1?timeout=1s").(*memcache.Client).Timeout)
	open("postgres://u:pw@127.0.0.1:1/db?sslmode=disable")

	// The command opens the lifted URL, and names the operator's, with its
	// password masked, in every message.
	var opened []string
	old := openStore
	openStore = func(u string) (sessionkit.Store, io.Closer, error) {
		opened = append(opened, u)
		return old(u)
	}
	t.Cleanup(func() { openStore = old })
	port := freePort(t)
	r := cli(t, "", "-store", "redis://:hunter2@127.0.0.1:"+port+"/0", "-timeout", "90s", "count")
	require.Equal(t, 1, r.code)
	require.Equal(t, []string{"redis://:hunter2@127.0.0.1:" + port + "/0?read_timeout=1m30s&write_timeout=1m30s"}, opened)
	require.Contains(t, r.errOut, "session store redis://:xxxxx@127.0.0.1:"+port+"/0 does not answer")
	require.NotContains(t, r.errOut, "hunter2")
	require.NotContains(t, r.errOut, "read_timeout")
	opened = nil
	r = cli(t, "", "-store", "redis://:hunter2@127.0.0.1:"+port+"/0?read_timeout=1s", "count")
	require.Equal(t, 1, r.code)
	require.Equal(t, []string{"redis://:hunter2@127.0.0.1:" + port + "/0?read_timeout=1s&write_timeout=1m0s"}, opened)
	r = cli(t, "", "-store", "redis://:hunter2@127.0.0.1:"+port+"/0?bogus=1", "count")
	require.Equal(t, 2, r.code, r.errOut)
	require.Contains(t, r.errOut, "bad store URL redis://:xxxxx@127.0.0.1:"+port+"/0?bogus=1: ")
	require.NotContains(t, r.errOut, "hunter2")
	require.NotContains(t, r.errOut, "read_timeout")
	r = cli(t, "", "-store", "postgres://u:hunter2@127.0.0.1:"+port+"/db?sslmode=bogus", "count")
	require.Equal(t, 2, r.code, r.errOut)
	require.NotContains(t, r.errOut, "hunter2")
	require.NotContains(t, r.errOut, "timeout=1m0s")
}

// TestEverySchemeHasItsClientTimeouts: a scheme storeurl gains must be
// sorted here, or the command would keep its client's short timeouts.
func TestEverySchemeHasItsClientTimeouts(t *testing.T) {
	none := map[string]bool{"bbolt": true, "memory": true}
	for _, s := range storeurl.Schemes() {
		require.True(t, len(clientTimeouts[s]) > 0 != none[s],
			"scheme %s: list its client timeout parameters in clientTimeouts, or say it has none", s)
	}
}

// TestALongRevokeOutlastsTheURLsReadTimeout: on a real redis-server, the
// revoke of a user's many sessions (one script that runs for longer than
// the URL's default 300 ms read timeout) succeeds with a plain redis:// URL
// and a generous -timeout, rather than failing with an i/o timeout while
// Redis does the work.
func TestALongRevokeOutlastsTheURLsReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("binds 30,000 sessions")
	}
	const sessions = 30000
	srv := testserver.Redis(t)
	url := "redis://" + srv.Addr + "/0"
	// The seeding client waits for as long as it takes, many at a time.
	store, closer, err := storeurl.Open(url + "?pool_size=32&pool_timeout=30s&read_timeout=30s&write_timeout=30s")
	require.NoError(t, err)
	defer closer.Close()
	m, err := sessionkit.New(&sessionkit.Options{Store: store, KeyPrefix: "app:"})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < sessions; i += 32 {
				if _, err := m.Bind(t.Context(), "", "big3", sessionkit.Client{Device: "d"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	n, err := m.Count(t.Context())
	require.NoError(t, err)
	require.Equal(t, sessions, n)

	// The command reaches Redis through a link that holds each reply for
	// 400 ms: past the default read timeout whatever the speed of this
	// machine (here the script alone may take less than 300 ms).
	slow := "redis://" + slowLink(t, srv.Addr, 400*time.Millisecond) + "/0"
	start := time.Now()
	r := cli(t, "", "-store", slow, "-prefix", "app:", "-timeout", "5m", "revoke", "-user", "big3")
	took := time.Since(start)
	require.Equal(t, result{0, `revoked 30000 sessions of user "big3"` + "\n", ""}, r)
	t.Logf("revoke -user of %d sessions took %v", sessions, took)
	n, err = m.Count(t.Context())
	require.NoError(t, err)
	require.Zero(t, n)
}

// slowLink forwards TCP connections to addr, holding each chunk of the
// server's replies for delay, and returns its own address.
func slowLink(t *testing.T, addr string, delay time.Duration) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// An application that keys its user hashes (Options.UserHashKey) is read
// with the same key, from the environment.
func TestTheUserHashKeyComesFromTheEnvironment(t *testing.T) {
	store := memory.New(nil)
	old := openStore
	openStore = func(url string) (sessionkit.Store, io.Closer, error) { return store, io.NopCloser(nil), nil }
	t.Cleanup(func() { openStore = old })
	m, err := sessionkit.New(&sessionkit.Options{Store: store, UserHashKey: []byte("app secret")})
	require.NoError(t, err)
	_, err = m.Bind(t.Context(), "", "ana", sessionkit.Client{Device: "Phone"})
	require.NoError(t, err)

	t.Setenv("SESSIONKIT_USER_HASH_KEY", "")
	r := cli(t, "", "-store", "memory://", "ls", "-user", "ana")
	require.Equal(t, 0, r.code, r.errOut)
	require.NotContains(t, r.out, "Phone", "without the key, the user's index is another one")

	t.Setenv("SESSIONKIT_USER_HASH_KEY", "app secret")
	r = cli(t, "", "-store", "memory://", "ls", "-user", "ana")
	require.Equal(t, 0, r.code, r.errOut)
	require.Contains(t, r.out, "Phone")
	r = cli(t, "", "-store", "memory://", "revoke", "-user", "ana")
	require.Equal(t, 0, r.code, r.errOut)
	require.Contains(t, r.out, "revoked 1 session")
}
