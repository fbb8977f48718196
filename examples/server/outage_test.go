package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// TestRedisOutage stops redis-server in the middle of traffic, first by
// freezing it (a hung server: connections open, no answers), then by killing
// it: every request must get a 503 (never an empty session passed off as
// success) within a second, with the store URL of the README's command and
// so storeurl's default timeouts; the store must report ErrUnavailable with
// the network error inside, and once Redis is back the same application
// serves the same session again, with no goroutines left behind.
func TestRedisOutage(t *testing.T) {
	// AOF with fsync on every write, so the session survives the kill.
	srv := testserver.Redis(t, "--appendonly", "yes", "--appendfsync", "always")
	url := readmeRedisURL(t, srv.Addr)
	const bound = time.Second // what storeurl's defaults promise
	a := startApp(t, "127.0.0.1:0", url, time.Hour)
	c := newClient(t)
	code, _ := c.get(a, "/set?key=a&value=1")
	require.Equal(t, http.StatusOK, code)
	token := c.token(a)
	for range 5 {
		c.get(a, "/get")
	}
	baseline := runtime.NumGoroutine()

	require.NoError(t, srv.Pause())
	requestsFail(t, "hung server", c, a, token, bound)
	require.NoError(t, srv.Resume())
	waitRecovered(t, c, a)

	srv.Stop()
	requestsFail(t, "killed server", c, a, token, bound)

	start := time.Now()
	_, err := a.m.Store().Get(t.Context(), a.m.StorageKey(token), "a")
	require.Less(t, time.Since(start), bound)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var netErr net.Error
	require.True(t, errors.As(err, &netErr), "the client's own error stays reachable: %v", err)

	require.NoError(t, srv.Start())
	t.Logf("after Redis restarted, traffic recovered in %v without restarting the application", waitRecovered(t, c, a).Round(time.Millisecond))

	c.http.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline+2 {
		require.True(t, time.Now().Before(deadline), "goroutines: %d before the outage, %d after", baseline, runtime.NumGoroutine())
		time.Sleep(20 * time.Millisecond)
	}
}

// requestsFail sends one request alone (the first after a failure pays
// for every retry the client makes), then 20 concurrent requests, half
// reads and half writes: all must answer 503 within bound.
func requestsFail(t *testing.T, what string, c *client, a *app, token string, bound time.Duration) {
	start := time.Now()
	code, body := c.get(a, "/get")
	alone := time.Since(start)
	require.Equal(t, http.StatusServiceUnavailable, code, "/get during the outage answered %q", body)
	require.Less(t, alone, bound, "the first request during the outage hung")
	var worst time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			path := "/get"
			if i%2 == 1 {
				path = "/set?key=b&value=2"
			}
			start := time.Now()
			code, body := c.get(a, path)
			took := time.Since(start)
			mu.Lock()
			worst = max(worst, took)
			mu.Unlock()
			assert.Equal(t, http.StatusServiceUnavailable, code, "%s during the outage answered %q", path, body)
			assert.NotContains(t, body, token)
		})
	}
	wg.Wait()
	require.Less(t, worst, bound, "a request during the outage hung")
	t.Logf("%s: the first request took %v, the slowest of 20 concurrent ones %v", what, alone.Round(time.Millisecond), worst.Round(time.Millisecond))
}

// waitRecovered polls /get until the session answers again, unchanged, and
// returns how long that took.
func waitRecovered(t *testing.T, c *client, a *app) time.Duration {
	start := time.Now()
	for {
		code, body := c.get(a, "/get")
		if code == http.StatusOK {
			require.Equal(t, `{"a":"1"}`, strings.TrimSpace(body), "the session is back, unchanged")
			return time.Since(start)
		}
		require.Less(t, time.Since(start), 10*time.Second, "traffic did not recover after Redis came back")
		time.Sleep(20 * time.Millisecond)
	}
}

// readmeRedisURL returns the store URL of the README's command that runs the
// example on Redis, pointed at addr.
func readmeRedisURL(t *testing.T, addr string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`go run \./examples/server -store (redis://127\.0\.0\.1:6379\S*)`).FindSubmatch(readme)
	require.NotNil(t, m, "the README runs the example on redis://127.0.0.1:6379…")
	return strings.Replace(string(m[1]), "127.0.0.1:6379", addr, 1)
}
