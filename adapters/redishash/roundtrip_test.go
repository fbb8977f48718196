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
	"time"

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
		// The script, then a Rename to a token that carries the new policy.
		{"SetExpiry", 2, func(s *sessionkit.Session) error {
			return s.SetExpiry(ctx, sessionkit.Expiry{Idle: 3600e9, Absolute: 7200e9})
		}},
		{"Renew", 1, func(s *sessionkit.Session) (err error) {
			if stale, err = m.Load(s.Token()); err != nil {
				return err
			}
			return s.Renew(ctx)
		}},
		// The fast path's pipeline finds the marker, and the get script
		// answers (and gives the marker its own expiry back).
		{"Get through the renewed token", 2, func(*sessionkit.Session) error {
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
		exists, err := admin.Exists(ctx, recordKey(m.StorageKey(s.Token())), recordKey(m.StorageKey(stale.Token())), recordKey(m.StorageKey(other.Token()))).Result()
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

// TestUserOperationsRoundTrips counts the round trips and server commands
// of the Manager's user calls on a real redis-server, and checks that a
// bound session costs what an unbound one does.
func TestUserOperationsRoundTrips(t *testing.T) {
	srv := testserver.Redis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	c := &counter{}
	client.AddHook(c)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	ctx := t.Context()
	store := redishash.New(client, nil)
	newManager := func(opts sessionkit.Options) *sessionkit.Manager {
		opts.Store = store
		m, err := sessionkit.New(&opts)
		require.NoError(t, err)
		return m
	}
	m := newManager(sessionkit.Options{})
	capped := newManager(sessionkit.Options{MaxSessionsPerUser: 3})
	refusing := newManager(sessionkit.Options{MaxSessionsPerUser: 3, OverCap: sessionkit.RefuseLogin})

	// Each op runs prep (not counted), then run (counted).
	type op struct {
		name      string
		trips     int
		prep, run func() error
	}
	var (
		bound, other, refused *sessionkit.Session
		info                  sessionkit.SessionInfo
	)
	bindNew := func(m *sessionkit.Manager, s **sessionkit.Session) func() error {
		return func() error {
			tok, err := m.Bind(ctx, "", "ana", sessionkit.Client{Device: "Firefox"})
			if err == nil && s != nil {
				*s, err = m.Load(tok)
			}
			return err
		}
	}
	// tick waits for Redis's clock to reach the next millisecond, so that a
	// session created after it is strictly younger: the cap evicts the
	// oldest by creation, and a tie would make the victim a coin toss.
	tick := func() {
		start, err := admin.Time(ctx).Result()
		require.NoError(t, err)
		for {
			now, err := admin.Time(ctx).Result()
			require.NoError(t, err)
			if now.UnixMilli() > start.UnixMilli() {
				return
			}
		}
	}
	storeNew := func(m *sessionkit.Manager, s **sessionkit.Session) func() error {
		return func() error {
			tick()
			*s = m.NewSession()
			return (*s).Set(ctx, "cart", 1)
		}
	}
	ops := []op{
		{"Bind of no session (new, bound)", 1, nil, bindNew(m, &bound)},
		{"Session.Bind of a stored session", 2, storeNew(m, &other), func() error { return other.Bind(ctx, "ana") }},
		{"Get on a bound session", 1, nil, func() error { _, err := bound.Get(ctx, "cart"); return err }},
		{"Set on a bound session", 1, nil, func() error { return bound.Set(ctx, "cart", 2) }},
		{"Renew of a bound session", 1, nil, func() error { return bound.Renew(ctx) }},
		{"SetExpiry of a bound session", 2, nil, func() error { // then a Rename, as above
			return bound.SetExpiry(ctx, sessionkit.Expiry{Idle: time.Hour, Absolute: 48 * time.Hour})
		}},
		{"Bind over the cap, evicting the oldest", 1, bindNew(capped, nil), bindNew(capped, nil)},
		{"Session.Bind over the cap, refused", 3, storeNew(refusing, &refused), func() error {
			if err := refused.Bind(ctx, "ana"); !errors.Is(err, sessionkit.ErrTooManySessions) {
				return fmt.Errorf("want ErrTooManySessions, got %v", err)
			}
			return nil
		}},
		{"UserSessions (3 sessions)", 1, nil, func() error {
			l, err := m.UserSessions(ctx, "ana")
			if err == nil && len(l) != 3 {
				err = fmt.Errorf("want 3 sessions, got %d", len(l))
			}
			return err
		}},
		{"RevokeSession", 1, func() (err error) {
			info, err = other.Info(ctx)
			return err
		}, func() error { return m.RevokeSession(ctx, "ana", info.ID) }},
		{"RevokeOthers (Info + Revoke)", 2, bindNew(m, &bound), func() error { _, err := bound.RevokeOthers(ctx); return err }},
		{"RevokeUser (all)", 1, bindNew(m, nil), func() error { _, err := m.RevokeUser(ctx, "ana", ""); return err }},
		{"Destroy of a bound session", 1, bindNew(m, &bound), func() error { return bound.Destroy(ctx) }},
		{"Count (4 sessions)", 2, func() error {
			for range 3 {
				if _, err := m.Create(ctx); err != nil {
					return err
				}
			}
			return nil
		}, func() error {
			n, err := m.Count(ctx)
			if err == nil && n != 4 {
				err = fmt.Errorf("want 4, got %d", n)
			}
			return err
		}},
		{"Scan, one page of 4", 2, nil, func() error { _, _, err := m.Scan(ctx, "", 100); return err }},
		{"RevokeAll (4 sessions)", 2, nil, func() error { _, err := m.RevokeAll(ctx); return err }},
	}
	for pass := range 2 {
		require.NoError(t, admin.FlushAll(ctx).Err())
		for _, o := range ops {
			if o.prep != nil {
				require.NoError(t, o.prep(), o.name)
			}
			c.take()
			before := commandStats(t, admin)
			require.NoError(t, o.run(), o.name)
			trips := c.take()
			if pass == 1 {
				t.Logf("%-38s %d round trip(s): %s; server ran %s", o.name, len(trips), strings.Join(trips, ", "), statsDelta(before, commandStats(t, admin)))
				require.Len(t, trips, o.trips, "%s: %v", o.name, trips)
			}
		}
	}
}
