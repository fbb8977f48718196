package memcached

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

var hour = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

// listers runs Count, a whole Scan and DestroyAll under prefix and returns
// their errors.
func listers(ctx context.Context, s *Store, prefix string) map[string]error {
	_, cerr := s.Count(ctx, prefix)
	_, _, serr := s.Scan(ctx, prefix, "", 10)
	_, derr := s.DestroyAll(ctx, prefix)
	return map[string]error{"Count": cerr, "Scan": serr, "DestroyAll": derr}
}

// A server that cannot list its items fails every lister at once with an
// error that says so and matches errors.ErrUnsupported (configuration, not
// an outage to retry), whether the crawler was off from the start or
// turned off at run time.
func TestListingWithoutTheCrawlerIsUnsupported(t *testing.T) {
	off := testserver.Memcached(t, "-o", "no_lru_crawler")
	on := testserver.Memcached(t)
	for name, addr := range map[string]string{"no_lru_crawler": off.Addr, "lru_crawler disable": on.Addr} {
		t.Run(name, func(t *testing.T) {
			client := memcache.New(addr)
			t.Cleanup(func() { client.Close() })
			s := New(client, &Options{Servers: []string{addr}})
			require.NoError(t, s.Create(t.Context(), "p:1", nil, hour))
			if addr == on.Addr {
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				fmt.Fprint(c, "lru_crawler disable\r\n")
				reply, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				require.NoError(t, err)
				require.Equal(t, "OK\r\n", reply)
			}
			start := time.Now()
			for op, err := range listers(t.Context(), s, "p:") {
				require.ErrorIs(t, err, ErrNoCrawler, op)
				require.ErrorIs(t, err, errors.ErrUnsupported, op)
				require.NotErrorIs(t, err, sessionkit.ErrUnavailable, op)
				require.ErrorContains(t, err, "lru crawler disabled", op)
			}
			require.Less(t, time.Since(start), time.Second, "no hang, no retry")
			_, err := s.Get(t.Context(), "p:1", "a")
			require.NoError(t, err, "the session itself is untouched")
		})
	}
}

// Without the server list, the listers say what is missing.
func TestListingNeedsTheServers(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	for op, err := range listers(t.Context(), New(client, nil), "p:") {
		require.ErrorIs(t, err, errors.ErrUnsupported, op)
		require.ErrorContains(t, err, "Options.Servers", op)
	}
	for op, err := range listers(t.Context(), New(client, &Options{Servers: []string{srv.Addr}}), "bad prefix:") {
		require.ErrorIs(t, err, errors.ErrUnsupported, op)
		require.ErrorContains(t, err, "hashed", op)
	}
}

// Sessions spread over two servers are all counted, listed page by page
// (pages cross from one server to the next) and destroyed, once each even
// when the server list repeats a server (gomemcache's way to weigh it).
// Markers, damaged and expired items, hashed keys and other prefixes are
// never counted; DestroyAll deletes the markers and damaged items too.
func TestListingAcrossServers(t *testing.T) {
	a, b := testserver.Memcached(t), testserver.Memcached(t)
	for _, how := range []string{"Servers", "Selector"} {
		t.Run(how, func(t *testing.T) {
			var client *memcache.Client
			opts := &Options{Clock: time.Now}
			if how == "Servers" {
				client = memcache.New(a.Addr, b.Addr, a.Addr)
				opts.Servers = []string{a.Addr, b.Addr, a.Addr}
			} else {
				sel := new(memcache.ServerList)
				require.NoError(t, sel.SetServers(a.Addr, b.Addr, a.Addr))
				client = memcache.NewFromSelector(sel)
				opts.Selector = sel
			}
			t.Cleanup(func() { client.Close() })
			require.NoError(t, client.FlushAll())
			s := New(client, opts)
			ctx := t.Context()
			want := map[string]bool{}
			for i := range 40 {
				k := fmt.Sprintf("p:%02d", i)
				require.NoError(t, s.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
				want[k] = true
			}
			require.NoError(t, s.Rename(ctx, "p:00", "p:new"))
			delete(want, "p:00")
			want["p:new"] = true
			require.NoError(t, s.Create(ctx, "p:short", nil, sessionkit.Expiry{Idle: 100 * time.Millisecond, Absolute: time.Hour}))
			require.NoError(t, client.Set(&memcache.Item{Key: "p:junk", Value: []byte("junk"), Expiration: 60}))
			require.NoError(t, s.Create(ctx, "p:"+strings.Repeat("x", 300), nil, hour)) // hashed
			require.NoError(t, s.Create(ctx, "q:1", nil, hour))
			time.Sleep(150 * time.Millisecond)
			perServer := map[string]int{}
			for k := range want {
				addr, err := sel(client, opts).PickServer(k)
				require.NoError(t, err)
				perServer[addr.String()]++
			}
			require.Len(t, perServer, 2, "the sessions are on both servers")

			n, err := s.Count(ctx, "p:")
			require.NoError(t, err)
			require.Equal(t, len(want), n)

			got := map[string]bool{}
			cursor, pages := "", 0
			for {
				page, next, err := s.Scan(ctx, "p:", cursor, 7)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page), 7)
				pages++
				for _, i := range page {
					require.True(t, want[i.Key], i.Key)
					require.False(t, got[i.Key], "%s listed twice", i.Key)
					got[i.Key] = true
					require.Equal(t, time.Hour, i.Idle)
					require.WithinDuration(t, time.Now().Add(time.Hour), i.Expires, time.Minute)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			require.Equal(t, want, got)
			require.GreaterOrEqual(t, pages, 6)

			n, err = s.DestroyAll(ctx, "p:")
			require.NoError(t, err)
			require.Equal(t, len(want), n)
			for _, k := range []string{"p:00", "p:junk"} {
				_, err := client.Get(k)
				require.ErrorIs(t, err, memcache.ErrCacheMiss, "%s is deleted", k)
			}
			n, err = s.Count(ctx, "p:")
			require.NoError(t, err)
			require.Zero(t, n)
			n, err = s.Count(ctx, "q:")
			require.NoError(t, err)
			require.Equal(t, 1, n, "another prefix is untouched")
		})
	}
}

func sel(client *memcache.Client, opts *Options) memcache.ServerSelector {
	if opts.Selector != nil {
		return opts.Selector
	}
	l := new(memcache.ServerList)
	if err := l.SetServers(opts.Servers...); err != nil {
		panic(err)
	}
	return l
}

// Count and Scan read without writing: no item changes (same CAS), so no
// session's expiry moves.
func TestListingRefreshesNothing(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	s := New(client, &Options{Servers: []string{srv.Addr}})
	ctx := t.Context()
	require.NoError(t, s.Create(ctx, "p:1", nil, hour))
	before, err := client.Get("p:1")
	require.NoError(t, err)
	_, err = s.Count(ctx, "p:")
	require.NoError(t, err)
	page, _, err := s.Scan(ctx, "p:", "", 10)
	require.NoError(t, err)
	require.Len(t, page, 1)
	after, err := client.Get("p:1")
	require.NoError(t, err)
	require.Equal(t, before.CasID, after.CasID)
	require.Equal(t, before.Value, after.Value)
}

// A hung server fails the listers after the client's timeout, and a done
// context stops them with the context's error.
func TestListingAHungServerTimesOut(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	t.Cleanup(func() { client.Close() })
	s := New(client, &Options{Servers: []string{srv.Addr}, Timeout: 200 * time.Millisecond})
	require.NoError(t, srv.Pause())
	t.Cleanup(func() { srv.Resume() })
	start := time.Now()
	for op, err := range listers(t.Context(), s, "p:") {
		require.ErrorIs(t, err, sessionkit.ErrUnavailable, op)
	}
	require.Less(t, time.Since(start), 3*time.Second)

	s = New(client, &Options{Servers: []string{srv.Addr}, Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := s.Count(ctx, "p:")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, sessionkit.ErrUnavailable)
	require.Less(t, time.Since(start), 2*time.Second)
}

// fakeCrawler answers "stats" and then each "lru_crawler metadump" with
// the next of replies (the last one repeats), recording the commands.
func fakeCrawler(t *testing.T, replies ...string) (addr string, commands func() []string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					cmd, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd = strings.TrimSpace(cmd)
					mu.Lock()
					got = append(got, cmd)
					reply := replies[min(len(got)-1, len(replies)-1)]
					mu.Unlock()
					if cmd == "stats" {
						fmt.Fprintf(c, "STAT pid 1\r\nSTAT time %d\r\nEND\r\n", time.Now().Unix())
						mu.Lock()
						got = got[:len(got)-1]
						mu.Unlock()
						continue
					}
					fmt.Fprint(c, reply)
				}
			}()
		}
	}()
	return l.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// A server older than "metadump hash" (BADCLASS) is dumped with
// "metadump all"; a busy crawler is waited for. The dump's own lines are
// parsed as memcached writes them: URL-encoded keys, items ending in "\n",
// items memcached reports expired skipped.
func TestMetadumpFallsBackAndWaits(t *testing.T) {
	real := testserver.Memcached(t)
	client := memcache.New(real.Addr)
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	s0 := New(client, nil)
	require.NoError(t, s0.Create(ctx, "p:{a}1", nil, hour))
	require.NoError(t, s0.Create(ctx, "p:{a}2", nil, hour))
	future, past := time.Now().Unix()+3600, time.Now().Unix()-10
	dump := fmt.Sprintf("key=p%%3A%%7Ba%%7D1 exp=%d la=1 cas=1 fetch=no cls=1 size=80\n"+
		"key=p%%3A%%7Ba%%7D2 exp=%d la=1 cas=2 fetch=no cls=1 size=80\n"+
		"key=q%%3A1 exp=-1 la=1 cas=3 fetch=no cls=1 size=80\nEND\r\n", future, past)

	addr, commands := fakeCrawler(t, "BADCLASS invalid class id\r\n", "BUSY currently processing crawler request\r\n", dump)
	s := New(client, &Options{Servers: []string{addr}})
	n, err := s.Count(ctx, "p:")
	require.NoError(t, err)
	require.Equal(t, 1, n, "p:{a}2 is live on the real server, but the dump said memcached expired it")
	require.Equal(t, []string{"lru_crawler metadump hash", "lru_crawler metadump all", "lru_crawler metadump all"}, commands())

	addr, _ = fakeCrawler(t, "ERROR\r\n")
	_, err = New(client, &Options{Servers: []string{addr}}).Count(ctx, "p:")
	require.ErrorIs(t, err, ErrNoCrawler, "a server older than 1.4.31 does not know the command")

	addr, _ = fakeCrawler(t, "key=p%3A1 garbage\nEND\r\n")
	_, err = New(client, &Options{Servers: []string{addr}}).Count(ctx, "p:")
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, "a line without exp")
}

// DestroyAll ends sessions that are being renamed while it runs: it
// follows the markers that lead out of what it listed, and a Rename that
// meets a destroyed session fails. Once DestroyAll has returned and the
// renames have stopped, no generation of any session is live.
func TestDestroyAllEndsSessionsRenamedMeanwhile(t *testing.T) {
	srv := testserver.Memcached(t)
	client := memcache.New(srv.Addr)
	client.MaxIdleConns = 64
	t.Cleanup(func() { client.Close() })
	s := New(client, &Options{Servers: []string{srv.Addr}, Timeout: 5 * time.Second})
	ctx := t.Context()
	const sessions, workers = 200, 4
	current := make([]string, sessions)
	for i := range current {
		current[i] = fmt.Sprintf("p:%d:0", i)
		require.NoError(t, s.Create(ctx, current[i], []sessionkit.Field{{Name: "a", Value: []byte("1")}}, hour))
	}
	var renames, during atomic.Int64
	var destroying atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gen := 1; ; gen++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				for i := w; i < sessions; i += workers {
					next := fmt.Sprintf("p:%d:%d", i, gen)
					if err := s.Rename(ctx, current[i], next); err == nil {
						current[i] = next
						renames.Add(1)
						if destroying.Load() {
							during.Add(1)
						}
					} else if !errors.Is(err, sessionkit.ErrNotFound) {
						t.Errorf("rename: %v", err)
						return
					}
				}
			}
		}()
	}
	for renames.Load() < 2*sessions {
		time.Sleep(time.Millisecond)
	}
	destroying.Store(true)
	start := time.Now()
	n, err := s.DestroyAll(ctx, "p:")
	took := time.Since(start)
	destroying.Store(false)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.LessOrEqual(t, n, sessions)
	for i, k := range current {
		_, err := s.GetAll(ctx, k)
		require.ErrorIs(t, err, sessionkit.ErrNotFound, "session %d survived under %s", i, k)
	}
	left, err := s.Count(ctx, "p:")
	require.NoError(t, err)
	require.Zero(t, left)
	require.Positive(t, during.Load(), "renames ran during DestroyAll")
	t.Logf("DestroyAll ended %d of %d sessions in %v while %d renames succeeded (of %d in all); the others were dropped by their own Rename when DestroyAll deleted its marker", n, sessions, took, during.Load(), renames.Load())
}
