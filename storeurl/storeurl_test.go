package storeurl_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adapters/memcached"
	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/storeurl"
)

func TestOpenPicksTheAdapterOfTheScheme(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for url, want := range map[string]any{
		"redis://127.0.0.1:6379/0":                           &redishash.Store{},
		"rediss://user:pw@127.0.0.1:6380/2":                  &redishash.Store{},
		"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001": &redishash.Store{},
		"memcached://127.0.0.1:11211":                        &memcached.Store{},
		"memcached://127.0.0.1:11211,127.0.0.1:11212":        &memcached.Store{},
		"bbolt://" + filepath.Join(dir, "abs.db"):            &bbolt.Store{},
		"bbolt://./rel.db":                                   &bbolt.Store{},
		"memory://":                                          &memory.Store{},
		"postgres://u:pw@127.0.0.1:5432/db?sslmode=disable":  &postgres.Store{},
		"postgresql://127.0.0.1/db?table_prefix=app_":        &postgres.Store{},
	} {
		s, closer, err := storeurl.Open(url)
		require.NoError(t, err, url)
		require.IsType(t, want, s, url)
		require.NoError(t, closer.Close(), url)
	}
	_, err := os.Stat(filepath.Join(dir, "rel.db"))
	require.NoError(t, err, "bbolt://./rel.db is relative to the working directory")
}

func TestBadURLsNameTheAcceptedSchemes(t *testing.T) {
	for _, url := range []string{
		"", "mysql://localhost/db", "127.0.0.1:6379", "redis://:notaport", "memcached://", "memcached://nohostport",
		"memcached://a:1,", "bbolt://", "bbolt://host/file.db", "memory://somewhere", "redis://user:s3cret@host:port:bad/0",
		"::not a url",
	} {
		_, _, err := storeurl.Open(url)
		require.ErrorIs(t, err, storeurl.ErrBadURL, url)
		require.ErrorContains(t, err, "redis://, rediss://, redis+cluster://, memcached://, postgres://, postgresql://, bbolt://, memory://", url)
		require.NotContains(t, err.Error(), "s3cret", "a password is never echoed")
	}
}

func TestBadClientParameters(t *testing.T) {
	for _, url := range []string{
		"redis://h:1?dialer_retries=x", "redis://h:1?dialer_retry_timeout=soon", "redis://h:1?dialer_retries=2&nosuch=1",
		"redis://h:1?read_timeout=x", "memcached://a:1?timeout=0", "memcached://a:1?timeout=-1s", "memcached://a:1?timeout=x",
		"memcached://a:1?nosuch=1", "memcached://a:1?%zz", "memcached://u:s3cret@a:1",
	} {
		_, _, err := storeurl.Open(url)
		require.ErrorIs(t, err, storeurl.ErrBadURL, url)
		require.NotContains(t, err.Error(), "s3cret", "a password is never echoed")
	}
}

func TestSchemesIsACopy(t *testing.T) {
	s := storeurl.Schemes()
	require.Contains(t, s, "redis")
	s[0] = "changed"
	require.NotContains(t, storeurl.Schemes(), "changed")
}

// Mistyped URLs that url.Parse reads without a user part still hide the
// password, and the ones go-redis would quietly read as "localhost:6379"
// are refused.
func TestMistypedURLsNeverShowThePassword(t *testing.T) {
	for _, raw := range []string{
		"rediss//:hunter2@127.0.0.1:16379/0",
		"redis:/:hunter2@127.0.0.1:16379/0",
		"redis:hunter2@127.0.0.1:16380/0",
		"redis+cluster:hunter2@h:1",
		"memcached:hunter2@h:1",
		"host=127.0.0.1 user=u password=hunter2 dbname=db",
	} {
		_, _, err := storeurl.Open(raw)
		require.ErrorIs(t, err, storeurl.ErrBadURL, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
		require.NotContains(t, storeurl.Redact(raw), "hunter2", raw)
	}
	require.Equal(t, "postgres://u:xxxxx@h/db?password=xxxxx&sslmode=disable", storeurl.Redact("postgres://u:pw@h/db?password=hunter2&sslmode=disable"))
	require.Equal(t, "redis://127.0.0.1:6379/0", storeurl.Redact("redis://127.0.0.1:6379/0"), "nothing to hide, nothing changed")
}
