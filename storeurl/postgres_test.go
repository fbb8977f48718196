package storeurl_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/storeurl"
)

// The URLs' effect on a real server (prefix, migrate) is tested in
// adapters/postgres, which starts one.
func TestBadPostgresURLs(t *testing.T) {
	for _, url := range []string{
		"postgres://u:s3cret@h:notaport/db",
		"postgres://u:s3cret@h/db?migrate=maybe",
		"postgres://u:s3cret@h/db?table_prefix=drop;table",
		"postgresql://u:s3cret@h/db?table_prefix=1x",
		"postgres://u:s3cret@h/db?table_prefix=Web_",
		"postgres://u:s3cret@h/db?sslmode=sometimes",
		"postgres://u:s3cret@h/db?pool_max_conns=0",
	} {
		_, _, err := storeurl.Open(url)
		require.ErrorIs(t, err, storeurl.ErrBadURL, url)
		require.NotContains(t, err.Error(), "s3cret", "a password is never echoed")
	}
}
