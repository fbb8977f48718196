package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func (c *client) sessions(a *app) []sessionkit.UserSession {
	c.t.Helper()
	code, body := c.get(a, "/sessions")
	require.Equal(c.t, http.StatusOK, code, body)
	var l []sessionkit.UserSession
	require.NoError(c.t, json.Unmarshal([]byte(body), &l), body)
	return l
}

func (c *client) login(a *app, user string) {
	c.t.Helper()
	code, body := c.get(a, "/login?user="+user)
	require.Equal(c.t, http.StatusOK, code, body)
	require.Equal(c.t, "welcome "+user+"\n", body)
}

// current returns the entry marked current, and the others.
func current(t *testing.T, l []sessionkit.UserSession) (sessionkit.UserSession, []sessionkit.UserSession) {
	t.Helper()
	var cur []sessionkit.UserSession
	var others []sessionkit.UserSession
	for _, e := range l {
		if e.Current {
			cur = append(cur, e)
		} else {
			others = append(others, e)
		}
	}
	require.Len(t, cur, 1, "exactly one session is current: %+v", l)
	return cur[0], others
}

func userStores() map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"redis":  func(t *testing.T) string { return "redis://" + testserver.Redis(t).Addr + "/0" },
		"bbolt":  func(t *testing.T) string { return "bbolt://" + filepath.Join(t.TempDir(), "sessions.db") },
		"memory": func(t *testing.T) string { return "memory://" },
		"postgres": func(t *testing.T) string {
			// A long timeout: the first request creates the tables, which
			// a loaded machine under -race can take over a second to do.
			return testserver.Postgres(t).URL + "&table_prefix=userswalk_&timeout=20s"
		},
	}
}

// requireUsers checks that the store of a keeps a user index.
func requireUsers(t *testing.T, a *app) {
	require.Implements(t, (*sessionkit.Users)(nil), a.m.Store())
}

// TestTwoDevicesListAndRevokeEachOther logs one user in from two devices
// and another user from a third: each device lists the user's two
// sessions with its own marked current, one ends the other, and no one
// can end a session that is not theirs.
func TestTwoDevicesListAndRevokeEachOther(t *testing.T) {
	for name, storeURL := range userStores() {
		t.Run(name, func(t *testing.T) {
			a := startApp(t, "127.0.0.1:0", storeURL(t), time.Minute)
			requireUsers(t, a)
			phone, laptop, bob, stranger := newClient(t), newClient(t), newClient(t), newClient(t)
			phone.ua, laptop.ua, bob.ua = "Phone/1.0", "Laptop/2.0", "Bob/3.0"

			code, body := stranger.get(a, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code, body)
			code, _ = phone.get(a, "/set?key=cart&value=3") // a session bound to no one yet
			require.Equal(t, http.StatusOK, code)
			code, _ = phone.get(a, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code, "a session bound to no user")

			phone.login(a, "ana")
			require.Equal(t, map[string]any{"cart": "3", "user": "ana"}, phone.session(a), "the login keeps the data")
			laptop.login(a, "ana")
			bob.login(a, "bob")

			fromPhone := phone.sessions(a)
			require.Len(t, fromPhone, 2)
			me, others := current(t, fromPhone)
			require.Equal(t, "Phone/1.0", me.Device)
			require.Equal(t, "Laptop/2.0", others[0].Device)
			require.Empty(t, me.IP, "no IP unless RecordIP")
			require.False(t, me.Created.IsZero())
			require.True(t, me.Expires.After(time.Now()), "%v", me.Expires)
			require.NotContains(t, []string{phone.token(a), phone.token(a)[5:]}, me.ID, "the public ID is not the token")

			fromLaptop := laptop.sessions(a)
			meL, othersL := current(t, fromLaptop)
			require.Equal(t, others[0].ID, meL.ID, "the same sessions, seen from the other device")
			require.Equal(t, me.ID, othersL[0].ID)
			require.Len(t, bob.sessions(a), 1, "bob sees his own only")

			// Bob cannot end ana's session, nor can someone logged out.
			code, body = bob.do(a, http.MethodPost, "/sessions/revoke?id="+meL.ID)
			require.Equal(t, http.StatusNotFound, code, body)
			code, _ = stranger.do(a, http.MethodPost, "/sessions/revoke?id="+meL.ID)
			require.Equal(t, http.StatusUnauthorized, code)
			code, _ = phone.do(a, http.MethodPost, "/sessions/revoke")
			require.Equal(t, http.StatusBadRequest, code)
			code, _ = phone.get(a, "/sessions/revoke?id="+meL.ID)
			require.Equal(t, http.StatusMethodNotAllowed, code, "revoking takes a POST")
			require.Len(t, laptop.sessions(a), 2)

			// The phone ends the laptop's session: the laptop is logged out.
			code, body = phone.do(a, http.MethodPost, "/sessions/revoke?id="+meL.ID)
			require.Equal(t, http.StatusOK, code, body)
			require.Equal(t, "revoked\n", body)
			code, _ = laptop.get(a, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code)
			require.Equal(t, map[string]any{}, laptop.session(a))
			left := phone.sessions(a)
			require.Len(t, left, 1)
			require.True(t, left[0].Current)
			code, _ = phone.do(a, http.MethodPost, "/sessions/revoke?id="+meL.ID)
			require.Equal(t, http.StatusNotFound, code, "gone already")

			// The laptop logs in again and ends every other session.
			laptop.login(a, "ana")
			require.Len(t, laptop.sessions(a), 2)
			code, body = laptop.do(a, http.MethodPost, "/sessions/revoke-others")
			require.Equal(t, http.StatusOK, code, body)
			require.Equal(t, "revoked 1\n", body)
			code, _ = phone.get(a, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code)
			require.Len(t, laptop.sessions(a), 1)
			require.Len(t, bob.sessions(a), 1, "bob's session is untouched")

			// Logout ends the session and takes it off the list.
			code, _ = bob.get(a, "/logout")
			require.Equal(t, http.StatusOK, code)
			code, _ = bob.get(a, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code)
			bob.login(a, "bob")
			require.Len(t, bob.sessions(a), 1, "the logged-out session is not listed")

			// A user ID the index cannot keep is the client's mistake.
			code, body = stranger.get(a, "/login?user=a%0Ab")
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, body, "invalid user ID")
		})
	}
}

// TestTheCapPerUser runs the example with a cap of two sessions per user:
// by default the oldest session ends at the third login; with
// -refuse-over-cap the third login is refused and nothing changes.
func TestTheCapPerUser(t *testing.T) {
	for name, storeURL := range userStores() {
		t.Run(name, func(t *testing.T) {
			url := storeURL(t)
			evict := startAppWith(t, "127.0.0.1:0", url, sessionkit.Options{MaxSessionsPerUser: 2, KeyPrefix: "evict:"})
			requireUsers(t, evict)
			c1, c2, c3 := newClient(t), newClient(t), newClient(t)
			c1.login(evict, "ana")
			c2.login(evict, "ana")
			c3.login(evict, "ana")
			code, _ := c1.get(evict, "/sessions")
			require.Equal(t, http.StatusUnauthorized, code, "the oldest session ended")
			require.Len(t, c3.sessions(evict), 2)
			require.Len(t, c2.sessions(evict), 2)
			evict.stop() // a bbolt file belongs to one store at a time

			refuse := startAppWith(t, "127.0.0.1:0", url, sessionkit.Options{MaxSessionsPerUser: 2, OverCap: sessionkit.RefuseLogin, KeyPrefix: "refuse:"})
			c1, c2, c3 = newClient(t), newClient(t), newClient(t)
			c1.login(refuse, "ana")
			c2.login(refuse, "ana")
			code, _ = c3.get(refuse, "/set?key=cart&value=1")
			require.Equal(t, http.StatusOK, code)
			code, body := c3.get(refuse, "/login?user=ana")
			require.Equal(t, http.StatusConflict, code, body)
			require.Contains(t, body, "too many sessions")
			require.Equal(t, map[string]any{"cart": "1"}, c3.session(refuse), "the refused login left the session as it was")
			require.Len(t, c1.sessions(refuse), 2)
		})
	}
}

// TestUserRoutesOnAStoreWithoutAnIndex: on memcached, which keeps no user
// index, /login still logs in (it renews the token) and the /sessions
// routes answer 501.
func TestUserRoutesOnAStoreWithoutAnIndex(t *testing.T) {
	a := startApp(t, "127.0.0.1:0", "memcached://"+testserver.Memcached(t).Addr, time.Minute)
	c := newClient(t)
	code, _ := c.get(a, "/set?key=cart&value=3")
	require.Equal(t, http.StatusOK, code)
	before := c.token(a)
	c.login(a, "ana")
	require.NotEqual(t, before, c.token(a), "the login renewed the token")
	require.Equal(t, map[string]any{"cart": "3", "user": "ana"}, c.session(a))
	code, body := c.get(a, "/sessions")
	require.Equal(t, http.StatusNotImplemented, code, body)
	code, _ = c.do(a, http.MethodPost, "/sessions/revoke?id=x")
	require.Equal(t, http.StatusNotImplemented, code)
}
