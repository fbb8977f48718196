package apptesting_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	apptesting "github.com/sessionkit/sessionkit/examples/testing"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// newServer serves the app on store, for a test.
func newServer(t *testing.T, store sessionkit.Store) (*httptest.Server, *http.Client) {
	m, err := sessionkit.New(&sessionkit.Options{Store: store})
	require.NoError(t, err)
	srv := httptest.NewServer(apptesting.NewApp(m))
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return srv, &http.Client{Jar: jar}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	res, err := c.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

// In production the app gets redishash.New(redisClient); its tests swap in
// the memory store and need no server at all.
func TestVisitsWithTheMemoryStore(t *testing.T) {
	srv, c := newServer(t, memory.New(nil))
	require.Equal(t, "visit 1\n", get(t, c, srv.URL+"/visit"))
	require.Equal(t, "visit 2\n", get(t, c, srv.URL+"/visit"))
	require.Equal(t, "welcome\n", get(t, c, srv.URL+"/login?user=ana"))
	require.Equal(t, "\"ana\"\n", get(t, c, srv.URL+"/whoami"))
	require.Equal(t, "visit 3\n", get(t, c, srv.URL+"/visit"), "login kept the session's data")
}

// With miniredis the app runs on the real Redis adapter, in process, and
// the test can look inside Redis as it would in production.
func TestLoginWithMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	srv, c := newServer(t, redishash.New(rdb, nil))

	require.Equal(t, "visit 1\n", get(t, c, srv.URL+"/visit"))
	require.Len(t, mr.Keys(), 1)
	before := mr.Keys()[0]
	require.Equal(t, "welcome\n", get(t, c, srv.URL+"/login?user=ana"))
	keys := mr.Keys()
	require.Len(t, keys, 2, "the session and, at its old key, the marker that Renew leaves")
	after := keys[0]
	if after == before {
		after = keys[1]
	}
	require.Empty(t, mr.HGet(before, "visits"), "no data is left under the old key")
	require.LessOrEqual(t, mr.TTL(before), sessionkit.RenewMarkerTTL, "the marker goes within a minute")
	require.Equal(t, `"ana"`, mr.HGet(after, "user"), "values are JSON in the hash")
	require.Equal(t, "1", mr.HGet(after, "visits"), "login kept the session's data")
	require.Equal(t, "\"ana\"\n", get(t, c, srv.URL+"/whoami"))
}

// The same swap, as a runnable example.
func Example() {
	m, _ := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	app := apptesting.NewApp(m)

	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/visit", nil))
	cookie := rec.Result().Cookies()[0]
	fmt.Print(rec.Body.String())

	req := httptest.NewRequest("GET", "/visit", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	app.ServeHTTP(rec, req)
	fmt.Print(rec.Body.String())
	// Output:
	// visit 1
	// visit 2
}
