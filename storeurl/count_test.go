package storeurl_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// Operators count and list through storeurl (cmd/sessionkit): every
// network scheme's store must be able to, from its URL alone.
func TestStoresFromURLsCanCountTheirSessions(t *testing.T) {
	for scheme, url := range map[string]func(t *testing.T) string{
		"redis":     func(t *testing.T) string { return "redis://" + testserver.Redis(t).Addr + "/0" },
		"memcached": func(t *testing.T) string { return "memcached://" + testserver.Memcached(t).Addr },
		"bbolt":     func(t *testing.T) string { return "bbolt://" + t.TempDir() + "/s.db" },
	} {
		t.Run(scheme, func(t *testing.T) {
			m, err := sessionkit.New(&sessionkit.Options{Store: open(t, url(t))})
			require.NoError(t, err)
			for range 3 {
				_, err := m.Create(t.Context())
				require.NoError(t, err)
			}
			n, err := m.Count(t.Context())
			require.NoError(t, err)
			require.Equal(t, 3, n)
		})
	}
}
