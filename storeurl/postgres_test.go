package storeurl_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/storeurl"
)

// The package's PostgreSQL is started once, by the first test that asks.
func TestMain(m *testing.M) {
	code := m.Run()
	testserver.StopPostgres()
	os.Exit(code)
}

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
		"postgres://u:s3cret@h/db?timeout=soon",
	} {
		_, _, err := storeurl.Open(url)
		require.ErrorIs(t, err, storeurl.ErrBadURL, url)
		require.NotContains(t, err.Error(), "s3cret", "a password is never echoed")
	}
}

// TestFrozenPostgresFailsWithinAboutASecond checks the client timeouts of a
// postgres:// URL against a real PostgreSQL behind a relay that freezes:
// connections stay open and nothing answers, as with a stopped server or a
// network partition.
func TestFrozenPostgresFailsWithinAboutASecond(t *testing.T) {
	pg := testserver.Postgres(t)
	for _, c := range []struct {
		query    string
		min, max time.Duration
	}{
		{"", time.Second, 2 * time.Second},                                 // the default timeout
		{"&timeout=200ms", 200 * time.Millisecond, 900 * time.Millisecond}, // taken out before pgx sees it
	} {
		relay := freezingRelay(t, pg.Addr)
		store := open(t, "postgres://postgres@"+relay.addr+"/postgres?sslmode=disable&table_prefix="+freshPrefix()+c.query)
		t.Cleanup(relay.close) // before the store's pool says goodbye to a frozen server
		// The tables first, with no timeout of their own: on a loaded
		// machine the DDL alone can take longer than timeout=200ms, which
		// bounds the first operation's AutoMigrate.
		require.NoError(t, store.(*postgres.Store).Migrate(t.Context()))
		create(t, store, "k")
		relay.freeze()
		failsBetween(t, store, c.min, c.max, "frozen, with "+c.query)
	}

	// A connection to the frozen server: its connect_timeout (1 s) bounds
	// it, even with no timeout per operation.
	relay := freezingRelay(t, pg.Addr)
	relay.freeze()
	store := open(t, "postgres://postgres@"+relay.addr+"/postgres?sslmode=disable&table_prefix="+freshPrefix()+"&timeout=0")
	t.Cleanup(relay.close)
	failsBetween(t, store, time.Second, 2*time.Second, "connecting to it")
}

var prefixes atomic.Int64

// freshPrefix is a table prefix of its own: the tests share one server.
func freshPrefix() string { return fmt.Sprintf("frozen%d_", prefixes.Add(1)) }

// failsBetween checks that a read fails with ErrUnavailable, while the
// caller's context is live, after min to max.
func failsBetween(t *testing.T, store sessionkit.Store, min, max time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second) // rather than hang the test
	defer cancel()
	start := time.Now()
	_, err := store.Get(ctx, "k", "a")
	took := time.Since(start)
	t.Logf("%s: the read failed after %v: %v", what, took.Round(time.Millisecond), err)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, what)
	require.Equal(t, 503, sessionkit.ErrorStatus(err), what)
	require.GreaterOrEqual(t, took, min, what)
	require.Less(t, took, max, what)
}

// relay passes TCP connections through to a server until freeze; from
// then on it passes nothing, either way, and accepts connections without
// answering.
type relay struct {
	addr   string
	frozen chan struct{}
	once   sync.Once
	close  func() // closes the listener and every connection
}

func freezingRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{addr: ln.Addr().String(), frozen: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	r.close = func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close() // ends the copies, frozen or not
		}
	}
	t.Cleanup(r.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			keep(c)
			if r.isFrozen() {
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			keep(up)
			go r.copy(up, c)
			go r.copy(c, up)
		}
	}()
	return r
}

func (r *relay) freeze() { r.once.Do(func() { close(r.frozen) }) }

func (r *relay) isFrozen() bool {
	select {
	case <-r.frozen:
		return true
	default:
		return false
	}
}

// copy passes bytes from src to dst until either closes; once frozen, it
// reads and drops them.
func (r *relay) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.isFrozen() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
