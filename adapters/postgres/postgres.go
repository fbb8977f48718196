// Package postgres is a sessionkit.Store on PostgreSQL 14 or newer (pgx v5,
// pgxpool), for services that run PostgreSQL and no Redis.
//
// # Layout
//
// Two tables (names start with Options.TablePrefix, default "sessionkit_";
// schema.go has the DDL and every statement):
//
//	sessionkit_sessions   one row per session: key, created, idle, absolute, expires,
//	                      sweep_after, nfields (and, on a Rename marker, renamed_to, record;
//	                      on a session bound to a user, user_index, public_id, user_id,
//	                      device, ip)
//	sessionkit_fields     one row per session field: session_id, name, value (bytea)
//
// One row per field, not one document per session, so that a write touches
// only its fields and a read fetches only the fields asked for: the cost of
// a request does not grow with the session, and writers of different fields
// never overwrite each other (two writers of one jsonb document would have
// to lock it and rewrite it whole). Fields hang off the session's id, not
// its key, so that Rename changes one row, and a foreign key with ON DELETE
// CASCADE deletes them with their session: no statement can leave a field
// without a session, however it races a delete.
//
// Values are the codec's bytes (JSON by default), so a session can be read
// and edited by hand:
//
//	SELECT name, convert_from(value, 'UTF8') FROM sessionkit_fields f
//	JOIN sessionkit_sessions s ON s.id = f.session_id WHERE s.key = 'session:…';
//
// # Statements
//
// Every operation is one SQL statement (data-modifying CTEs), so one round
// trip and one implicit transaction, and it checks and refreshes the expiry
// inside, on the database's clock: expires = least(now() + idle,
// created + absolute). An expired session is invisible to every statement
// at once; the sweeper deletes its rows within a minute or so, in batches,
// with FOR UPDATE SKIP LOCKED so that several processes can sweep side by
// side. The refresh makes every operation, reads included, a write: the
// schema keeps it a heap-only update (no index entry), and its commit waits
// for a WAL flush unless the connections run with synchronous_commit=off,
// as storeurl sets them (docs/backends.md has the measured difference). Every
// writer locks the session's row first, so the field limit of Set and Incr
// holds under concurrency: it is checked against a count kept in that row
// (nfields), exact once the lock is held, where counting the fields in the
// statement's snapshot could miss a writer that committed while this one
// waited.
//
// Rename changes the key of the session's row and inserts a marker row
// under the old key, naming the new key and pointing at the record, in one
// statement. The marker expires after sessionkit.RenewMarkerTTL, or with
// the record (the foreign key deletes it with the record).
//
// # Users
//
// The Store implements sessionkit.Users and sessionkit.Scanner. A
// session's binding to a user is in its own row, and a user's index is the
// rows that name it (a partial index on user_index, so unbound sessions
// cost nothing): Rename keeps the binding, since it changes only the key;
// Destroy, revocation and the sweeper remove it with the session; the
// index can neither miss a live session nor list a gone one (expired rows
// are invisible, and UserSessions deletes the user's). Ordinary operations
// on a bound session are the same statements as on any other.
//
// Bind and Revoke must see every earlier Bind of the user, for the cap and
// for a revocation to be complete, and one statement cannot: its snapshot
// is taken when it starts. Each therefore sends two statements in one
// round trip (a pgx batch, one implicit transaction): the first takes a
// transaction-scoped advisory lock on a hash of the table prefix and the
// user's index, and the second, whose snapshot comes once the lock is
// held, does the work. Bind counts the user's live sessions, deletes the
// oldest over the cap or refuses (sessionkit.ErrTooManySessions, nothing
// changed), and moves and binds the session as Rename moves it, in that
// statement. A Bind that moves a session from one user to another locks
// both users.
//
// UserSessions and Info are one statement each and refresh nothing.
// Scan walks the rows in the order of their ids, which Rename keeps, a
// page of limit rows a statement; Count and DestroyAll read the rows under
// the prefix (DestroyAll deletes them in batches of Options.SweepBatch).
// The tables of an older version get the binding's columns, check and index
// from Migrate; see schema.go for a large table's index.
//
// # Corruption
//
// Every column is typed and NOT NULL where it must be, and check
// constraints refuse an expiry policy the adapter would not write (a
// non-positive idle or absolute timeout, an infinite creation time, an
// expiry past the absolute deadline), a negative field count, and a Rename
// marker that names no key, counts fields or may outlive RenewMarkerTTL
// from its creation: the kinds of damage that the store contract removes on
// sight cannot be written, by hand or otherwise. Field values are opaque
// bytes, never decoded. What the schema cannot catch are values that are
// well-formed but wrong: a creation time in the future, or a field count
// (nfields) edited by hand. The count is the store's own, never recounted:
// one edited by hand stays off by as much until the session ends (Delete
// and Clear subtract what they delete, never going below zero), so Len
// reports it and Set's limit counts it; no operation fails on it.
//
// # Errors
//
// A missing or expired session is sessionkit.ErrNotFound; a key Rename moved
// away is sessionkit.ErrRenewed. Every error from pgx wraps
// sessionkit.ErrUnavailable and pgx's own error (a *pgconn.PgError, a
// net.Error, …), and so does Options.Timeout running out; a done context of
// the caller's wraps the context's error. A name or key
// PostgreSQL cannot store as text (a NUL byte) is sessionkit.ErrInvalidKey;
// one longer than an index entry can hold (about 2.7 kB) is
// sessionkit.ErrTooLarge. Incr on a field that does not hold the decimal
// text of an int64 (exactly what strconv.ParseInt takes, checked in SQL, not
// by PostgreSQL's looser casts), or whose sum leaves int64, is
// sessionkit.ErrDecode, and writes nothing.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// Defaults for the zero values of Options.
const (
	DefaultTablePrefix   = "sessionkit_"
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 1000
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// TablePrefix starts the names of the tables, indexes and constraints:
	// a lower-case letter or underscore, then lower-case letters, digits or
	// underscores, at most 40 bytes. (PostgreSQL folds unquoted names to
	// lower case, and the store recognises a constraint that trips by its
	// name.) Default DefaultTablePrefix. To put the tables in another
	// schema, set search_path in the connection string.
	TablePrefix string
	// AutoMigrate runs Migrate before the first operation (and again
	// before the next one, if it failed), which then takes a round trip
	// more: a look in the catalog. Operations that come meanwhile wait for
	// it as long as their context allows.
	AutoMigrate bool
	// SweepInterval is the time between two sweeps of expired rows.
	// Default DefaultSweepInterval; negative: no sweeper (call Sweep).
	SweepInterval time.Duration
	// SweepBatch is the most rows one sweep statement deletes. Default
	// DefaultSweepBatch.
	SweepBatch int
	// Timeout bounds each operation, the wait for a connection included:
	// past it the operation is cut short and fails with ErrUnavailable, as
	// when the server does not answer (a write cut short may still be
	// applied). The Migrate that AutoMigrate runs counts against the first
	// operation's; each statement of a Sweep has its own; a Migrate called
	// directly has none. Zero: no bound but the caller's context's
	// (storeurl sets 1 s).
	Timeout time.Duration
	// OnSweepError is called with the error of each background sweep that
	// fails (an ErrUnavailable; the next sweep comes at the next interval).
	// Default: the error is logged by slog.Default() at Warn level.
	OnSweepError func(error)
}

var prefixPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// Store is a sessionkit.Store on PostgreSQL. It implements
// sessionkit.Counter, sessionkit.Users, sessionkit.Scanner and io.Closer;
// operations after Close return sessionkit.ErrClosed.
type Store struct {
	pool    *pgxpool.Pool
	q       *queries
	batch   int
	timeout time.Duration

	onSweepError func(error)

	migrated  atomic.Bool   // no Migrate pending before the next operation
	migrateMu sync.Mutex    // guards migrating
	migrating chan struct{} // closed when the pending Migrate under way ends; nil if none
	closed    atomic.Bool

	stopSweeper context.CancelFunc
	done        sync.WaitGroup
}

var (
	_ sessionkit.Store   = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
	_ sessionkit.Users   = (*Store)(nil)
	_ sessionkit.Scanner = (*Store)(nil)
)

// New returns a Store on pool and starts its sweeper; opts may be nil. It
// does not contact the database. The Store does not own the pool: Close
// stops the sweeper, and closing the pool is the caller's job.
func New(pool *pgxpool.Pool, opts *Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("postgres: nil pool")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TablePrefix == "" {
		o.TablePrefix = DefaultTablePrefix
	}
	if !prefixPattern.MatchString(o.TablePrefix) {
		return nil, fmt.Errorf("postgres: table prefix %q: want a lower-case letter or underscore, then lower-case letters, digits or underscores, at most 40 bytes", o.TablePrefix)
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = DefaultSweepBatch
	}
	if o.OnSweepError == nil {
		o.OnSweepError = func(err error) { slog.Warn("sessionkit postgres: sweep failed", "error", err) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{pool: pool, q: newQueries(o.TablePrefix), batch: o.SweepBatch, timeout: max(o.Timeout, 0),
		onSweepError: o.OnSweepError, stopSweeper: cancel}
	s.migrated.Store(!o.AutoMigrate)
	if o.SweepInterval > 0 {
		s.done.Add(1)
		go s.sweeper(ctx, o.SweepInterval)
	}
	return s, nil
}

// Migrate creates the tables and indexes that do not exist. It looks in the
// catalog first, taking no lock, and changes nothing if they all exist, so
// it may run on every start. Otherwise it makes the missing ones in one
// transaction, after any other process's Migrate. DDL on a table in use
// waits for its users, and stops all its traffic while it waits: past half
// a second it gives up (ErrUnavailable, SQLSTATE 55P03).
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.usable(ctx, "migrate"); err != nil {
		return err
	}
	err := s.migrate(ctx)
	if err == nil {
		s.migrated.Store(true)
	}
	return s.wrap(ctx, "migrate", err)
}

// migrateLockTimeout bounds how long the migration's DDL waits for a lock
// on a table in use. PostgreSQL queues every later user of the table behind
// the waiting DDL, so this is how long a migration can stop the sessions'
// traffic.
const migrateLockTimeout = 500 * time.Millisecond

// migrate makes the missing tables and indexes.
func (s *Store) migrate(ctx context.Context) error {
	missing, err := s.missing(ctx, s.pool)
	if err != nil || len(missing) == 0 {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Wait for another process's migration (as long as ctx allows),
		// then look again: it may have made everything.
		if _, err := tx.Exec(ctx, s.q.migrateLock); err != nil {
			return err
		}
		missing, err := s.missing(ctx, tx)
		if err != nil || len(missing) == 0 {
			return err
		}
		_, err = tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", migrateLockTimeout.Milliseconds()))
		for _, o := range s.q.schema {
			if err == nil && slices.Contains(missing, o.name) && !slices.Contains(missing, o.in) {
				_, err = tx.Exec(ctx, o.ddl)
			}
		}
		return err
	})
}

// missing returns the tables and indexes that the catalog does not have.
func (s *Store) missing(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) ([]string, error) {
	var names []string
	err := db.QueryRow(ctx, missingSQL, s.q.objects).Scan(&names)
	return names, err
}

// autoMigrate runs the Migrate that Options.AutoMigrate leaves pending
// before the first operation. Concurrent operations wait for one Migrate,
// each as long as its ctx allows; if it fails, the next operation runs it
// again.
func (s *Store) autoMigrate(ctx context.Context) error {
	for !s.migrated.Load() {
		s.migrateMu.Lock()
		running := s.migrating
		if running == nil {
			mine := make(chan struct{})
			s.migrating = mine
			s.migrateMu.Unlock()
			err := s.migrate(ctx)
			if err == nil {
				s.migrated.Store(true)
			}
			s.migrateMu.Lock()
			s.migrating = nil
			s.migrateMu.Unlock()
			close(mine)
			return err
		}
		s.migrateMu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops the sweeper, cutting short a sweep under way. It does not
// close the pool.
func (s *Store) Close() error {
	if !s.closed.Swap(true) {
		s.stopSweeper()
		s.done.Wait()
	}
	return nil
}

// sweeper sweeps every interval until Close, once the tables are there
// (a pending AutoMigrate makes them), and reports each failed sweep.
func (s *Store) sweeper(ctx context.Context, every time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.migrated.Load() {
			continue
		}
		if _, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.onSweepError(s.wrap(ctx, "sweep", err))
		}
	}
}

// Sweep deletes expired rows, in batches of Options.SweepBatch (expired
// Rename markers first, then records), and returns how many it deleted (a
// marker deleted along with its record is not counted). A row is deleted
// once the minute in which it expired is over (see sweep_after in
// schema.go); until then it is invisible, like any expired row. The
// background sweeper calls Sweep; operators may too.
func (s *Store) Sweep(ctx context.Context) (n int, err error) {
	// Not do's context: each statement has a Timeout of its own.
	err = s.do(ctx, "sweep", func(context.Context) error {
		n, err = s.sweep(ctx)
		return err
	})
	return n, err
}

// sweep is Sweep, with its errors unclassified: expired markers, then
// expired records (see sweepMarkers in schema.go for why apart).
func (s *Store) sweep(ctx context.Context) (int, error) {
	total := 0
	for _, q := range []string{s.q.sweepMarkers, s.q.sweepRecords} {
		for {
			c, cancel := s.bounded(ctx)
			tag, err := s.pool.Exec(c, q, s.batch)
			cancel()
			if err != nil {
				return total, err
			}
			n := int(tag.RowsAffected())
			total += n
			if n < s.batch {
				break
			}
		}
	}
	return total, nil
}

// usable refuses an operation on a closed store or with a done context.
func (s *Store) usable(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "postgres: "+op, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("postgres: %s: %w", op, sessionkit.ErrClosed)
	}
	return nil
}

// do runs one operation, op, after a pending Migrate
// (Options.AutoMigrate), both within Options.Timeout, and classifies its
// error.
func (s *Store) do(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if err := s.usable(ctx, op); err != nil {
		return err
	}
	c, cancel := s.bounded(ctx)
	defer cancel()
	err := s.autoMigrate(c)
	if err != nil {
		err = fmt.Errorf("migrate: %w", err)
	} else {
		err = f(c)
	}
	// The caller's context: if it is live, Options.Timeout ran out, an
	// outage.
	return s.wrap(ctx, op, err)
}

// bounded returns ctx bounded by Options.Timeout.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// wrap classifies an error of pgx.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if err == nil || errors.Is(err, sessionkit.ErrTooManySessions) { // an outcome, as driver.Wrap's are
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		var sentinel error
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == s.q.keyUnique: // unique_violation
			sentinel = sessionkit.ErrExists
		case pgErr.Code == "23514" && pgErr.ConstraintName == s.q.nfieldsCheck: // check_violation
			sentinel = sessionkit.ErrTooManyFields
		case pgErr.Code == "22021": // character_not_in_repertoire: a NUL byte in text
			sentinel = sessionkit.ErrInvalidKey
		case pgErr.Code == "54000": // program_limit_exceeded: an index entry too large
			sentinel = sessionkit.ErrTooLarge
		}
		if sentinel != nil {
			return driver.WrapAs("postgres: "+op, sentinel, err)
		}
	}
	return driver.Wrap(ctx, "postgres: "+op, err)
}

// run runs a statement that answers one row whose first column is a status,
// scanning the other columns into dest.
func (s *Store) run(ctx context.Context, op, query string, args []any, dest ...any) error {
	return s.do(ctx, op, func(ctx context.Context) error {
		var st int
		if err := s.pool.QueryRow(ctx, query, args...).Scan(append([]any{&st}, dest...)...); err != nil {
			return err
		}
		return statusError(op, st)
	})
}

// statusError is the error of a statement's status.
func statusError(op string, st int) error {
	switch st {
	case statusOK:
		return nil
	case statusNotFound:
		return sessionkit.ErrNotFound
	case statusRenewed:
		return sessionkit.ErrRenewed
	case statusExists:
		return sessionkit.ErrExists
	case statusDecode:
		return fmt.Errorf("postgres: %s: %w: the field holds no int64, or the sum leaves int64", op, sessionkit.ErrDecode)
	case statusTooMany:
		return fmt.Errorf("postgres: %s: %w", op, sessionkit.ErrTooManySessions)
	}
	return fmt.Errorf("unknown status %d", st)
}

// columns splits fields into the two arrays the statements take.
func columns(fields []sessionkit.Field) ([]string, [][]byte) {
	names := make([]string, len(fields))
	values := make([][]byte, len(fields))
	for i, f := range fields {
		names[i] = f.Name
		// A nil value would be NULL, which the column refuses: an empty
		// value is a present field.
		values[i] = f.Value
		if values[i] == nil {
			values[i] = []byte{}
		}
	}
	return names, values
}

// Create is sessionkit.Store.Create, one statement; a name with a NUL byte
// is ErrInvalidKey, one over about 2.7 kB ErrTooLarge (PostgreSQL's limits).
func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	names, values := columns(fields)
	return s.run(ctx, "create", s.q.create, []any{key, exp.Idle, exp.Absolute, names, values})
}

// Get is sessionkit.Store.Get, one statement; a name with a NUL byte is
// ErrInvalidKey.
func (s *Store) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	if len(names) == 1 {
		var v []byte
		if err := s.run(ctx, "get", s.q.getOne, []any{key, names[0]}, &v); err != nil {
			return nil, err
		}
		return [][]byte{v}, nil
	}
	var vals [][]byte
	if err := s.run(ctx, "get", s.q.get, []any{key, names}, &vals); err != nil {
		return nil, err
	}
	if vals == nil { // no names asked
		vals = [][]byte{}
	}
	return vals, nil
}

// GetAll is sessionkit.Store.GetAll, one statement.
func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	var names []string
	var vals [][]byte
	if err := s.run(ctx, "getall", s.q.getAll, []any{key}, &names, &vals); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for i, n := range names {
		out[n] = vals[i]
	}
	return out, nil
}

// Keys is sessionkit.Store.Keys, one statement.
func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	var names []string
	if err := s.run(ctx, "keys", s.q.keys, []any{key}, &names); err != nil {
		return nil, err
	}
	return names, nil
}

// Has is sessionkit.Store.Has, one statement; a name with a NUL byte is
// ErrInvalidKey.
func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	var ok bool
	err := s.run(ctx, "has", s.q.has, []any{key, name}, &ok)
	return ok, err
}

// Len is sessionkit.Store.Len, one statement; it returns the count kept in
// the session's row, which a hand edit can make wrong (see Corruption).
func (s *Store) Len(ctx context.Context, key string) (int, error) {
	var n int
	err := s.run(ctx, "len", s.q.length, []any{key}, &n)
	return n, err
}

// Set is sessionkit.Store.Set, one statement that locks the session's row
// first, so maxFields holds under concurrency; names as in Create.
func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	names, values := columns(fields)
	return s.run(ctx, "set", s.q.set, []any{key, names, values, maxFields})
}

// Incr is sessionkit.Store.Incr, one statement that locks the session's row first, as Set does; on ErrDecode it refreshes no expiry.
func (s *Store) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	var n int64
	if err := s.run(ctx, "incr", s.q.incr, []any{key, name, delta, maxFields}, &n); err != nil {
		return 0, err
	}
	return n, nil
}

// Pop is sessionkit.Store.Pop, one statement that locks the session's row first and deletes the field, returning its value.
func (s *Store) Pop(ctx context.Context, key, name string) ([]byte, error) {
	var v []byte
	if err := s.run(ctx, "pop", s.q.pop, []any{key, name}, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Delete is sessionkit.Store.Delete, one statement; a name with a NUL byte
// is ErrInvalidKey.
func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	if names == nil {
		names = []string{} // an empty array, not NULL
	}
	return s.run(ctx, "delete", s.q.del, []any{key, names})
}

// Clear is sessionkit.Store.Clear, one statement: Delete of every name.
func (s *Store) Clear(ctx context.Context, key string) error {
	return s.run(ctx, "clear", s.q.del, []any{key, nil}) // NULL: every name
}

// Touch is sessionkit.Store.Touch, one statement; the time left is to the
// microsecond, on the database's clock.
func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.run(ctx, "touch", s.q.touch, []any{key}, &left)
	return left, err
}

// SetExpiry is sessionkit.Store.SetExpiry, one statement; the new deadline
// counts from the creation time, on the database's clock.
func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	return s.run(ctx, "setexpiry", s.q.setExpiry, []any{key, exp.Idle, exp.Absolute})
}

// Rename is sessionkit.Store.Rename, one statement: the session's row takes
// the new key, and a marker row the old one.
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	return s.run(ctx, "rename", s.q.rename, []any{oldKey, newKey})
}

// Destroy is sessionkit.Store.Destroy, one statement: on a live marker it
// deletes the record the marker points at, with its fields and markers.
func (s *Store) Destroy(ctx context.Context, key string) error {
	return s.do(ctx, "destroy", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.q.destroy, key)
		return err
	})
}

// Count is sessionkit.Counter.Count, one statement. PostgreSQL counts by
// reading the rows: it reads every live session's row (a sequential scan,
// as the sessions under the prefix are usually all of them), so it costs
// in proportion to the table.
func (s *Store) Count(ctx context.Context, prefix string) (n int, err error) {
	err = s.do(ctx, "count", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.q.count, prefix).Scan(&n)
	})
	return n, err
}
