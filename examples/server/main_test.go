package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// app is the example server on a real listener, as a process would run it.
type app struct {
	t    *testing.T
	addr string
	m    *sessionkit.Manager
	stop func()
}

// startApp serves the example on addr ("127.0.0.1:0" for any port).
func startApp(t *testing.T, addr, storeURL string, maxAge time.Duration) *app {
	t.Helper()
	return startAppWith(t, addr, storeURL, sessionkit.Options{IdleTimeout: maxAge})
}

func startAppWith(t *testing.T, addr, storeURL string, opts sessionkit.Options) *app {
	t.Helper()
	m, closer, err := newManager(storeURL, opts, nil)
	require.NoError(t, err)
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: newHandler(m, nil)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	a := &app{t: t, addr: l.Addr().String(), m: m}
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			require.NoError(t, srv.Close())
			require.ErrorIs(t, <-done, http.ErrServerClosed)
			require.NoError(t, closer.Close())
		})
	}
	t.Cleanup(a.stop)
	return a
}

// restart stops the server and starts a new one, with a new store client,
// on the same address.
func (a *app) restart(storeURL string, maxAge time.Duration) *app {
	a.stop()
	return startApp(a.t, a.addr, storeURL, maxAge)
}

type client struct {
	t    *testing.T
	http *http.Client
	jar  *cookiejar.Jar
	ua   string // the User-Agent sent, when set
}

func newClient(t *testing.T) *client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &client{t: t, http: &http.Client{Jar: jar, Timeout: 10 * time.Second}, jar: jar}
}

func (c *client) get(a *app, path string) (int, string) {
	c.t.Helper()
	return c.do(a, http.MethodGet, path)
}

func (c *client) do(a *app, method, path string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://"+a.addr+path, nil)
	require.NoError(c.t, err)
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	res, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return res.StatusCode, string(b)
}

func (c *client) session(a *app) map[string]any {
	c.t.Helper()
	code, body := c.get(a, "/get")
	require.Equal(c.t, http.StatusOK, code, body)
	var m map[string]any
	require.NoError(c.t, json.Unmarshal([]byte(body), &m), body)
	return m
}

func (c *client) token(a *app) string {
	c.t.Helper()
	u, err := url.Parse("http://" + a.addr + "/")
	require.NoError(c.t, err)
	for _, ck := range c.jar.Cookies(u) {
		if ck.Name == sessionkit.DefaultCookieName {
			return ck.Value
		}
	}
	c.t.Fatal("the client holds no session cookie")
	return ""
}

// TestSeedWalkOnRealRedis walks the seed's five steps against a real
// redis-server with a real HTTP client and cookie jar.
func TestSeedWalkOnRealRedis(t *testing.T) {
	srv := testserver.Redis(t)
	storeURL := "redis://" + srv.Addr + "/0"
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := t.Context()
	const maxAge = 2 * time.Second

	a := startApp(t, "127.0.0.1:0", storeURL, maxAge)
	c := newClient(t)

	// 1. /set
	code, body := c.get(a, "/set")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	key, _, _ := sessionkit.KeyPolicy(a.m.StorageKey(c.token(a))) // redishash keeps the record under the key without its policy

	// 2. /get shows the value.
	stamp := c.timeStamp(a)

	// 3. After a restart the session comes back from Redis.
	a = a.restart(storeURL, maxAge)
	require.Equal(t, map[string]any{"time": stamp}, c.session(a))

	// 4. A direct HSET shows on /get.
	require.NoError(t, rdb.HSet(ctx, key, "time", "12345").Err())
	require.Equal(t, map[string]any{"time": float64(12345)}, c.session(a))

	// 5. Idle past max-age: the session is gone and nothing is left in Redis.
	deadline := time.Now().Add(maxAge + 3*time.Second)
	for rdb.Exists(ctx, key).Val() == 1 {
		require.True(t, time.Now().Before(deadline), "the session outlived its idle timeout")
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, map[string]any{}, c.session(a))
	require.Zero(t, rdb.DBSize(ctx).Val(), "keys left in Redis")
}

// TestSeedWalkOnEveryScheme walks set, get, restart and idle expiry with
// each store URL the example accepts.
func TestSeedWalkOnEveryScheme(t *testing.T) {
	const maxAge = time.Second
	schemes := map[string]func(t *testing.T) string{
		"redis":     func(t *testing.T) string { return "redis://" + testserver.Redis(t).Addr + "/0" },
		"memcached": func(t *testing.T) string { return "memcached://" + testserver.Memcached(t).Addr },
		"bbolt":     func(t *testing.T) string { return "bbolt://" + filepath.Join(t.TempDir(), "sessions.db") },
		"memory":    func(t *testing.T) string { return "memory://" },
		"postgres": func(t *testing.T) string {
			// The example creates its tables on first use, under their own prefix.
			return testserver.Postgres(t).URL + "&table_prefix=seedwalk_"
		},
	}
	for scheme, storeURL := range schemes {
		t.Run(scheme, func(t *testing.T) {
			url := storeURL(t)
			a := startApp(t, "127.0.0.1:0", url, maxAge)
			c := newClient(t)
			code, _ := c.get(a, "/set")
			require.Equal(t, http.StatusOK, code)
			stamp := c.timeStamp(a)

			a = a.restart(url, maxAge)
			if scheme == "memory" {
				require.Equal(t, map[string]any{}, c.session(a), "memory:// does not survive a restart")
				return
			}
			require.Equal(t, map[string]any{"time": stamp}, c.session(a), "the session survives a restart")

			lastUse := time.Now()
			for time.Since(lastUse) <= maxAge {
				time.Sleep(10 * time.Millisecond) // idle: nothing touches the session
			}
			require.Equal(t, map[string]any{}, c.session(a), "gone after the idle timeout")
		})
	}
}

// TestFiftyConcurrentIncrsAndOneKeyReads: /incr from 50 concurrent
// requests on one session ends at exactly 50, and /get?key= reads one key.
func TestFiftyConcurrentIncrsAndOneKeyReads(t *testing.T) {
	srv := testserver.Redis(t)
	a := startApp(t, "127.0.0.1:0", "redis://"+srv.Addr+"/0", time.Minute)
	c := newClient(t)
	code, body := c.get(a, "/incr")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "1\n", body)
	for _, err := range c.concurrently(a, 49, func(int) string { return "/incr" }) {
		require.NoError(t, err)
	}
	code, body = c.get(a, "/get?key=visits")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "50\n", body)
	code, body = c.get(a, "/get?key=nothing")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "null\n", body)
}

// concurrently sends n GETs of path(i) at once with c's cookies and
// returns an error for each that did not answer 200.
func (c *client) concurrently(a *app, n int, path func(i int) string) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := c.http.Get("http://" + a.addr + path(i))
			if err == nil {
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = errors.New(res.Status)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

func (c *client) timeStamp(a *app) string {
	c.t.Helper()
	got := c.session(a)
	stamp, _ := got["time"].(string)
	require.Regexp(c.t, `^\d{10}$`, stamp, "%v", got)
	return stamp
}

func TestFiftyConcurrentSetsOnOneSessionAllSurvive(t *testing.T) {
	srv := testserver.Redis(t)
	a := startApp(t, "127.0.0.1:0", "redis://"+srv.Addr+"/0", time.Minute)
	c := newClient(t)
	code, _ := c.get(a, "/set")
	require.Equal(t, http.StatusOK, code)

	for _, err := range c.concurrently(a, 50, func(i int) string { return fmt.Sprintf("/set?key=k%d&value=%d", i, i) }) {
		require.NoError(t, err)
	}
	got := c.session(a)
	for i := range 50 {
		require.Equal(t, fmt.Sprint(i), got[fmt.Sprintf("k%d", i)], "k%d", i)
	}
	require.Len(t, got, 51)
}

func TestBadInputGetsAClearErrorAndTheSessionIsUnchanged(t *testing.T) {
	srv := testserver.Redis(t)
	a := startAppWith(t, "127.0.0.1:0", "redis://"+srv.Addr+"/0", sessionkit.Options{MaxFields: 3, MaxValueSize: 100})
	c := newClient(t)
	c.get(a, "/set?key=a&value=1")
	c.get(a, "/set?key=b&value=2")
	want := map[string]any{"a": "1", "b": "2"}

	for _, bad := range []struct{ path, says string }{
		{"/set?key=__sk_x&value=1", "reserved prefix"},
		{"/set?key=a&value=" + strings.Repeat("x", 200), "value too large"},
		{"/set?key=c&value=3", ""}, // the third key fits
		{"/set?key=d&value=4", "too many fields"},
	} {
		code, body := c.get(a, bad.path)
		if bad.says == "" {
			require.Equal(t, http.StatusOK, code, body)
			want["c"] = "3"
			continue
		}
		require.Equal(t, http.StatusBadRequest, code, bad.path)
		require.Contains(t, body, bad.says, bad.path)
		require.Equal(t, want, c.session(a), "the session is unchanged after %s", bad.path)
	}
}

// TestLoginRenewsAndLogoutEnds walks login and logout on a real Redis: the
// login moves the session to a new token with its data, the old token is
// dead, and logout leaves nothing in Redis but the short-lived marker.
func TestLoginRenewsAndLogoutEnds(t *testing.T) {
	srv := testserver.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	a := startApp(t, "127.0.0.1:0", "redis://"+srv.Addr+"/0", time.Minute)
	c := newClient(t)

	code, _ := c.get(a, "/set?key=cart&value=3")
	require.Equal(t, http.StatusOK, code)
	before := c.token(a)
	code, body := c.get(a, "/login?user=ana")
	require.Equal(t, http.StatusOK, code, body)
	after := c.token(a)
	require.NotEqual(t, before, after, "login issues a new token")
	require.Equal(t, map[string]any{"cart": "3", "user": "ana"}, c.session(a))

	req, err := http.NewRequest("GET", "http://"+a.addr+"/get", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: before})
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusConflict, res.StatusCode, "the old token reads nothing")

	code, _ = c.get(a, "/logout")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{}, c.session(a))
	require.Zero(t, rdb.Exists(t.Context(), a.m.StorageKey(after)).Val(), "logout removed the session")
}

// TestMetricsShowWhatAnOperatorNeedsAndNoToken runs the example with
// -metrics: /metrics (outside the session middleware) shows the store's
// latency per operation, its errors by kind and the live sessions, and
// never a token or a storage key.
func TestMetricsShowWhatAnOperatorNeedsAndNoToken(t *testing.T) {
	mx, err := newMetrics()
	require.NoError(t, err)
	m, closer, err := newManager("memory://", sessionkit.Options{IdleTimeout: time.Minute}, mx)
	require.NoError(t, err)
	t.Cleanup(func() { closer.Close() })
	srv := httptestServer(t, newHandler(m, mx))
	c := newClient(t)
	a := &app{t: t, addr: srv, m: m}

	code, _ := c.get(a, "/set?key=a&value=1")
	require.Equal(t, http.StatusOK, code)
	token := c.token(a)
	c.get(a, "/get")

	code, body := newClient(t).get(a, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`sessionkit_store_duration_seconds_count{`,
		`sessionkit_adapter="memory"`,
		`sessionkit_operation="Create"`,
		`sessionkit_operation="GetAll"`,
		`sessionkit_store_sessions{`,
	} {
		require.Contains(t, body, want)
	}
	require.Regexp(t, `sessionkit_store_sessions\{[^}]*\} 1\n`, body, "one live session")
	require.NotContains(t, body, token)
	require.NotContains(t, body, token[5:])
	require.NotContains(t, body, a.m.StorageKey(token))
}

// httptestServer serves h on a loopback port and returns its address.
func httptestServer(t *testing.T, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}
