package storeurl_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/storeurl"
)

func open(t *testing.T, url string) sessionkit.Store {
	t.Helper()
	s, closer, err := storeurl.Open(url)
	require.NoError(t, err)
	t.Cleanup(func() { closer.Close() })
	return s
}

func TestPingAnswersWhenTheStoreDoes(t *testing.T) {
	require.NoError(t, storeurl.Ping(t.Context(), open(t, "memory://")))
	require.NoError(t, storeurl.Ping(t.Context(), open(t, "bbolt://"+t.TempDir()+"/s.db")))
	t.Run("redis", func(t *testing.T) {
		require.NoError(t, storeurl.Ping(t.Context(), open(t, "redis://"+testserver.Redis(t).Addr+"/0")))
	})
	t.Run("memcached", func(t *testing.T) {
		require.NoError(t, storeurl.Ping(t.Context(), open(t, "memcached://"+testserver.Memcached(t).Addr)))
	})
}

func TestPingFailsFastWhenNothingListens(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	for _, url := range []string{"redis://:s3cret@" + addr + "/0", "redis+cluster://" + addr, "memcached://" + addr} {
		start := time.Now()
		err := storeurl.Ping(t.Context(), open(t, url))
		require.Less(t, time.Since(start), outageBound, url)
		require.ErrorIs(t, err, sessionkit.ErrUnavailable, url)
		require.NotContains(t, err.Error(), "s3cret")
	}
}

// pinging is a store with its own Ping.
type pinging struct {
	*memory.Store
	err error
}

func (p pinging) Ping(context.Context) error { return p.err }

func TestPingUsesTheStoresOwnPing(t *testing.T) {
	down := errors.New("down")
	require.ErrorIs(t, storeurl.Ping(t.Context(), pinging{memory.New(nil), down}), down)
	require.NoError(t, storeurl.Ping(t.Context(), pinging{memory.New(nil), nil}))
}
