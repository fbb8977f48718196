package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// binding is a binding of user, as the Manager would make it (the index
// needs only be a string unique to the user here).
func binding(user string, id int) sessionkit.Binding {
	return sessionkit.Binding{Index: "idx:" + user, User: user, ID: fmt.Sprintf("%022d", id),
		Device: "dev", IP: "192.0.2.1", Expiry: long}
}

// live counts the rows bound to index that are live, as any statement sees
// them.
func (f *fixture) live(t testing.TB, index string) int {
	return f.scalar(t, `SELECT count(*) FROM %ssessions WHERE user_index = $1 AND expires > now()`, index)
}

func TestBindingFollowsRenameAndLeavesWithDestroy(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k0", field("a", "1"), long))
	require.NoError(t, f.Bind(ctx, "k0", "k1", binding("ann", 1)))
	require.NoError(t, f.Rename(ctx, "k1", "k2"))
	l, err := f.UserSessions(ctx, "idx:ann")
	require.NoError(t, err)
	require.Len(t, l, 1)
	require.Equal(t, "k2", l[0].Key)
	require.Equal(t, fmt.Sprintf("%022d", 1), l[0].ID, "the public ID survives Rename")
	require.Equal(t, "ann", l[0].User)
	vals, err := f.Get(ctx, "k2", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0], "Bind keeps the fields")
	for _, k := range []string{"k0", "k1"} {
		_, err := f.Info(ctx, k)
		require.ErrorIs(t, err, sessionkit.ErrNotFound, "a marker has no info")
		require.ErrorIs(t, f.Bind(ctx, k, "k9", binding("ann", 2)), sessionkit.ErrRenewed)
	}
	require.ErrorIs(t, f.Bind(ctx, "nothing", "k9", binding("ann", 2)), sessionkit.ErrNotFound)
	require.NoError(t, f.Create(ctx, "taken", nil, long))
	require.ErrorIs(t, f.Bind(ctx, "k2", "taken", binding("ann", 2)), sessionkit.ErrExists)
	require.ErrorIs(t, f.Bind(ctx, "", "taken", binding("ann", 2)), sessionkit.ErrExists)
	require.ErrorIs(t, f.Bind(ctx, "", "k0", binding("ann", 2)), sessionkit.ErrExists, "a marker's key is taken")
	require.NoError(t, f.Destroy(ctx, "k0"), "through the first marker")
	l, err = f.UserSessions(ctx, "idx:ann")
	require.NoError(t, err)
	require.Empty(t, l)
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE key <> 'taken'`), "no row is left, markers included")
}

func TestRebindingMovesTheSessionToTheOtherUser(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Bind(ctx, "", "k0", binding("ann", 1)))
	require.NoError(t, f.Bind(ctx, "k0", "k1", binding("bob", 2)))
	require.Zero(t, f.live(t, "idx:ann"), "the former binding ends")
	i, err := f.Info(ctx, "k1")
	require.NoError(t, err)
	require.Equal(t, "bob", i.User)
	require.Equal(t, fmt.Sprintf("%022d", 2), i.ID)
}

// The cap, as every statement sees it: a watcher counting the user's live
// sessions while 20 logins race never sees more than the cap.
func TestConcurrentBindsNeverPassTheCapAtAnyMoment(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprint("refuse=", refuse), func(t *testing.T) {
			f := newFixture(t, nil)
			ctx := t.Context()
			const n, max = 20, 3
			var seen atomic.Int64
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					default:
					}
					var c int64
					if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM `+f.prefix+`sessions
						WHERE user_index = 'idx:cap' AND expires > now()`).Scan(&c); err == nil && c > seen.Load() {
						seen.Store(c)
					}
				}
			}()
			var wg sync.WaitGroup
			var ok, refused atomic.Int64
			for i := range n {
				wg.Go(func() {
					key := fmt.Sprint("k", i)
					if !assert.NoError(t, f.Create(ctx, key, field("i", fmt.Sprint(i)), long)) {
						return
					}
					b := binding("cap", i)
					b.Max, b.Refuse = max, refuse
					err := f.Bind(ctx, key, "bound"+key, b)
					switch {
					case err == nil:
						ok.Add(1)
					case refuse && errors.Is(err, sessionkit.ErrTooManySessions):
						refused.Add(1)
						_, err := f.Get(ctx, key, "i")
						assert.NoError(t, err, "a refused Bind leaves the session as it was")
					default:
						assert.NoError(t, err)
					}
				})
			}
			wg.Wait()
			close(stop)
			<-watched
			require.LessOrEqual(t, seen.Load(), int64(max), "never more than the cap at any moment")
			require.Equal(t, max, f.live(t, "idx:cap"))
			if refuse {
				require.Equal(t, int64(max), ok.Load())
				require.Equal(t, int64(n-max), refused.Load())
			} else {
				require.Equal(t, int64(n), ok.Load())
			}
		})
	}
}

// A Bind that moves a session from one user to another, racing a Revoke
// of the first: either the Revoke ends the session and the Bind finds it
// gone, or the Bind moves it first and the Revoke does not see it. Never
// both, and never a session of the first user left live.
func TestRevokeRacingARebindIsOneOrTheOther(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	outcomes := map[string]int{}
	for round := range 40 {
		old, moved := fmt.Sprint("a", round), fmt.Sprint("b", round)
		require.NoError(t, f.Bind(ctx, "", old, binding("ann", round)))
		var n int
		var revokeErr, bindErr error
		var wg sync.WaitGroup
		wg.Go(func() { n, revokeErr = f.Revoke(ctx, "idx:ann", nil, "") })
		wg.Go(func() { bindErr = f.Bind(ctx, old, moved, binding("bob", round)) })
		wg.Wait()
		require.NoError(t, revokeErr)
		require.Zero(t, f.live(t, "idx:ann"))
		if bindErr == nil {
			require.Zero(t, n, "the Bind came first: the session was no longer the revoked user's")
			outcomes["bind first"]++
		} else {
			require.ErrorIs(t, bindErr, sessionkit.ErrNotFound)
			require.Equal(t, 1, n)
			outcomes["revoke first"]++
		}
	}
	t.Log(outcomes)
}

func TestRevokeEndsTheListedSessionsAndCountsOnlyLiveOnes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	for i := range 4 {
		require.NoError(t, f.Bind(ctx, "", fmt.Sprint("k", i), binding("ann", i)))
	}
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 s' WHERE key = 'k3'`))
	n, err := f.Revoke(ctx, "idx:ann", []string{fmt.Sprintf("%022d", 0), fmt.Sprintf("%022d", 3), "nope"}, "")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the expired session is deleted but not counted")
	n, err = f.Revoke(ctx, "idx:ann", []string{}, "")
	require.NoError(t, err)
	require.Zero(t, n, "no IDs: nothing")
	n, err = f.Revoke(ctx, "idx:ann", nil, fmt.Sprintf("%022d", 1))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = f.Info(ctx, "k1")
	require.NoError(t, err, "the excepted session stays")
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions`))
}

// Expired rows are invisible at once; listing the user deletes them (its
// index's dead entries), and the sweeper deletes any others.
func TestListingDeletesTheUsersExpiredRows(t *testing.T) {
	f := newFixture(t, &postgres.Options{SweepInterval: -1})
	ctx := t.Context()
	for i := range 50 {
		require.NoError(t, f.Bind(ctx, "", fmt.Sprint("k", i), binding("ann", i)))
		require.NoError(t, f.Bind(ctx, "", fmt.Sprint("o", i), binding("bob", i)))
	}
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 s' WHERE key <> 'k0' AND key <> 'o0'`))
	l, err := f.UserSessions(ctx, "idx:ann")
	require.NoError(t, err)
	require.Len(t, l, 1)
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE user_index = 'idx:ann'`), "the dead entries are gone")
	require.Equal(t, 50, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE user_index = 'idx:bob'`), "another user's wait for the sweeper")
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET sweep_after = expires WHERE key LIKE 'o%%' AND key <> 'o0'`))
	_, err = f.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE user_index = 'idx:bob'`))
}

func TestInfoAndListRefreshNothing(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Bind(ctx, "", "k", binding("ann", 1)))
	expires := func() (e string) {
		require.NoError(t, f.pool.QueryRow(ctx, `SELECT expires::text FROM `+f.prefix+`sessions`).Scan(&e))
		return e
	}
	before := expires()
	time.Sleep(5 * time.Millisecond) // the point: time passes between the Bind and the reads
	i, err := f.Info(ctx, "k")
	require.NoError(t, err)
	_, err = f.UserSessions(ctx, "idx:ann")
	require.NoError(t, err)
	require.Equal(t, before, expires())
	require.Equal(t, time.Hour, i.Idle)
	require.Equal(t, "192.0.2.1", i.IP)
	require.Equal(t, "dev", i.Device)
	require.WithinDuration(t, i.Created.Add(time.Hour), i.Expires, time.Second)
}

func TestScanMeetsARenewedSessionOnceAndSkipsOtherRows(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	for i := range 10 {
		require.NoError(t, f.Create(ctx, fmt.Sprint("p{", i), nil, long))
		require.NoError(t, f.Create(ctx, fmt.Sprint("q{", i), nil, long))
	}
	seen := map[string]int{}
	cursor, pages := "", 0
	for {
		page, next, err := f.Scan(ctx, "p{", cursor, 3)
		require.NoError(t, err)
		pages++
		for _, i := range page {
			seen[i.Key]++
		}
		if pages == 2 {
			// p{0} was met on the first page; renewed, it keeps its place.
			require.NoError(t, f.Rename(ctx, "p{0", "p{0-renewed"))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, 10)
	for k, n := range seen {
		require.Equal(t, 1, n, k)
		require.NotEqual(t, "p{0-renewed", k)
	}
	require.GreaterOrEqual(t, pages, 7, "a page reads 3 rows, whatever they are")
	_, _, err := f.Scan(ctx, "p{", "x", 3)
	require.Error(t, err)
}

func TestDestroyAllGoesInBatches(t *testing.T) {
	f := newFixture(t, &postgres.Options{SweepBatch: 7})
	ctx := t.Context()
	for i := range 30 {
		require.NoError(t, f.Bind(ctx, "", fmt.Sprint("p{", i), binding("ann", i)))
	}
	for i := range 5 {
		require.NoError(t, f.Rename(ctx, fmt.Sprint("p{", i), fmt.Sprint("p{r", i)))
	}
	require.NoError(t, f.Create(ctx, "q{0", nil, long))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 s' WHERE key = 'p{29'`))
	n, err := f.DestroyAll(ctx, "p{")
	require.NoError(t, err)
	require.Equal(t, 29, n)
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions`))
	n, err = f.Count(ctx, "q{")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// A table made before the binding (here: one whose binding was dropped)
// gets its columns, check and index from Migrate, and keeps its sessions.
func TestMigrateAddsTheBindingToOldTables(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "old", field("a", "1"), long))
	require.NoError(t, f.exec(t, `DROP INDEX %[1]ssessions_user`))
	require.NoError(t, f.exec(t, `ALTER TABLE %[1]ssessions DROP COLUMN user_index, DROP COLUMN public_id,
		DROP COLUMN user_id, DROP COLUMN device, DROP COLUMN ip`))
	// Ordinary operations do not need the binding.
	require.NoError(t, f.Rename(ctx, "old", "old2"))
	require.Error(t, f.Bind(ctx, "old2", "bound", binding("ann", 1)), "not migrated yet")
	require.NoError(t, f.Migrate(ctx))
	require.NoError(t, f.Bind(ctx, "old2", "bound", binding("ann", 1)))
	vals, err := f.Get(ctx, "bound", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM pg_indexes WHERE indexname = '%ssessions_user'`))
	require.Error(t, f.exec(t, `UPDATE %ssessions SET public_id = NULL WHERE key = 'bound'`), "the check holds")
	require.NoError(t, f.Migrate(ctx), "again: nothing to do")
}

func TestHandEditsOfTheBindingThatWouldCorruptAreRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Bind(ctx, "", "k", binding("ann", 1)))
	require.NoError(t, f.Create(ctx, "m", nil, long))
	require.NoError(t, f.Rename(ctx, "m", "m2"))
	for _, edit := range []string{
		`UPDATE %ssessions SET public_id = NULL WHERE key = 'k'`,
		`UPDATE %ssessions SET device = NULL WHERE key = 'k'`,
		`UPDATE %ssessions SET user_id = '' WHERE key = 'k'`,
		`UPDATE %ssessions SET user_index = 'i', public_id = 'p', user_id = 'u', device = '', ip = '' WHERE key = 'm'`, // a bound marker
	} {
		var pgErr *pgconn.PgError
		require.ErrorAs(t, f.exec(t, edit), &pgErr, edit)
	}
}

// countingConn counts the writes to the server: pgx writes each round
// trip's messages (a pipeline included) in one write.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Round trips of each operation once its statements are prepared: one
// each, and the same on a bound session as on an unbound one.
func TestRoundTripsOfTheUserOperations(t *testing.T) {
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(testserver.Postgres(t).URL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	var writes atomic.Int64
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return countingConn{c, &writes}, err
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer p.Close()
	s, err := postgres.New(p, &postgres.Options{TablePrefix: fmt.Sprintf("rt%d_", prefixes.Add(1)), SweepInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(ctx))

	b := binding("ann", 0)
	b.Max = 3
	i := 0
	ops := []struct {
		name string
		op   func() error
	}{
		{"Bind new", func() error { i++; return s.Bind(ctx, "", fmt.Sprint("n", i), b) }},
		{"Bind", func() error {
			i++
			if err := s.Create(ctx, fmt.Sprint("c", i), nil, long); err != nil {
				return err
			}
			writes.Add(-1) // the Create
			return s.Bind(ctx, fmt.Sprint("c", i), fmt.Sprint("b", i), b)
		}},
		{"Bind refused", func() error {
			i++
			r := b
			r.Refuse = true
			if err := s.Bind(ctx, "", fmt.Sprint("r", i), r); !errors.Is(err, sessionkit.ErrTooManySessions) {
				return fmt.Errorf("want ErrTooManySessions, got %v", err)
			}
			return nil
		}},
		{"UserSessions", func() error { _, err := s.UserSessions(ctx, b.Index); return err }},
		// b6 is the newest of the three sessions under the cap.
		{"Info", func() error { _, err := s.Info(ctx, "b6"); return err }},
		{"Get bound", func() error { _, err := s.Get(ctx, "b6", "a"); return err }},
		{"Revoke one", func() error { _, err := s.Revoke(ctx, b.Index, []string{"x"}, ""); return err }},
		{"Revoke all", func() error {
			_, err := s.Revoke(ctx, "idx:nobody", nil, "")
			return err
		}},
		{"Scan page", func() error { _, _, err := s.Scan(ctx, "", "", 10); return err }},
		{"Count", func() error { _, err := s.Count(ctx, ""); return err }},
		{"DestroyAll (one batch)", func() error { _, err := s.DestroyAll(ctx, "none{"); return err }},
	}
	for _, o := range ops {
		require.NoError(t, o.op(), o.name) // prepares the statements
		require.NoError(t, o.op(), o.name)
		writes.Store(0)
		require.NoError(t, o.op(), o.name)
		t.Logf("%-24s %d round trip(s)", o.name, writes.Load())
		require.Equal(t, int64(1), writes.Load(), o.name)
	}
	var mode string
	require.NoError(t, p.QueryRow(ctx, `SELECT current_setting('plan_cache_mode')`).Scan(&mode))
	require.Equal(t, "auto", mode, "Bind's generic plans are for its own transaction only")
}
