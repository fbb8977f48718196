package sessionkit_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// countingStore counts the calls that reach the store, and can be told to fail.
type countingStore struct {
	sessionkit.Store
	calls atomic.Int64
	fail  error
}

func (c *countingStore) count() error {
	c.calls.Add(1)
	return c.fail
}

func (c *countingStore) Create(ctx context.Context, k string, f []sessionkit.Field, e sessionkit.Expiry) error {
	if err := c.count(); err != nil {
		return err
	}
	return c.Store.Create(ctx, k, f, e)
}

func (c *countingStore) Get(ctx context.Context, k string, n ...string) ([][]byte, error) {
	if err := c.count(); err != nil {
		return nil, err
	}
	return c.Store.Get(ctx, k, n...)
}

func (c *countingStore) GetAll(ctx context.Context, k string) (map[string][]byte, error) {
	if err := c.count(); err != nil {
		return nil, err
	}
	return c.Store.GetAll(ctx, k)
}

func (c *countingStore) Set(ctx context.Context, k string, f []sessionkit.Field, max int) error {
	if err := c.count(); err != nil {
		return err
	}
	return c.Store.Set(ctx, k, f, max)
}

func (c *countingStore) Rename(ctx context.Context, o, n string) error {
	if err := c.count(); err != nil {
		return err
	}
	return c.Store.Rename(ctx, o, n)
}

func (c *countingStore) Destroy(ctx context.Context, k string) error {
	if err := c.count(); err != nil {
		return err
	}
	return c.Store.Destroy(ctx, k)
}

var keyN = sessionkit.NewKey[string]("n")

type fixture struct {
	t     *testing.T
	clock *adaptertest.Clock
	mem   *memory.Store
	store *countingStore
	m     *sessionkit.Manager
}

func newFixture(t *testing.T, opts sessionkit.Options) *fixture {
	clock := adaptertest.NewClock()
	mem := memory.New(&memory.Options{Clock: clock.Now})
	f := &fixture{t: t, clock: clock, mem: mem, store: &countingStore{Store: mem}}
	opts.Store, opts.Clock = f.store, clock.Now
	m, err := sessionkit.New(&opts)
	require.NoError(t, err)
	f.m = m
	return f
}

// ttl reads the memory store's expiry of key without refreshing it.
func (f *fixture) ttl(key string) (time.Duration, bool) {
	ttl, ok, err := testhook.Of(f.mem).TTL(f.t.Context(), key)
	require.NoError(f.t, err)
	return ttl, ok
}

// app is a small application: /none ignores its session, /get reads "n",
// /set writes it, /renew logs in, /del logs out.
func (f *fixture) app() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/none", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		v, _, err := keyN.Get(r.Context(), f.m.Session(r.Context()))
		if err != nil {
			f.m.HTTPError(w, r, err)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		if err := f.m.Session(r.Context()).Set(r.Context(), "n", r.URL.Query().Get("v")); err != nil {
			f.m.HTTPError(w, r, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := f.m.Session(r.Context())
		if err := s.Renew(r.Context()); err != nil {
			f.m.HTTPError(w, r, err)
			return
		}
		if err := s.Set(r.Context(), "user", "ana"); err != nil {
			f.m.HTTPError(w, r, err)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/remember", func(w http.ResponseWriter, r *http.Request) {
		s := f.m.Session(r.Context())
		err := s.SetExpiry(r.Context(), sessionkit.Expiry{Idle: 7 * 24 * time.Hour, Absolute: 30 * 24 * time.Hour})
		if err == nil {
			err = s.Set(r.Context(), "remember", true)
		}
		if err != nil {
			f.m.HTTPError(w, r, err)
		}
	})
	mux.HandleFunc("/del", func(w http.ResponseWriter, r *http.Request) {
		if err := f.m.Session(r.Context()).Destroy(r.Context()); err != nil {
			f.m.HTTPError(w, r, err)
			return
		}
		io.WriteString(w, "ok")
	})
	return f.m.Middleware(mux)
}

// do serves one request carrying cookie (if not empty) and returns the response.
func (f *fixture) do(path, cookie string) *http.Response {
	r := httptest.NewRequest("GET", path, nil)
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: cookie})
	}
	w := httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	return w.Result()
}

func sessionCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == sessionkit.DefaultCookieName {
			return c
		}
	}
	return nil
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

func TestRequestThatIgnoresItsSessionMakesNoStoreCall(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	f.store.calls.Store(0)
	for _, cookie := range []string{"", token, "malformed"} {
		res := f.do("/none", cookie)
		require.Equal(t, "hi", body(t, res))
		require.Nil(t, sessionCookie(t, res), "no cookie on a response that did not use the session")
	}
	require.Zero(t, f.store.calls.Load(), "store calls for requests that never touched their session")
}

func TestAnonymousReadCreatesNothing(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	unknown := f.m.NewSession().Token()
	expired := sessionCookie(t, f.do("/set?v=1", "")).Value
	f.clock.Advance(sessionkit.DefaultIdleTimeout)
	f.store.calls.Store(0)

	for name, cookie := range map[string]string{"none": "", "malformed": "not-a-token", "unknown": unknown, "expired": expired} {
		res := f.do("/get", cookie)
		require.Equal(t, http.StatusOK, res.StatusCode, name)
		require.Empty(t, body(t, res), name)
		if c := sessionCookie(t, res); c != nil {
			require.Equal(t, -1, c.MaxAge, "%s: the only cookie sent is a deletion of the stale one", name)
			require.Contains(t, []string{"unknown", "expired"}, name)
		}
	}
	n, err := f.mem.Count(t.Context(), "")
	require.NoError(t, err)
	require.Zero(t, n, "sessions created by anonymous reads")
	require.Equal(t, int64(2), f.store.calls.Load(), "only the unknown and expired tokens reach the store (one Get each)")
}

func TestWriteCreatesTheSessionAndSetsASecureByDefaultCookie(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	res := f.do("/set?v=hello", "")
	c := sessionCookie(t, res)
	require.NotNil(t, c)
	require.Regexp(t, `^[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{43}(\.[0-9a-z]{1,10}){3}$`, c.Value, "a stored session's token carries its policy")
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)
	require.Equal(t, "/", c.Path)
	require.False(t, c.Secure, "plain HTTP, Secure not forced")
	require.Zero(t, c.MaxAge, "a browser-session cookie by default")
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	require.Contains(t, res.Header.Values("Vary"), "Cookie")

	res = f.do("/get", c.Value)
	require.Equal(t, "hello", body(t, res))
	require.Nil(t, sessionCookie(t, res), "a read does not resend a browser-session cookie")
	require.Contains(t, res.Header.Values("Vary"), "Cookie")
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"), "a response built from session data is never cached")

	res = f.do("/none", c.Value)
	require.Empty(t, res.Header.Get("Cache-Control"), "a response that never used its session stays cacheable")
}

func TestCookieIsSecureUnderTLSAndConfigurable(t *testing.T) {
	f := newFixture(t, sessionkit.Options{Cookie: sessionkit.CookieOptions{
		Name: "sid", Domain: "example.com", Path: "/app", SameSite: http.SameSiteStrictMode, Partitioned: true,
	}})
	r := httptest.NewRequest("GET", "/set?v=1", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	raw := w.Result().Header.Get("Set-Cookie")
	for _, attr := range []string{"sid=", "Path=/app", "Domain=example.com", "HttpOnly", "Secure", "SameSite=Strict", "Partitioned"} {
		require.Contains(t, raw, attr)
	}

	_, err := sessionkit.New(&sessionkit.Options{Store: f.mem, Cookie: sessionkit.CookieOptions{Name: "bad name;"}})
	require.Error(t, err, "an invalid cookie name is refused at start-up, not dropped silently")
}

func TestPersistentCookieSlidesOnlyWhenTheSessionIsUsed(t *testing.T) {
	f := newFixture(t, sessionkit.Options{IdleTimeout: time.Hour, Cookie: sessionkit.CookieOptions{Persist: true}})
	c := sessionCookie(t, f.do("/set?v=1", ""))
	require.Equal(t, 3600, c.MaxAge)
	refreshed := sessionCookie(t, f.do("/get", c.Value))
	require.NotNil(t, refreshed, "a request that used the session slid its idle timeout: the cookie follows")
	require.Equal(t, c.Value, refreshed.Value)
	require.Equal(t, 3600, refreshed.MaxAge)
	require.Nil(t, sessionCookie(t, f.do("/none", c.Value)), "nothing changed, nothing sent")
}

func TestRememberMeGivesThatSessionAPersistentCookie(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	c := sessionCookie(t, f.do("/remember", ""))
	require.Equal(t, 30*24*3600, c.MaxAge)
	key := f.m.StorageKey(c.Value)
	ttl, ok := f.ttl(key)
	require.True(t, ok)
	require.Equal(t, 7*24*time.Hour, ttl, "the store holds the session's own idle timeout")
}

func TestDestroyExpiresTheCookie(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	res := f.do("/del", token)
	c := sessionCookie(t, res)
	require.NotNil(t, c)
	require.Empty(t, c.Value)
	require.Equal(t, -1, c.MaxAge)
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	_, ok := f.ttl(f.m.StorageKey(token))
	require.False(t, ok)
}

func TestLoginRenewKillsTheOldToken(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	old := sessionCookie(t, f.do("/set?v=cart", "")).Value
	c := sessionCookie(t, f.do("/login", old))
	require.NotNil(t, c)
	require.NotEqual(t, old, c.Value)
	require.Equal(t, "cart", body(t, f.do("/get", c.Value)), "the data moved to the new token")

	res := f.do("/get", old)
	require.Equal(t, http.StatusConflict, res.StatusCode, "the old token reads nothing: it was renewed")
	require.Nil(t, sessionCookie(t, res), "a request on a renewed token neither deletes nor replaces the client's cookie")
	res = f.do("/set?v=mallory", old)
	require.Equal(t, http.StatusConflict, res.StatusCode, "the old token writes nothing")
	require.Nil(t, sessionCookie(t, res))
	require.Equal(t, "cart", body(t, f.do("/get", c.Value)))
}

func TestConcurrentLoginsLeaveOneSessionAndTheLoserSendsNoCookie(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	old := sessionCookie(t, f.do("/set?v=cart", "")).Value
	const n = 8
	res := make([]*http.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() { <-start; res[i] = f.do("/login", old) })
	}
	close(start)
	wg.Wait()
	var winner string
	for _, r := range res {
		c := sessionCookie(t, r)
		if r.StatusCode == http.StatusOK {
			require.Empty(t, winner, "a second login succeeded on one token")
			require.NotNil(t, c)
			winner = c.Value
			continue
		}
		require.Equal(t, http.StatusConflict, r.StatusCode)
		require.Nil(t, c, "the losing login sends no cookie: no deletion of the winner's")
	}
	require.NotEmpty(t, winner)
	n2, err := f.mem.Count(t.Context(), "")
	require.NoError(t, err)
	require.Equal(t, 1, n2, "one live session")
	require.Equal(t, "cart", body(t, f.do("/get", winner)))
}

func TestWritesAfterTheHeadersWentOutAreRefused(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	errs := map[string]error{}
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ctx := f.m.Session(r.Context()), r.Context()
		io.WriteString(w, "body first")
		f.store.calls.Store(0)
		errs["Set"] = s.Set(ctx, "n", "late")
		errs["SetMany"] = s.SetMany(ctx, map[string]any{"n": "late"})
		errs["Delete"] = s.Delete(ctx, "n")
		errs["Clear"] = s.Clear(ctx)
		errs["SetExpiry"] = s.SetExpiry(ctx, sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour})
		errs["Renew"] = s.Renew(ctx)
		errs["Destroy"] = s.Destroy(ctx)
		v, _, err := keyN.Get(ctx, s)
		if err != nil || v != "1" {
			t.Errorf("a read after the headers still works: %q, %v", v, err)
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: token})
	h.ServeHTTP(httptest.NewRecorder(), r)
	for name, err := range errs {
		require.ErrorIs(t, err, sessionkit.ErrHeadersSent, name)
	}
	require.Equal(t, int64(1), f.store.calls.Load(), "only the read reached the store")
	require.Equal(t, "1", body(t, f.do("/get", token)), "the session is unchanged and its token still works")
}

func TestTheFirstCookieThatNamesALiveSessionWins(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	live := sessionCookie(t, f.do("/set?v=mine", "")).Value
	tossed := f.m.NewSession().Token() // well formed, unknown: planted from a sibling subdomain
	r := httptest.NewRequest("GET", "/get", nil)
	r.Header.Set("Cookie", "session="+tossed+"; session="+live)
	w := httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	require.Equal(t, "mine", w.Body.String(), "an unknown cookie before the live one does not hide it")
	require.Nil(t, sessionCookie(t, w.Result()), "no deletion: it would hit the cookie the live session uses")

	r = httptest.NewRequest("GET", "/set?v=changed", nil)
	r.Header.Set("Cookie", "session="+tossed+"; session="+live)
	w = httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	require.Nil(t, sessionCookie(t, w.Result()), "a write to the live session issues no new token")
	require.Equal(t, "changed", body(t, f.do("/get", live)))
	_, ok := f.ttl(f.m.StorageKey(tossed))
	require.False(t, ok, "nothing is created under the tossed token")

	// At most three are tried: a fourth cookie is never reached.
	a, b, c := f.m.NewSession().Token(), f.m.NewSession().Token(), f.m.NewSession().Token()
	f.store.calls.Store(0)
	r = httptest.NewRequest("GET", "/get", nil)
	r.Header.Set("Cookie", "session="+a+"; session="+b+"; session="+c+"; session="+live)
	w = httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	require.Empty(t, w.Body.String())
	require.Equal(t, int64(3), f.store.calls.Load(), "three candidates, one Get each")
	require.Nil(t, sessionCookie(t, w.Result()), "several unknown cookies: no deletion either")
}

// A renewed token is as stale as an unknown one: planted before the live
// cookie (an attacker's own old token, tossed from a sibling subdomain), it
// must not block the live session for the marker's minute.
func TestARenewedCookieBeforeTheLiveOneDoesNotHideIt(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	attacker := sessionCookie(t, f.do("/set?v=attacker", "")).Value
	require.NotNil(t, sessionCookie(t, f.do("/login", attacker)), "the attacker's old token is now a Renew marker")
	victim := sessionCookie(t, f.do("/set?v=victim", "")).Value
	both := func(path string) *http.Response {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Cookie", "session="+attacker+"; session="+victim)
		w := httptest.NewRecorder()
		f.app().ServeHTTP(w, r)
		return w.Result()
	}
	res := both("/get")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "victim", body(t, res))
	require.Nil(t, sessionCookie(t, res), "no cookie sent: the live one stays")
	res = both("/login")
	require.Equal(t, http.StatusOK, res.StatusCode, "the victim can still log in")
	renewed := sessionCookie(t, res)
	require.NotNil(t, renewed)
	require.Equal(t, "victim", body(t, f.do("/get", renewed.Value)))
	require.Equal(t, http.StatusConflict, f.do("/get", attacker).StatusCode, "alone, a renewed token still says so")
}

// A request that lost a race with a Renew must not send its old token back:
// arriving after the login's response, it would overwrite the new cookie.
func TestARequestOnARenewedTokenSendsNoCookie(t *testing.T) {
	f := newFixture(t, sessionkit.Options{Cookie: sessionkit.CookieOptions{Persist: true}})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	for name, late := range map[string]func(ctx context.Context, s *sessionkit.Session) error{
		"a write": func(ctx context.Context, s *sessionkit.Session) error { return s.Set(ctx, "n", "2") },
		"SetExpiry": func(ctx context.Context, s *sessionkit.Session) error {
			return s.SetExpiry(ctx, sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour})
		},
		"a Renew": func(ctx context.Context, s *sessionkit.Session) error { return s.Renew(ctx) },
		"a read":  func(ctx context.Context, s *sessionkit.Session) error { _, _, err := keyN.Get(ctx, s); return err },
	} {
		var lateErr error
		h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := f.m.Session(r.Context())
			_, _, err := keyN.Get(r.Context(), s) // touched: Persist would re-send the cookie
			require.NoError(t, err)
			elsewhere, err := f.m.Load(s.Token())
			require.NoError(t, err)
			require.NoError(t, elsewhere.Renew(r.Context()), "a login in another request")
			token = elsewhere.Token()
			lateErr = late(r.Context(), s)
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: token})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.ErrorIs(t, lateErr, sessionkit.ErrRenewed, name)
		require.Nil(t, sessionCookie(t, w.Result()), "%s: the stale token is not sent back", name)
	}

	// A logout through the stale token still ends the session, and then
	// the cookie is deleted.
	stale := token
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := f.m.Session(r.Context())
		elsewhere, err := f.m.Load(s.Token())
		require.NoError(t, err)
		require.NoError(t, elsewhere.Renew(r.Context()))
		token = elsewhere.Token()
		_, _, err = keyN.Get(r.Context(), s)
		require.ErrorIs(t, err, sessionkit.ErrRenewed)
		require.NoError(t, s.Destroy(r.Context()))
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: stale})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	c := sessionCookie(t, w.Result())
	require.NotNil(t, c, "logout deletes the cookie")
	require.Equal(t, -1, c.MaxAge)
	_, ok := f.ttl(f.m.StorageKey(token))
	require.False(t, ok, "the renewed session is gone too")
}

func TestCookiePrefixesAreEnforced(t *testing.T) {
	f := newFixture(t, sessionkit.Options{Cookie: sessionkit.CookieOptions{Name: "__Host-s"}})
	r := httptest.NewRequest("GET", "/set?v=1", nil) // plain HTTP: the prefix still forces Secure
	w := httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == "__Host-s" {
			c = k
		}
	}
	require.NotNil(t, c)
	require.True(t, c.Secure)
	require.Equal(t, "/", c.Path)
	require.Empty(t, c.Domain)

	f = newFixture(t, sessionkit.Options{Cookie: sessionkit.CookieOptions{Name: "__Secure-s"}})
	w = httptest.NewRecorder()
	f.app().ServeHTTP(w, httptest.NewRequest("GET", "/set?v=1", nil))
	require.Contains(t, w.Header().Get("Set-Cookie"), "; Secure")

	for _, bad := range []sessionkit.CookieOptions{{Name: "__Host-s", Domain: "example.com"}, {Name: "__Host-s", Path: "/app"}} {
		_, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), Cookie: bad})
		require.Error(t, err, "%+v contradicts the __Host- prefix", bad)
	}
}

func TestTwoManagersServeOneRequest(t *testing.T) {
	store := memory.New(nil)
	user, err := sessionkit.New(&sessionkit.Options{Store: store, Cookie: sessionkit.CookieOptions{Name: "user"}})
	require.NoError(t, err)
	admin, err := sessionkit.New(&sessionkit.Options{Store: store, KeyPrefix: "admin:", Cookie: sessionkit.CookieOptions{Name: "admin"}})
	require.NoError(t, err)
	h := user.Middleware(admin.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, user.Session(r.Context()).Set(r.Context(), "who", "user"))
		require.NoError(t, admin.Session(r.Context()).Set(r.Context(), "who", "admin"))
	})))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	cookies := map[string]string{}
	for _, c := range w.Result().Cookies() {
		cookies[c.Name] = c.Value
	}
	require.Len(t, cookies, 2, "each Manager set its own cookie")
	for name, m := range map[string]*sessionkit.Manager{"user": user, "admin": admin} {
		s, err := m.Load(cookies[name])
		require.NoError(t, err)
		who, _, err := sessionkit.NewKey[string]("who").Get(t.Context(), s)
		require.NoError(t, err)
		require.Equal(t, name, who)
	}
}

func TestSessionOutsideTheMiddlewareFailsWithoutPanicking(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	require.NoError(t, err)
	other, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	require.NoError(t, err)
	for name, ctx := range map[string]context.Context{"no middleware": t.Context()} {
		s := m.Session(ctx)
		require.NotNil(t, s, name)
		require.ErrorIs(t, s.Set(ctx, "a", 1), sessionkit.ErrNoSession, name)
		_, _, err := sessionkit.NewKey[string]("a").Get(ctx, s)
		require.ErrorIs(t, err, sessionkit.ErrNoSession, name)
		require.ErrorIs(t, s.Renew(ctx), sessionkit.ErrNoSession, name)
		require.ErrorIs(t, s.Destroy(ctx), sessionkit.ErrNoSession, name)
	}
	// Under another Manager's middleware, m's session is not there either.
	other.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.ErrorIs(t, m.Session(r.Context()).Set(r.Context(), "a", 1), sessionkit.ErrNoSession)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

func TestDefaultErrorHandlerClassifiesAndLogsWithoutTheToken(t *testing.T) {
	var logs strings.Builder
	f := newFixture(t, sessionkit.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: key", sessionkit.ErrInvalidKey), http.StatusBadRequest},
		{sessionkit.ErrTooLarge, http.StatusBadRequest},
		{sessionkit.ErrTooManyFields, http.StatusBadRequest},
		{sessionkit.ErrEncode, http.StatusBadRequest},
		{sessionkit.ErrRenewed, http.StatusConflict},
		{driver.Wrap(context.Background(), "redis", errors.New("i/o timeout")), http.StatusServiceUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable},
		{sessionkit.ErrDecode, http.StatusInternalServerError},
	} {
		h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.m.HTTPError(w, r, c.err) }))
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: token})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(t, c.code, w.Code, "%v", c.err)
		require.NotContains(t, w.Body.String(), token)
	}
	// A cancelled request gets no answer at all: its client is gone.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	w := httptest.NewRecorder()
	f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.m.HTTPError(w, r, r.Context().Err())
	})).ServeHTTP(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	require.Empty(t, w.Body.String())
	require.False(t, w.Flushed)
	require.Equal(t, http.StatusOK, w.Code, "nothing was written (the recorder's default)")

	// A cancellation that is not the request's (the handler's own) is a
	// failure the client must hear of.
	w = httptest.NewRecorder()
	f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		own, cancel := context.WithCancel(r.Context())
		cancel()
		f.m.HTTPError(w, r, own.Err())
	})).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, http.StatusInternalServerError, w.Code)

	require.Contains(t, logs.String(), "session="+sessionkit.LogID(token))
	require.NotContains(t, logs.String(), token)
}

func TestHeaderTransport(t *testing.T) {
	f := newFixture(t, sessionkit.Options{Header: "X-Session-Token"})
	r := httptest.NewRequest("GET", "/set?v=api", nil)
	w := httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	res := w.Result()
	token := res.Header.Get("X-Session-Token")
	require.Regexp(t, `^[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{43}(\.[0-9a-z]{1,10}){3}$`, token)
	require.Empty(t, res.Cookies(), "no cookie with the header transport")
	require.Contains(t, res.Header.Values("Vary"), "X-Session-Token")
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))

	r = httptest.NewRequest("GET", "/get", nil)
	r.Header.Set("X-Session-Token", token)
	r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: f.m.NewSession().Token()})
	w = httptest.NewRecorder()
	f.app().ServeHTTP(w, r)
	require.Equal(t, "api", w.Body.String())
	require.Empty(t, w.Result().Header.Get("X-Session-Token"), "an unchanged token is not sent back")
}

func TestStoreErrorReachesTheHandlerAndTheDefaultAnswerIs503WithoutToken(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	token := sessionCookie(t, f.do("/set?v=1", "")).Value
	f.store.fail = driver.Wrap(context.Background(), "test", errors.New("connection refused"))
	for _, path := range []string{"/get", "/set?v=2", "/del", "/login"} {
		res := f.do(path, token)
		require.Equal(t, http.StatusServiceUnavailable, res.StatusCode, path)
		b := body(t, res)
		require.NotContains(t, b, token, path)
		require.NotContains(t, b, "connection refused", path)
		require.Nil(t, sessionCookie(t, res), "%s: an outage neither replaces nor deletes the client's token", path)
	}
	f.store.fail = nil
	require.Equal(t, "1", body(t, f.do("/get", token)), "the session is intact after the outage")
}

func TestCookieIsWrittenBeforeTheFirstByteOfTheBody(t *testing.T) {
	f := newFixture(t, sessionkit.Options{})
	h := f.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, f.m.Session(r.Context()).Set(r.Context(), "a", 1))
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, strings.Repeat("x", 10))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	require.NotNil(t, sessionCookie(t, res))
}
