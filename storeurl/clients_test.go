package storeurl

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRedisURLsGetTimeoutsThatBoundAnOutage(t *testing.T) {
	for _, url := range []string{"redis://127.0.0.1:6379/0", "rediss://u:pw@h:6380/1"} {
		sp, err := parse(url)
		require.NoError(t, err, url)
		o := sp.redis
		require.Equal(t, []any{defaultDialTimeout, defaultReadTimeout, defaultReadTimeout, defaultPoolTimeout, -1, 1},
			[]any{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries}, url)
	}
	sp, err := parse("redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001")
	require.NoError(t, err)
	o := sp.cluster
	require.Equal(t, []any{defaultDialTimeout, defaultReadTimeout, defaultReadTimeout, defaultPoolTimeout, -1, 1, 1},
		[]any{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.MaxRedirects})
}

func TestRedisURLParametersWinOverTheDefaults(t *testing.T) {
	const q = "?dial_timeout=1s&read_timeout=2s&write_timeout=3&pool_timeout=4s&max_retries=2&dialer_retries=3&dialer_retry_timeout=50ms"
	sp, err := parse("redis://u:pw@127.0.0.1:6379/2" + q)
	require.NoError(t, err)
	o := sp.redis
	require.Equal(t, []any{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 2, 3, 50 * time.Millisecond},
		[]any{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries, o.DialerRetryTimeout})
	require.Equal(t, []any{"u", "pw", "127.0.0.1:6379", 2}, []any{o.Username, o.Password, o.Addr, o.DB}, "the rest of the URL survives taking the dialer parameters out")

	sp, err = parse("redis+cluster://127.0.0.1:7000" + q + "&max_redirects=3")
	require.NoError(t, err)
	c := sp.cluster
	require.Equal(t, []any{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 2, 3, 50 * time.Millisecond, 3},
		[]any{c.DialTimeout, c.ReadTimeout, c.WriteTimeout, c.PoolTimeout, c.MaxRetries, c.DialerRetries, c.DialerRetryTimeout, c.MaxRedirects})

	// An empty parameter asks for go-redis's own default, as ParseURL reads it.
	sp, err = parse("redis://127.0.0.1:6379?read_timeout=&max_retries=")
	require.NoError(t, err)
	require.Equal(t, []any{time.Duration(0), 0, defaultDialTimeout}, []any{sp.redis.ReadTimeout, sp.redis.MaxRetries, sp.redis.DialTimeout})
}

func TestMemcachedTimeout(t *testing.T) {
	for url, want := range map[string]time.Duration{
		"memcached://a:1":                     defaultMemcacheWait,
		"memcached://a:1,b:2/":                defaultMemcacheWait,
		"memcached://a:1,b:2?timeout=150ms":   150 * time.Millisecond,
		"memcached://a:1/?timeout=2":          2 * time.Second,
		"memcached://a:1?timeout=1s&timeout=": defaultMemcacheWait,
	} {
		sp, err := parse(url)
		require.NoError(t, err, url)
		require.Equal(t, want, sp.memcachedTimeout, url)
	}
	sp, err := parse("memcached://a:1,b:2?timeout=1s")
	require.NoError(t, err)
	require.Equal(t, []string{"a:1", "b:2"}, sp.memcached)
}
