package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
	"github.com/sessionkit/sessionkit/storeurl"
)

// One PostgreSQL for the whole binary (initdb takes seconds); every test
// gets tables of its own under a fresh prefix.
func TestMain(m *testing.M) {
	code := m.Run()
	testserver.StopPostgres()
	os.Exit(code)
}

var (
	poolOnce sync.Once
	pool     *pgxpool.Pool
	prefixes atomic.Int64
)

// db returns the binary's pool on the test PostgreSQL.
func db(t testing.TB) *pgxpool.Pool {
	t.Helper()
	srv := testserver.Postgres(t)
	poolOnce.Do(func() {
		var err error
		pool, err = pgxpool.New(context.Background(), srv.URL)
		require.NoError(t, err)
	})
	require.NotNil(t, pool, "the pool could not be made (see the first test)")
	return pool
}

// fixture is a migrated store under a fresh table prefix.
type fixture struct {
	*postgres.Store
	pool   *pgxpool.Pool
	prefix string
}

func newFixture(t testing.TB, opts *postgres.Options) *fixture {
	t.Helper()
	p := db(t)
	o := postgres.Options{}
	if opts != nil {
		o = *opts
	}
	o.TablePrefix = fmt.Sprintf("t%d_", prefixes.Add(1))
	s, err := postgres.New(p, &o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if !o.AutoMigrate {
		require.NoError(t, s.Migrate(context.Background()))
	}
	return &fixture{Store: s, pool: p, prefix: o.TablePrefix}
}

// ttl reads the expiry of the row under key, as a person with psql would,
// without refreshing it. An expired row is no record.
func (f *fixture) ttl(ctx context.Context, key string) (time.Duration, bool, error) {
	var expires, now time.Time
	err := f.pool.QueryRow(ctx, `SELECT expires, now() FROM `+f.prefix+`sessions WHERE key = $1`, key).Scan(&expires, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	left := expires.Sub(now)
	return left, left > 0, nil
}

// setRaw writes one field directly, without refreshing the expiry.
func (f *fixture) setRaw(ctx context.Context, key, name string, value []byte) error {
	_, err := f.pool.Exec(ctx, `WITH s AS (SELECT id FROM `+f.prefix+`sessions WHERE key = $1 AND record IS NULL),
	w AS (INSERT INTO `+f.prefix+`fields (session_id, name, value) SELECT id, $2, $3 FROM s
		ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value RETURNING xmax = 0 AS inserted)
	UPDATE `+f.prefix+`sessions SET nfields = nfields + 1 WHERE id = (SELECT id FROM s) AND (SELECT inserted FROM w)`,
		key, name, value)
	return err
}

func (f *fixture) exec(t testing.TB, sql string, args ...any) error {
	t.Helper()
	_, err := f.pool.Exec(t.Context(), fmt.Sprintf(sql, f.prefix), args...)
	return err
}

func (f *fixture) scalar(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(t.Context(), fmt.Sprintf(sql, f.prefix), args...).Scan(&n))
	return n
}

func harness(t *testing.T) *adaptertest.Harness {
	f := newFixture(t, nil)
	return &adaptertest.Harness{
		Store:  f.Store,
		TTL:    f.ttl,
		SetRaw: f.setRaw,
		// The schema makes every kind impossible: typed, NOT NULL columns,
		// check constraints on the policy, opaque bytea values.
		// TestHandEditsThatWouldCorruptAreRefused shows it.
		Corrupt:      func(context.Context, string, adaptertest.Corruption) error { return errors.ErrUnsupported },
		IndexEntries: f.indexEntries,
	}
}

// indexEntries counts the rows bound to the user index, as the harness's
// IndexEntries: the entries of sessions_user that any statement can see.
// An expired row is no entry, as it is no record for ttl: every statement
// ignores it, and UserSessions or the sweeper deletes it
// (TestListingDeletesTheUsersExpiredRows counts those too).
func (f *fixture) indexEntries(ctx context.Context, index string) (int, error) {
	var n int
	err := f.pool.QueryRow(ctx, `SELECT count(*) FROM `+f.prefix+`sessions WHERE user_index = $1 AND expires > now()`,
		index).Scan(&n)
	return n, err
}

func TestConformance(t *testing.T) { adaptertest.Run(t, harness) }

var (
	short = sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}
	long  = sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
)

func field(name, value string) []sessionkit.Field {
	return []sessionkit.Field{{Name: name, Value: []byte(value)}}
}

func TestHandEditsThatWouldCorruptAreRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", field("a", "1"), long))
	for _, edit := range []string{
		`UPDATE %ssessions SET expires = 'infinity'`,
		`UPDATE %ssessions SET expires = NULL`,
		`UPDATE %ssessions SET created = 'infinity', expires = 'infinity'`,
		`UPDATE %ssessions SET idle = '0'`,
		`UPDATE %ssessions SET absolute = '-1 hour'`,
		`UPDATE %ssessions SET expires = created + absolute + interval '1 ms'`,
		`UPDATE %ssessions SET nfields = -1`,
		`UPDATE %ssessions SET renamed_to = 'elsewhere'`,
		`UPDATE %ssessions SET renamed_to = 'elsewhere', record = id`, // a marker with fields
		`UPDATE %ssessions SET renamed_to = '', record = id, nfields = 0`,
		`UPDATE %ssessions SET renamed_to = 'elsewhere', record = id, nfields = 0`, // outliving RenewMarkerTTL
		`INSERT INTO %sfields (session_id, name, value) VALUES (-1, 'orphan', '')`,
		`UPDATE %sfields SET value = NULL`,
	} {
		var pgErr *pgconn.PgError
		require.ErrorAs(t, f.exec(t, edit), &pgErr, edit)
	}
	vals, err := f.Get(ctx, "k", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
}

// nfields is the store's own count, which the schema cannot check against
// the rows. A count edited by hand stays off by as much, floored at zero,
// and never makes an operation fail.
func TestAHandEditedFieldCountNeverMakesOperationsFail(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", append(field("a", "1"), field("b", "2")...), long))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET nfields = 0`), "an undercount")
	require.NoError(t, f.Delete(ctx, "k", "a"))
	require.NoError(t, f.Delete(ctx, "k", "a"))
	require.NoError(t, f.Clear(ctx, "k"))
	n, err := f.Len(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %sfields`), "the fields are gone")

	require.NoError(t, f.Set(ctx, "k", field("a", "1"), 0))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET nfields = 10`), "an overcount by 9")
	require.ErrorIs(t, f.Set(ctx, "k", field("b", "2"), 10), sessionkit.ErrTooManyFields, "the limit counts it")
	require.NoError(t, f.Clear(ctx, "k"))
	n, err = f.Len(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 9, n, "it stays off by as much")
}

func TestConcurrentDeletesAndWritesKeepTheCountExact(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", nil, long))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			name := fmt.Sprint("f", i%5)
			for range 10 {
				assert.NoError(t, f.Set(ctx, "k", field(name, "x"), 0))
				assert.NoError(t, f.Delete(ctx, "k", name))
				if i == 0 {
					assert.NoError(t, f.Clear(ctx, "k"))
				}
			}
		})
	}
	wg.Wait()
	n, err := f.Len(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, f.scalar(t, `SELECT count(*) FROM %sfields`), n, "nfields matches the rows")
}

func TestConcurrentRenamesExactlyOneWins(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	for round := range 5 {
		old := fmt.Sprint("old", round)
		require.NoError(t, f.Create(ctx, old, field("a", "1"), long))
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				err := f.Rename(ctx, old, fmt.Sprint("new", round, "-", i))
				if err == nil {
					wins.Add(1)
				} else {
					assert.ErrorIs(t, err, sessionkit.ErrRenewed)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, wins.Load())
	}
	require.Equal(t, 5, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE record IS NULL`), "one live copy per session")
}

func TestRenameLeavesAMarker(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "old", field("a", "1"), long))
	require.NoError(t, f.Rename(ctx, "old", "new"))

	for name, err := range map[string]error{
		"Get":    second(f.Get(ctx, "old", "a")),
		"Set":    f.Set(ctx, "old", field("b", "2"), 0),
		"Touch":  second(f.Touch(ctx, "old")),
		"Rename": f.Rename(ctx, "old", "other"),
	} {
		require.ErrorIs(t, err, sessionkit.ErrRenewed, name)
	}
	require.ErrorIs(t, f.Create(ctx, "old", nil, long), sessionkit.ErrExists, "Create on a marker")
	require.NoError(t, f.Create(ctx, "taken", nil, long))
	require.ErrorIs(t, f.Rename(ctx, "taken", "old"), sessionkit.ErrExists, "Rename onto a marker")

	ttl, ok, err := f.ttl(ctx, "old")
	require.NoError(t, err)
	require.True(t, ok)
	require.LessOrEqual(t, ttl, sessionkit.RenewMarkerTTL, "the marker expires within RenewMarkerTTL")

	require.NoError(t, f.Rename(ctx, "new", "newer"))
	require.NoError(t, f.Destroy(ctx, "old"), "Destroy follows the markers")
	_, err = f.Get(ctx, "newer", "a")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE key <> 'taken'`), "no marker outlives the record")
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %sfields`))
}

func second[T any](_ T, err error) error { return err }

func TestAnExpiredMarkerIsGone(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "old", field("a", "1"), long))
	require.NoError(t, f.Rename(ctx, "old", "new"))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 ms', sweep_after = now() - interval '1 ms' WHERE key = 'old'`))
	_, err := f.Get(ctx, "old", "a")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	require.NoError(t, f.Destroy(ctx, "old"))
	_, err = f.Get(ctx, "new", "a")
	require.NoError(t, err, "Destroy through an expired marker does not reach the record")
	require.NoError(t, f.Create(ctx, "old", nil, long), "the key is free again")
}

func TestKeysOfExpiredRowsCanBeUsedAgain(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", field("a", "1"), long))
	require.NoError(t, f.Create(ctx, "dst", field("a", "2"), long))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 ms', sweep_after = now() - interval '1 ms'`))
	require.NoError(t, f.Create(ctx, "k", field("b", "2"), long))
	all, err := f.GetAll(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"b": []byte("2")}, all, "nothing of the expired session comes back")
	require.NoError(t, f.Rename(ctx, "k", "dst"), "Rename onto an expired row")
	all, err = f.GetAll(ctx, "dst")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"b": []byte("2")}, all)
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %sfields`), "the expired sessions' fields went with them")
}

func TestSweepDeletesExpiredRowsInBatches(t *testing.T) {
	f := newFixture(t, &postgres.Options{SweepInterval: -1, SweepBatch: 100})
	ctx := t.Context()
	for i := range 250 {
		require.NoError(t, f.Create(ctx, fmt.Sprint("short", i), field("a", "1"), short))
	}
	require.NoError(t, f.Create(ctx, "long", field("a", "1"), long))
	require.NoError(t, f.Rename(ctx, "short0", "moved"))
	n, err := f.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing has expired yet")

	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 ms', sweep_after = now() - interval '1 ms' WHERE key <> 'long'`))
	n, err = f.Sweep(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 250, "250 sessions, and the marker unless it went with its record")
	count, err := f.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, count)
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions`), "no row but the live session's is left")
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %sfields`), "fields went with their sessions")
	vals, err := f.Get(ctx, "long", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
}

// A sweep deletes a batch of expired rows, and a record's delete cascades
// to its markers. Two sweeps at once, one holding a marker and the record
// of another marker, the other the reverse, would each wait for the other
// in the cascade: sweeps lock markers and records in a consistent order.
// A trigger holds the first sweep once it has its batch, so that the
// second takes the rest.
func TestConcurrentSweepsDoNotDeadlock(t *testing.T) {
	f := newFixture(t, &postgres.Options{SweepInterval: -1, SweepBatch: 2})
	other, err := postgres.New(f.pool, &postgres.Options{TablePrefix: f.prefix, SweepInterval: -1, SweepBatch: 2})
	require.NoError(t, err)
	defer other.Close()
	ctx := t.Context()
	for _, n := range []string{"1", "2"} {
		require.NoError(t, f.Create(ctx, "m"+n, field("a", "1"), long))
		require.NoError(t, f.Rename(ctx, "m"+n, "r"+n)) // record rN, marker mN
	}
	// Expired, in the sweep order m1, r2, r1, m2.
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 hour',
		sweep_after = now() - interval '1 hour' + array_position(array['m1', 'r2', 'r1', 'm2'], key) * interval '1 s'`))
	lock := prefixes.Add(1) << 32
	require.NoError(t, f.exec(t, `CREATE FUNCTION %[1]spause() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(`+fmt.Sprint(lock)+`); RETURN OLD; END $$`))
	require.NoError(t, f.exec(t, `CREATE TRIGGER pause BEFORE DELETE ON %[1]ssessions
		FOR EACH ROW WHEN (OLD.key = 'm1') EXECUTE FUNCTION %[1]spause()`))
	hold, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer hold.Rollback(context.Background())
	_, err = hold.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lock)
	require.NoError(t, err)

	first, second := make(chan error, 1), make(chan error, 1)
	go func() { _, err := f.Sweep(ctx); first <- err }()
	waitForLockWaits(t, f.pool, "advisory", 1) // the first sweep holds m1, at least
	go func() { _, err := other.Sweep(ctx); second <- err }()
	waitForLockWaits(t, f.pool, "", 2) // the second waits for a row the first holds
	require.NoError(t, hold.Rollback(ctx))
	require.NoError(t, <-first)
	require.NoError(t, <-second)
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %ssessions`))
}

func TestTheSweeperReportsItsErrors(t *testing.T) {
	errs := make(chan error, 100)
	s, err := postgres.New(db(t), &postgres.Options{
		TablePrefix:   fmt.Sprintf("t%d_", prefixes.Add(1)), // no tables: Migrate was not called
		SweepInterval: time.Millisecond,
		OnSweepError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	require.NoError(t, err)
	defer s.Close()
	err = <-errs
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42P01", pgErr.Code, "undefined_table")
}

func TestTheSweeperRunsUntilClose(t *testing.T) {
	f := newFixture(t, &postgres.Options{SweepInterval: 5 * time.Millisecond})
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", field("a", "1"), long))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() - interval '1 ms', sweep_after = now() - interval '1 ms'`))
	require.Eventually(t, func() bool {
		return f.scalar(t, `SELECT count(*) FROM %ssessions`) == 0
	}, 10*time.Second, 5*time.Millisecond, "the sweeper deletes the expired row")

	require.NoError(t, f.Close())
	require.NoError(t, f.Close(), "a second Close does nothing")
	_, err := f.Get(ctx, "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrClosed)
}

func TestAutoMigrateCreatesTheTablesOnFirstUse(t *testing.T) {
	f := newFixture(t, &postgres.Options{AutoMigrate: true})
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 4 { // concurrent first uses migrate once, in order
		wg.Go(func() { assert.NoError(t, f.Create(ctx, fmt.Sprint("k", i), field("a", "1"), long)) })
	}
	wg.Wait()
	n, err := f.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 4, n)
}

// waitForLockWaits waits until n backends wait for a lock of the kind
// (pg_stat_activity.wait_event: "relation" for a table, "advisory"; ""
// for any).
func waitForLockWaits(t *testing.T, pool *pgxpool.Pool, kind string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND (wait_event = $1 OR $1 = '')`, kind).Scan(&waiting))
		return waiting >= n
	}, 10*time.Second, time.Millisecond, "%d backends waiting for a lock on a %s", n, kind)
}

// holdRow starts a transaction that holds the row of key, as any writer
// does for the length of its transaction, and ends it at the test's end.
func (f *fixture) holdRow(t *testing.T, key string) (release func()) {
	tx, err := f.pool.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `UPDATE `+f.prefix+`sessions SET nfields = nfields WHERE key = $1`, key)
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(context.Background()) }) }
	t.Cleanup(release)
	return release
}

// A table lock that DDL waits for queues every later writer of the table
// behind it. On tables that are all there, a new process's AutoMigrate
// therefore runs no DDL at all.
func TestAutoMigrateOfMigratedTablesWaitsForNoWriter(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "held", nil, long))
	require.NoError(t, f.Create(ctx, "other", field("a", "1"), long))
	f.holdRow(t, "held")

	fresh, err := postgres.New(f.pool, &postgres.Options{TablePrefix: f.prefix, AutoMigrate: true, SweepInterval: -1})
	require.NoError(t, err)
	defer fresh.Close()
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = fresh.Get(c, "other", "a")
	require.NoError(t, err, "a new process's first operation, which migrates")
}

// When DDL must run on a table in use (an index is missing), it gives up
// soon rather than stop the traffic queued behind it; a later Migrate
// makes the index.
func TestAMigrationThatMustWaitForAWriterGivesUpSoon(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "held", nil, long))
	require.NoError(t, f.Create(ctx, "other", field("a", "1"), long))
	require.NoError(t, f.exec(t, `DROP INDEX %ssessions_sweep`))
	release := f.holdRow(t, "held")

	start := time.Now()
	migrated := make(chan error, 1)
	go func() { migrated <- f.Migrate(ctx) }()
	waitForLockWaits(t, f.pool, "relation", 1)
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := f.Get(c, "other", "a")
	require.NoError(t, err, "an operation that came after the waiting DDL")
	err = <-migrated
	t.Logf("the migration gave up after %v", time.Since(start).Round(time.Millisecond))
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "55P03", pgErr.Code, "lock_not_available")

	release()
	require.NoError(t, f.Migrate(ctx), "once the writer is done")
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM pg_indexes WHERE indexname = '%ssessions_sweep'`))
}

// Operations that wait for another's migration (Options.AutoMigrate) wait
// only as long as their context allows.
func TestAnOperationWaitingForTheMigrationHonoursItsContext(t *testing.T) {
	pool := db(t)
	ctx := t.Context()
	prefix := fmt.Sprintf("t%d_", prefixes.Add(1))
	// Another process is migrating the same tables, and holds the lock.
	other, err := pool.Begin(ctx)
	require.NoError(t, err)
	var once sync.Once
	done := func() { once.Do(func() { _ = other.Rollback(context.Background()) }) }
	defer done()
	_, err = other.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sessionkit migrate ' || $1))`, prefix)
	require.NoError(t, err)
	// Before the fix an operation waited for the migration whatever its
	// context said, so this test would wait for ever: the other process
	// gives up after a while.
	time.AfterFunc(5*time.Second, done)

	s, err := postgres.New(pool, &postgres.Options{TablePrefix: prefix, AutoMigrate: true, SweepInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	first := make(chan error, 1)
	go func() { first <- s.Create(ctx, "k", field("a", "1"), long) }()
	waitForLockWaits(t, pool, "advisory", 1)

	c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Get(c, "k", "a")
	took := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the caller's own deadline")
	require.Less(t, took, time.Second, "it returned at its deadline")

	done()
	require.NoError(t, <-first, "the first operation migrates once the other process is done")
	_, err = s.Get(ctx, "k", "a")
	require.NoError(t, err)
}

// Options.Timeout cuts an operation short as an outage: the caller's
// context is still live, so the error is ErrUnavailable, not the context's.
func TestTimeoutIsAnOutage(t *testing.T) {
	const timeout = 200 * time.Millisecond
	f := newFixture(t, &postgres.Options{Timeout: timeout})
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", field("a", "1"), long))
	f.holdRow(t, "k") // the next Get waits for the row

	start := time.Now()
	_, err := f.Get(ctx, "k", "a")
	took := time.Since(start)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	require.Equal(t, 503, sessionkit.ErrorStatus(err))
	require.GreaterOrEqual(t, took, timeout)
	require.Less(t, took, time.Second)

	c, cancel := context.WithTimeout(ctx, timeout/4)
	defer cancel()
	_, err = f.Get(c, "k", "a")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the caller's own deadline, sooner")
	require.NotErrorIs(t, err, sessionkit.ErrUnavailable)
}

func TestBadPrefixIsRefused(t *testing.T) {
	pool := db(t)
	// PostgreSQL folds unquoted names to lower case, so an upper-case
	// prefix would name constraints that the error mapping cannot find.
	for _, p := range []string{"1abc", "a-b", "a;drop table x;", "x\"", "abcdefghijabcdefghijabcdefghijabcdefghijX", "Web_", "wEb_"} {
		_, err := postgres.New(pool, &postgres.Options{TablePrefix: p, SweepInterval: -1})
		require.ErrorContains(t, err, "table prefix", p)
	}
}

func TestNilPoolIsRefused(t *testing.T) {
	s, err := postgres.New(nil, &postgres.Options{SweepInterval: time.Millisecond})
	require.ErrorContains(t, err, "nil pool")
	require.Nil(t, s, "no store, so no sweeper to panic on the nil pool")
}

// Incr checks the stored text in SQL: it must take exactly what
// driver.AddInt (strconv.ParseInt) takes, whatever PostgreSQL's own casts
// accept (spaces around an int8, and from version 16 hex and underscores).
func TestIncrTakesExactlyWhatParseIntTakes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", nil, long))
	values := []string{"0", "5", "+5", "-5", "007", "-0", "+0", "", "+", "-", "+-1", " 5", "5 ", "5\n", "\t5",
		"0x10", "1_000", "1e3", "1.0", "٣", "5\x00", "\xff5", "\\5", `"5"`, "null",
		"9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
		"10000000000000000000", "-10000000000000000000", "0000000000000000000000000009223372036854775807",
		"00000000000000000000000000000000000000000000000000000000000000000000000001",
		"99999999999999999999999999999999999999999999999999999999999999999999999999"}
	deltas := []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64, -1_000_000_000_000_000_000}
	for i, v := range values {
		for j, d := range deltas {
			name := fmt.Sprintf("f%d_%d", i, j)
			require.NoError(t, f.Set(ctx, "k", field(name, v), 0))
			want, wantErr := driver.AddInt([]byte(v), d)
			got, err := f.Incr(ctx, "k", name, d, 0)
			stored, gerr := f.Get(ctx, "k", name)
			require.NoError(t, gerr)
			if wantErr != nil {
				require.ErrorIs(t, err, sessionkit.ErrDecode, "%q + %d", v, d)
				require.NotErrorIs(t, err, sessionkit.ErrUnavailable, "%q + %d", v, d)
				require.Equal(t, []byte(v), stored[0], "%q + %d: nothing changes", v, d)
				continue
			}
			require.NoError(t, err, "%q + %d", v, d)
			require.Equal(t, want, got, "%q + %d", v, d)
			require.Equal(t, strconv.AppendInt(nil, want, 10), stored[0], "%q + %d: stored as decimal text", v, d)
		}
	}
	got, err := f.Incr(ctx, "k", "new", math.MinInt64, 0)
	require.NoError(t, err)
	require.Equal(t, int64(math.MinInt64), got, "a new field holds delta")
}

func TestAFailedIncrWritesNothing(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", field("s", `"x"`), long))
	require.NoError(t, f.exec(t, `UPDATE %ssessions SET expires = now() + interval '1 minute'`))
	before, _, err := f.ttl(ctx, "k")
	require.NoError(t, err)
	require.ErrorIs(t, second(f.Incr(ctx, "k", "s", 1, 0)), sessionkit.ErrDecode)
	require.ErrorIs(t, second(f.Incr(ctx, "k", "new", 1, 1)), sessionkit.ErrTooManyFields)
	after, _, err := f.ttl(ctx, "k")
	require.NoError(t, err)
	require.Less(t, after, before+time.Second, "the expiry is not refreshed")
	require.Equal(t, 1, f.scalar(t, `SELECT nfields FROM %ssessions`))
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %sfields`))
}

func TestConcurrentIncrsAndPopsKeepTheCountExact(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", nil, long))
	var wg sync.WaitGroup
	var popped atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			name := fmt.Sprint("f", i%5)
			for range 10 {
				_, err := f.Incr(ctx, "k", name, 1, 0)
				assert.NoError(t, err)
				v, err := f.Pop(ctx, "k", name)
				assert.NoError(t, err)
				if v != nil {
					n, err := strconv.ParseInt(string(v), 10, 64)
					assert.NoError(t, err)
					popped.Add(n)
				}
			}
		})
	}
	wg.Wait()
	n, err := f.Len(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, f.scalar(t, `SELECT count(*) FROM %sfields`), n, "nfields matches the rows")
	left := f.scalar(t, `SELECT coalesce(sum(convert_from(value, 'UTF8')::bigint), 0) FROM %sfields`)
	require.EqualValues(t, 200, popped.Load()+int64(left), "every Incr is popped or still there")
}

func TestNamesPostgreSQLCannotStore(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	require.NoError(t, f.Create(ctx, "k", nil, long))
	require.ErrorIs(t, f.Set(ctx, "k", field("nul\x00", "x"), 0), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, f.Create(ctx, "k2", field("nul\x00", "x"), long), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Get(ctx, "k", "nul\x00")), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Get(ctx, "k", "a", "nul\x00")), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Has(ctx, "k", "nul\x00")), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, f.Delete(ctx, "k", "nul\x00"), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Incr(ctx, "k", "nul\x00", 1, 0)), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Pop(ctx, "k", "nul\x00")), sessionkit.ErrInvalidKey)
	require.ErrorIs(t, second(f.Incr(ctx, "k", randomName(10_000), 1, 0)), sessionkit.ErrTooLarge)
	require.ErrorIs(t, f.Set(ctx, "k", field(randomName(10_000), "x"), 0), sessionkit.ErrTooLarge)
	require.ErrorIs(t, f.Create(ctx, "k2", field(randomName(10_000), "x"), long), sessionkit.ErrTooLarge)
	_, err := f.Get(ctx, "k", randomName(10_000))
	require.NoError(t, err, "a name too long to store can still be looked up (and is not there)")
	n, err := f.Len(ctx, "k")
	require.NoError(t, err)
	require.Zero(t, n, "nothing was written")
}

// randomName is n bytes that do not compress (PostgreSQL compresses long
// index entries before it measures them).
func randomName(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}

func TestUnreachableDatabaseIsUnavailableNotEmpty(t *testing.T) {
	p, err := pgxpool.New(t.Context(), "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1")
	require.NoError(t, err)
	defer p.Close()
	s, err := postgres.New(p, &postgres.Options{SweepInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Get(t.Context(), "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var connErr *pgconn.ConnectError
	require.ErrorAs(t, err, &connErr, "pgx's own error stays reachable")
}

func TestStoreURLMakesTheTablesOfItsPrefixOnFirstUse(t *testing.T) {
	srv := testserver.Postgres(t)
	ctx := t.Context()
	prefix := fmt.Sprintf("url%d_", prefixes.Add(1))
	s, closer, err := storeurl.Open(srv.URL + "&table_prefix=" + prefix)
	require.NoError(t, err)
	defer closer.Close()
	require.NoError(t, s.Create(ctx, "k", field("a", "1"), long))
	f := &fixture{pool: db(t), prefix: prefix}
	require.Equal(t, 1, f.scalar(t, `SELECT count(*) FROM %ssessions WHERE key = 'k'`))

	s, closer, err = storeurl.Open(srv.URL + "&migrate=false&table_prefix=" + prefix + "none_")
	require.NoError(t, err)
	defer closer.Close()
	err = s.Create(ctx, "k", nil, long)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable, "migrate=false: no tables, and none made")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42P01", pgErr.Code, "undefined_table")
}

// The schema's claim: the update that refreshes a session's expiry on every
// operation is a heap-only (HOT) update, which writes no index entry.
func TestRefreshesAreHeapOnlyUpdates(t *testing.T) {
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(testserver.Postgres(t).URL)
	require.NoError(t, err)
	cfg.MaxConns = 1 // one backend, so that its statistics can be flushed
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer p.Close()
	var version int
	require.NoError(t, p.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 150000 {
		t.Skip("pg_stat_force_next_flush needs PostgreSQL 15")
	}
	prefix := fmt.Sprintf("hot%d_", prefixes.Add(1))
	s, err := postgres.New(p, &postgres.Options{TablePrefix: prefix, SweepInterval: -1})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(ctx))
	for i := range 100 {
		if i%2 == 0 { // bound sessions refresh as the others do
			require.NoError(t, s.Bind(ctx, "", fmt.Sprint("k", i), binding(fmt.Sprint("u", i%3), i)))
			continue
		}
		require.NoError(t, s.Create(ctx, fmt.Sprint("k", i), field("a", "1"), long))
	}
	for range 5 {
		for i := range 100 {
			_, err := s.Get(ctx, fmt.Sprint("k", i), "a")
			require.NoError(t, err)
		}
	}
	_, err = p.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	var updates, hot int
	require.NoError(t, p.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1`,
		prefix+"sessions").Scan(&updates, &hot))
	require.Equal(t, 500, updates)
	// A refresh that moves sweep_after into the next minute is not HOT:
	// at most one per session here.
	t.Logf("%d of %d refreshes were heap-only updates", hot, updates)
	require.GreaterOrEqual(t, hot, 400, "heap-only updates among %d", updates)
}

func TestDestroysThroughBothKeysAtOnceEndTheSession(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	for round := range 20 {
		old, moved := fmt.Sprint("old", round), fmt.Sprint("new", round)
		require.NoError(t, f.Create(ctx, old, field("a", "1"), long))
		require.NoError(t, f.Rename(ctx, old, moved))
		var wg sync.WaitGroup
		for _, k := range []string{old, moved, old, moved} {
			wg.Go(func() { assert.NoError(t, f.Destroy(ctx, k)) })
		}
		wg.Wait()
	}
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %ssessions`))
	require.Zero(t, f.scalar(t, `SELECT count(*) FROM %sfields`))
}
