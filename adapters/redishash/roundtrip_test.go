package redishash_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// counter is a go-redis hook that records every round trip (a command, or a
// pipeline) the client sends.
type counter struct {
	mu    sync.Mutex
	trips []string
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.record(strings.ToUpper(cmd.Name()))
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, cmd := range cmds {
			names[i] = strings.ToUpper(cmd.Name())
		}
		c.record("PIPELINE(" + strings.Join(names, " ") + ")")
		return next(ctx, cmds)
	}
}

func (c *counter) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips = append(c.trips, s)
}

func (c *counter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trips
	c.trips = nil
	return t
}

// TestEachSessionOperationIsOneRoundTrip drives every Session operation
// through a Manager on a real redis-server and counts what the client sends.
// Scripts are loaded by a first pass, as they are after the first request of
// a process; the second pass is what every later request costs.
func TestEachSessionOperationIsOneRoundTrip(t *testing.T) {
	srv := testserver.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	c := &counter{}
	client.AddHook(c)
	m, err := sessionkit.New(&sessionkit.Options{Store: redishash.New(client, nil)})
	require.NoError(t, err)
	ctx := t.Context()
	a := sessionkit.NewKey[int]("a")

	type op struct {
		name  string
		trips int
		run   func(s *sessionkit.Session) error
	}
	// stale is a handle on the token the last Renew replaced, other a
	// second live session.
	var stale, other *sessionkit.Session
	ops := []op{
		{"Set (creates the session)", 1, func(s *sessionkit.Session) error { return s.Set(ctx, "a", 1) }},
		{"Set", 1, func(s *sessionkit.Session) error { return s.Set(ctx, "b", "x") }},
		{"SetMany", 1, func(s *sessionkit.Session) error { return s.SetMany(ctx, map[string]any{"c": 1, "d": 2}) }},
		{"Get", 1, func(s *sessionkit.Session) error { _, err := s.Get(ctx, "a"); return err }},
		{"Key[int].Get", 1, func(s *sessionkit.Session) error { _, _, err := a.Get(ctx, s); return err }},
		{"GetMany (three keys)", 1, func(s *sessionkit.Session) error {
			var x, y, z int
			_, err := s.GetMany(ctx, a.Into(&x), sessionkit.NewKey[int]("c").Into(&y), sessionkit.NewKey[int]("d").Into(&z))
			return err
		}},
		{"Has", 1, func(s *sessionkit.Session) error { _, err := s.Has(ctx, "a"); return err }},
		{"Keys", 1, func(s *sessionkit.Session) error { _, err := s.Keys(ctx); return err }},
		{"All", 1, func(s *sessionkit.Session) error { _, err := s.All(ctx); return err }},
		{"Len", 1, func(s *sessionkit.Session) error { _, err := s.Len(ctx); return err }},
		{"Incr of a new key", 1, func(s *sessionkit.Session) error { _, err := s.Incr(ctx, "n", 1); return err }},
		{"Incr", 1, func(s *sessionkit.Session) error { _, err := s.Incr(ctx, "n", 1); return err }},
		{"Pop", 1, func(s *sessionkit.Session) error {
			var v int
			if found, err := s.Pop(ctx, "n", &v); err != nil || !found || v != 2 {
				return fmt.Errorf("want 2, got %d, %v, %v", v, found, err)
			}
			return nil
		}},
		{"Pop of a missing key", 1, func(s *sessionkit.Session) error { _, err := s.Pop(ctx, "n", new(int)); return err }},
		{"Delete", 1, func(s *sessionkit.Session) error { return s.Delete(ctx, "c", "d") }},
		{"ExpiresAt", 1, func(s *sessionkit.Session) error { _, err := s.ExpiresAt(ctx); return err }},
		{"SetExpiry", 1, func(s *sessionkit.Session) error {
			return s.SetExpiry(ctx, sessionkit.Expiry{Idle: 3600e9, Absolute: 7200e9})
		}},
		{"Renew", 1, func(s *sessionkit.Session) (err error) {
			if stale, err = m.Load(s.Token()); err != nil {
				return err
			}
			return s.Renew(ctx)
		}},
		{"Get through the renewed token", 1, func(*sessionkit.Session) error {
			if _, err := stale.Get(ctx, "a"); !errors.Is(err, sessionkit.ErrRenewed) {
				return fmt.Errorf("want ErrRenewed, got %v", err)
			}
			return nil
		}},
		{"Clear", 1, func(s *sessionkit.Session) error { return s.Clear(ctx) }},
		{"Destroy through the renewed token", 2, func(*sessionkit.Session) error { return stale.Destroy(ctx) }},
		{"Destroy", 1, func(*sessionkit.Session) error { return other.Destroy(ctx) }},
	}
	// A second client reads INFO commandstats, so its calls are not counted.
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	for pass := range 2 {
		s := m.NewSession()
		other = m.NewSession()
		require.NoError(t, other.Set(ctx, "a", 1))
		for _, o := range ops {
			before := commandStats(t, admin)
			c.take()
			require.NoError(t, o.run(s), o.name)
			trips := c.take()
			if pass == 1 {
				t.Logf("%-34s %d round trip(s): %s; server ran %s", o.name, len(trips), strings.Join(trips, ", "), statsDelta(before, commandStats(t, admin)))
				require.Len(t, trips, o.trips, "%s: %v", o.name, trips)
			}
		}
		exists, err := admin.Exists(ctx, m.StorageKey(s.Token()), m.StorageKey(stale.Token()), m.StorageKey(other.Token())).Result()
		require.NoError(t, err)
		require.Zero(t, exists, "Destroy removed every session, and through the renewed token the marker too")
	}
	// A handle loaded from a request's token costs nothing until used.
	c.take()
	_, err = m.Load(m.NewSession().Token())
	require.NoError(t, err)
	require.Empty(t, c.take(), "Load makes no store call")
}

// commandStats returns the calls per command from INFO commandstats.
func commandStats(t *testing.T, c *redis.Client) map[string]int {
	info, err := c.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		calls[strings.ToUpper(name)] = n
	}
	return calls
}

func statsDelta(before, after map[string]int) string {
	var parts []string
	for name, n := range after {
		if d := n - before[name]; d > 0 && name != "INFO" {
			parts = append(parts, fmt.Sprintf("%s×%d", name, d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
