// Package bbolt is an embedded sessionkit.Store in one bbolt file: the
// default for programs that want sessions to survive a restart without
// running a server.
//
// A bbolt file belongs to one process: bbolt locks it, and a second process
// that opens it waits Options.LockTimeout and then fails. Use Redis to share
// sessions between processes.
//
// # Layout
//
// Eight top-level buckets, four for the sessions:
//
//	sessions/<key>/<field>    one nested bucket per session, one key per session field
//	meta/<key>                created, idle, absolute, expires: four big-endian int64 ms
//	renamed/<key>             a Rename marker: expires (big-endian int64 ms), then the new key
//	expiry/<expires><key>     the expiry index, ordered by time: "" for a session, "r" for a marker
//
// and four for the user index (sessionkit.Users), which ordinary operations
// never read:
//
//	bound/<key>                  a bound session's binding: index, public ID, user, device, IP
//	users/<index>/<key>          one nested bucket per user: its sessions' absolute deadlines
//	userdue/<index>              the index's deadline: the latest of its entries'
//	userexpiry/<deadline><index> the indexes ordered by deadline, for the sweeper
//
// Whatever removes a session (Destroy, Revoke, the cap, expiry, damage, the
// old key of a Rename) removes its binding and its index entry in the same
// transaction, and an index left empty goes with them; Rename moves the
// entry to the new key. The sweeper also drops every index whose deadline
// has passed, with what it still lists.
//
// A write touches only its fields. Every operation refreshes the expiry and
// moves the session's index entry in the same transaction. A background
// sweeper walks the expiry index from its start and stops at the first entry
// still alive, so a sweep costs what expired, not what is stored; it removes
// expired markers as well as expired sessions.
//
// Every operation is one bbolt read-write transaction (the expiry refresh
// is a write), so each costs an fsync unless Options.NoSync is set. Bind
// (with the cap), Revoke and DestroyAll (per 1000 keys) are one read-write
// transaction too; Count, Scan, Info and UserSessions are one read-only
// transaction (no fsync), and Info and UserSessions take one read-write
// transaction more only when they find something dead to remove. Rename
// and Destroy are one transaction too, so they are atomic as the
// sessionkit.Store contract asks without further care: Rename moves the
// fields, writes the marker and moves both index entries in one commit, and
// Destroy follows a chain of markers and removes what they lead to in one
// commit.
//
// # Clock
//
// Expiry is decided by Options.Clock, the clock of the one process that
// owns the file: that clock is the store's own clock in the contract's
// sense, and no other clock is involved.
//
// # Damaged records
//
// Anything under a key that is not a session or marker the store wrote (a
// session without metadata or with malformed metadata, a plain value where
// the session's bucket belongs, a malformed marker) reads as no session
// (sessionkit.ErrNotFound) and is removed by the operation that finds it.
// An index entry left pointing at nothing is dropped by the sweeper when it
// comes due.
package bbolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// Defaults for the zero values of Options.
const (
	DefaultSweepInterval = time.Minute
	DefaultLockTimeout   = time.Second
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
	// SweepInterval is the time between two sweeps of expired sessions.
	// Default DefaultSweepInterval.
	SweepInterval time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the file. Default DefaultLockTimeout.
	LockTimeout time.Duration
	// NoSync skips the fsync after each transaction: much faster, and a
	// machine crash can lose the last writes (a process crash cannot).
	NoSync bool
}

var (
	bucketSessions = []byte("sessions")
	bucketMeta     = []byte("meta")
	bucketRenamed  = []byte("renamed")
	bucketExpiry   = []byte("expiry")
)

// Index entry values: what the key of an expiry index entry holds.
var (
	indexSession = []byte{}
	indexMarker  = []byte("r")
)

// maxChain bounds how many markers Destroy follows. Markers cannot form a
// cycle (Rename refuses a target that holds one) and each lives at most
// sessionkit.RenewMarkerTTL, so a real chain is a few links long.
const maxChain = 64

// Store is a sessionkit.Store in a bbolt file. It implements
// sessionkit.Users, sessionkit.Scanner, sessionkit.Counter and io.Closer; operations after Close return
// sessionkit.ErrClosed.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

var (
	_ sessionkit.Store   = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
)

// Open opens (or creates) the bbolt file at path and starts the sweeper.
// opts may be nil. Close releases both.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, NoSync: o.NoSync})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			err = fmt.Errorf("%w (is another process using %s? a bbolt file belongs to one process)", err, path)
		}
		return nil, fmt.Errorf("bbolt: open %s: %w: %w", path, sessionkit.ErrUnavailable, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketMeta, bucketRenamed, bucketExpiry, bucketBound, bucketUsers, bucketUserDue, bucketUserExpiry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt: open %s: %w: %w", path, sessionkit.ErrUnavailable, err)
	}
	s := &Store{db: db, now: o.Clock, stop: make(chan struct{})}
	s.done.Add(1)
	go s.sweeper(o.SweepInterval)
	return s, nil
}

// Close stops the sweeper and closes the file.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.done.Wait()
		err = s.db.Close()
	})
	return err
}

func (s *Store) sweeper(every time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.Sweep()
		}
	}
}

// sweepBatch bounds one sweep transaction, so a large backlog does not
// hold the writer lock for long.
const sweepBatch = 1000

// Sweep removes the sessions and Rename markers that have expired, with
// their user index entries, then the user indexes past their deadline, and
// returns how many expiry entries (of sessions, markers and indexes) it
// cleared. The background sweeper calls
// it; tests and operators may too.
func (s *Store) Sweep() (int, error) {
	n, err := s.sweepDue(bucketExpiry, func(tx *bolt.Tx, entry []byte, now int64) error {
		// The entry goes whatever it points at; lookup removes what
		// expired or is damaged, and an entry that was stale (its key
		// lives on under another expiry) is put back as it should be.
		idx := tx.Bucket(bucketExpiry)
		if err := idx.Delete(entry); err != nil {
			return err
		}
		key := entry[8:]
		e, ok, err := lookup(tx, key, now)
		if err != nil {
			return err
		}
		if ok {
			return idx.Put(indexKey(e.expires(), key), e.indexValue())
		}
		return nil
	})
	if err == nil {
		var m int
		m, err = s.sweepIndexes()
		n += m
	}
	return n, wrap(context.Background(), "sweep", err)
}

// sweepDue hands each entry of the expiry bucket b (keys: a big-endian
// Unix ms, then the key) that has come due to each, in transactions of at
// most sweepBatch entries, until none is due; it returns how many it
// handed. each must remove the entry (or move it later).
func (s *Store) sweepDue(b []byte, each func(tx *bolt.Tx, entry []byte, now int64) error) (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			now := ms(s.now())
			c := tx.Bucket(b).Cursor()
			var due [][]byte
			for k, _ := c.First(); k != nil && n < sweepBatch; k, _ = c.Next() {
				if int64(binary.BigEndian.Uint64(k)) > now {
					break
				}
				due = append(due, bytes.Clone(k))
				n++
			}
			for _, entry := range due {
				if err := each(tx, entry, now); err != nil {
					return err
				}
			}
			return nil
		})
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func wrap(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return driver.WrapAs("bbolt: "+op, sessionkit.ErrClosed, err)
	case errors.Is(err, berrors.ErrValueTooLarge), errors.Is(err, berrors.ErrKeyTooLarge):
		return driver.WrapAs("bbolt: "+op, sessionkit.ErrTooLarge, err)
	}
	return driver.Wrap(ctx, "bbolt: "+op, err)
}

// meta is a session's metadata, all in Unix ms.
type meta struct{ created, idle, absolute, expires int64 }

func (m meta) bytes() []byte {
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[0:], uint64(m.created))
	binary.BigEndian.PutUint64(b[8:], uint64(m.idle))
	binary.BigEndian.PutUint64(b[16:], uint64(m.absolute))
	binary.BigEndian.PutUint64(b[24:], uint64(m.expires))
	return b
}

// parseMeta reads metadata as the store writes it: anything else (another
// length, a policy that is not positive) is damage.
func parseMeta(b []byte) (meta, bool) {
	if len(b) != 32 {
		return meta{}, false
	}
	m := meta{
		created:  int64(binary.BigEndian.Uint64(b[0:])),
		idle:     int64(binary.BigEndian.Uint64(b[8:])),
		absolute: int64(binary.BigEndian.Uint64(b[16:])),
		expires:  int64(binary.BigEndian.Uint64(b[24:])),
	}
	return m, m.created > 0 && m.idle > 0 && m.absolute > 0 && m.expires > 0
}

// ttl is the time left from now under the session's policy.
func (m meta) ttl(now int64) int64 { return min(m.idle, m.created+m.absolute-now) }

// marker is what Rename leaves at the old key.
type marker struct {
	expires int64  // Unix ms
	target  []byte // the key the session moved to
}

func (mk marker) bytes() []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(mk.expires)), mk.target...)
}

func parseMarker(b []byte) (marker, bool) {
	if len(b) <= 8 {
		return marker{}, false
	}
	mk := marker{expires: int64(binary.BigEndian.Uint64(b)), target: bytes.Clone(b[8:])}
	return mk, mk.expires > 0
}

func indexKey(expires int64, key []byte) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(expires))
	return append(b, key...)
}

// putMeta writes m and moves the index entry from old (0: none) to m.expires.
func putMeta(tx *bolt.Tx, key []byte, m meta, old int64) error {
	idx := tx.Bucket(bucketExpiry)
	if old != 0 {
		if err := idx.Delete(indexKey(old, key)); err != nil {
			return err
		}
	}
	if err := idx.Put(indexKey(m.expires, key), indexSession); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(key, m.bytes())
}

func putMarker(tx *bolt.Tx, key []byte, mk marker) error {
	if err := tx.Bucket(bucketExpiry).Put(indexKey(mk.expires, key), indexMarker); err != nil {
		return err
	}
	return tx.Bucket(bucketRenamed).Put(key, mk.bytes())
}

// remove deletes whatever key holds: session fields, metadata, marker and
// the index entries it can find, whether each is the value or the bucket
// the store writes or not.
func remove(tx *bolt.Tx, key []byte) error {
	idx := tx.Bucket(bucketExpiry)
	// Metadata of the right length names its index entry even when the
	// rest of it is damaged.
	if v := tx.Bucket(bucketMeta).Get(key); len(v) == 32 {
		if err := idx.Delete(indexKey(int64(binary.BigEndian.Uint64(v[24:])), key)); err != nil {
			return err
		}
	}
	if mk, ok := parseMarker(tx.Bucket(bucketRenamed).Get(key)); ok {
		if err := idx.Delete(indexKey(mk.expires, key)); err != nil {
			return err
		}
	}
	if err := unbind(tx, key); err != nil {
		return err
	}
	for _, b := range [][]byte{bucketMeta, bucketRenamed, bucketSessions} {
		if err := drop(tx.Bucket(b), key); err != nil {
			return err
		}
	}
	return nil
}

// drop deletes key from b, be it a value or a nested bucket.
func drop(b *bolt.Bucket, key []byte) error {
	err := b.Delete(key)
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		err = b.DeleteBucket(key)
	}
	return err
}

// entry is what a key holds: a live session or a live marker.
type entry struct {
	fields *bolt.Bucket // a session's fields; nil for a marker
	m      meta         // a session's metadata
	mk     marker       // a marker
}

func (e entry) isMarker() bool { return e.fields == nil }

func (e entry) expires() int64 {
	if e.isMarker() {
		return e.mk.expires
	}
	return e.m.expires
}

func (e entry) indexValue() []byte {
	if e.isMarker() {
		return indexMarker
	}
	return indexSession
}

// lookup returns the live session or marker under key at now, without
// refreshing it; ok is false if there is none. Whatever else it finds there
// (expired, damaged) it removes, so the caller should commit.
func lookup(tx *bolt.Tx, key []byte, now int64) (e entry, ok bool, err error) {
	if e, ok := peek(tx, key, now); ok {
		return e, true, nil
	}
	return entry{}, false, remove(tx, key)
}

// peek is lookup without the removal: it changes nothing.
func peek(tx *bolt.Tx, key []byte, now int64) (entry, bool) {
	if v := tx.Bucket(bucketRenamed).Get(key); v != nil {
		if mk, valid := parseMarker(v); valid && now < mk.expires {
			return entry{mk: mk}, true
		}
	} else if m, valid := parseMeta(tx.Bucket(bucketMeta).Get(key)); valid {
		if fields := tx.Bucket(bucketSessions).Bucket(key); fields != nil && now < m.expires && m.ttl(now) > 0 {
			return entry{fields: fields, m: m}, true
		}
	}
	return entry{}, false
}

// update runs fn on the live session under key, its expiry refreshed, in
// one read-write transaction. On a marker it returns ErrRenewed and changes
// nothing. ErrNotFound, from lookup or from fn, still commits, so an
// expired or damaged record found on the way is removed.
func (s *Store) update(ctx context.Context, op, key string, fn func(tx *bolt.Tx, fields *bolt.Bucket, m meta) error) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "bbolt: "+op, err)
	}
	var notFound bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		k := []byte(key)
		now := ms(s.now())
		e, ok, err := lookup(tx, k, now)
		switch {
		case err != nil:
			return err
		case !ok:
			err = sessionkit.ErrNotFound
		case e.isMarker():
			return sessionkit.ErrRenewed
		default:
			old := e.m.expires
			e.m.expires = now + e.m.ttl(now)
			if err = putMeta(tx, k, e.m, old); err == nil {
				err = fn(tx, e.fields, e.m)
			}
		}
		if errors.Is(err, sessionkit.ErrNotFound) {
			notFound = true
			return nil
		}
		return err
	})
	if err == nil && notFound {
		return sessionkit.ErrNotFound
	}
	return wrap(ctx, op, err)
}

// has reports whether the bucket holds name. bbolt can return nil for an
// empty value, so presence is read off a cursor, not off Get.
func has(b *bolt.Bucket, name []byte) bool {
	k, _ := b.Cursor().Seek(name)
	return k != nil && bytes.Equal(k, name)
}

func putFields(b *bolt.Bucket, fields []sessionkit.Field) error {
	for _, f := range fields {
		if f.Name == "" {
			return sessionkit.ErrInvalidKey
		}
		// bbolt keeps the slice until commit: hand it a copy, so the
		// caller may reuse its bytes once we return.
		// A non-nil copy: an empty value must stay a present field.
		if err := b.Put([]byte(f.Name), append([]byte{}, f.Value...)); err != nil {
			return err
		}
	}
	return nil
}

// Create stores a new session; ErrExists if a live session or marker holds key.
func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "bbolt: create", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		k := []byte(key)
		now := ms(s.now())
		if _, ok, err := lookup(tx, k, now); err != nil {
			return err
		} else if ok {
			return sessionkit.ErrExists
		}
		b, err := tx.Bucket(bucketSessions).CreateBucket(k)
		if err != nil {
			return err
		}
		if err := putFields(b, fields); err != nil {
			return err
		}
		m := meta{created: now, idle: exp.Idle.Milliseconds(), absolute: exp.Absolute.Milliseconds()}
		m.expires = now + m.ttl(now)
		return putMeta(tx, k, m, 0)
	})
	return wrap(ctx, "create", err)
}

// Get returns the named fields' values.
func (s *Store) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	var out [][]byte
	err := s.update(ctx, "get", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		out = make([][]byte, len(names))
		c := b.Cursor()
		for i, n := range names {
			if k, v := c.Seek([]byte(n)); k != nil && string(k) == n {
				out[i] = append([]byte{}, v...) // copied inside the transaction
			}
		}
		return nil
	})
	return out, err
}

// GetAll returns every field.
func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	var out map[string][]byte
	err := s.update(ctx, "getall", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		out = make(map[string][]byte, b.Stats().KeyN)
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte{}, v...)
			return nil
		})
	})
	return out, err
}

// Keys returns every field name.
func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	var out []string
	err := s.update(ctx, "keys", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Has reports whether the session has the named field.
func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	var ok bool
	err := s.update(ctx, "has", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		ok = name != "" && has(b, []byte(name))
		return nil
	})
	return ok, err
}

// Len returns the number of fields; it walks the session's bucket.
func (s *Store) Len(ctx context.Context, key string) (int, error) {
	var n int
	err := s.update(ctx, "len", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		n = count(b)
		return nil
	})
	return n, err
}

func count(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// Set writes the given fields.
func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	return s.update(ctx, "set", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		// count walks the bucket: only when there is a limit to check.
		if maxFields > 0 && driver.TooManyFields(count(b), fields, maxFields, func(name string) bool { return has(b, []byte(name)) }) {
			return sessionkit.ErrTooManyFields
		}
		return putFields(b, fields)
	})
}

// Incr adds delta to the integer in the named field, in one transaction.
func (s *Store) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	var n int64
	var bad error // the field's value or the sum, refused: not a backend error
	err := s.update(ctx, "incr", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		if name == "" {
			return sessionkit.ErrInvalidKey
		}
		k := []byte(name)
		var old []byte // nil: no such field, which counts as 0
		if fk, v := b.Cursor().Seek(k); fk != nil && bytes.Equal(fk, k) {
			old = append([]byte{}, v...) // non-nil even when empty: an empty field is not 0
		} else if maxFields > 0 && count(b) >= maxFields {
			return sessionkit.ErrTooManyFields
		}
		if n, bad = driver.AddInt(old, delta); bad != nil {
			return bad // rolls back the refresh too: nothing changes
		}
		return b.Put(k, strconv.AppendInt(nil, n, 10))
	})
	if bad != nil {
		return 0, fmt.Errorf("bbolt: incr: %w", bad)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Pop returns the named field's value and removes it, in one transaction.
func (s *Store) Pop(ctx context.Context, key, name string) ([]byte, error) {
	var out []byte
	err := s.update(ctx, "pop", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		out = nil
		k := []byte(name)
		if fk, v := b.Cursor().Seek(k); name != "" && fk != nil && bytes.Equal(fk, k) {
			out = append([]byte{}, v...) // copied inside the transaction; non-nil even when empty
			return b.Delete(k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes the named fields.
func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	return s.update(ctx, "delete", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		for _, n := range names {
			if n == "" {
				continue
			}
			if err := b.Delete([]byte(n)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Clear removes every field and keeps the session.
func (s *Store) Clear(ctx context.Context, key string) error {
	return s.update(ctx, "clear", key, func(tx *bolt.Tx, _ *bolt.Bucket, _ meta) error {
		sessions := tx.Bucket(bucketSessions)
		if err := sessions.DeleteBucket([]byte(key)); err != nil {
			return err
		}
		_, err := sessions.CreateBucket([]byte(key))
		return err
	})
}

// Touch refreshes the expiry and returns the time left.
func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.update(ctx, "touch", key, func(_ *bolt.Tx, _ *bolt.Bucket, m meta) error {
		left = time.Duration(m.expires-ms(s.now())) * time.Millisecond
		return nil
	})
	return left, err
}

// SetExpiry replaces the expiry policy.
func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	return s.update(ctx, "setexpiry", key, func(tx *bolt.Tx, _ *bolt.Bucket, m meta) error {
		old := m.expires
		now := ms(s.now())
		m.idle, m.absolute = exp.Idle.Milliseconds(), exp.Absolute.Milliseconds()
		ttl := m.ttl(now)
		if ttl <= 0 {
			if err := remove(tx, []byte(key)); err != nil {
				return err
			}
			return sessionkit.ErrNotFound
		}
		m.expires = now + ttl
		if err := putMeta(tx, []byte(key), m, old); err != nil {
			return err
		}
		// A bound session's index entry follows its absolute deadline, and
		// the index lives at least as long.
		if b, ok := getBinding(tx, []byte(key)); ok {
			return addMember(tx, []byte(b.index), []byte(key), m.deadline())
		}
		return nil
	})
}

// Rename moves the session to newKey and leaves a marker at oldKey, in one
// transaction.
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	return s.update(ctx, "rename", oldKey, func(tx *bolt.Tx, from *bolt.Bucket, m meta) error {
		now := ms(s.now())
		ok, nk := []byte(oldKey), []byte(newKey)
		if _, taken, err := lookup(tx, nk, now); err != nil {
			return err
		} else if taken {
			return sessionkit.ErrExists
		}
		to, err := tx.Bucket(bucketSessions).CreateBucket(nk)
		if err != nil {
			return err
		}
		if err := from.ForEach(func(k, v []byte) error { return to.Put(bytes.Clone(k), bytes.Clone(v)) }); err != nil {
			return err
		}
		if err := putMeta(tx, nk, m, 0); err != nil {
			return err
		}
		// A bound session's binding and index entry move with it (the new
		// entry first, so that the index is never empty on the way).
		if raw := tx.Bucket(bucketBound).Get(ok); raw != nil {
			if b, valid := parseBinding(raw); valid {
				if err := bind(tx, nk, bytes.Clone(raw), []byte(b.index), m); err != nil {
					return err
				}
			}
		}
		if err := remove(tx, ok); err != nil {
			return err
		}
		return putMarker(tx, ok, marker{expires: min(now+sessionkit.RenewMarkerTTL.Milliseconds(), m.expires), target: nk})
	})
}

// Destroy removes the session; on a marker it removes the chain of markers
// and the session they lead to, in one transaction.
func (s *Store) Destroy(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "bbolt: destroy", err)
	}
	return wrap(ctx, "destroy", s.db.Update(func(tx *bolt.Tx) error {
		now := ms(s.now())
		k := []byte(key)
		for range maxChain {
			e, ok, err := lookup(tx, k, now)
			if err != nil || !ok {
				return err
			}
			if err := remove(tx, k); err != nil {
				return err
			}
			if !e.isMarker() {
				return nil
			}
			k = e.mk.target
		}
		return fmt.Errorf("more than %d Rename markers in a chain", maxChain)
	}))
}

// Count returns the number of live sessions whose key starts with prefix
// (markers and user indexes are not sessions), in one read-only
// transaction that walks the metadata from prefix.
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, driver.Wrap(ctx, "bbolt: count", err)
	}
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		now := ms(s.now())
		p := []byte(prefix)
		c := tx.Bucket(bucketMeta).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if _, ok := liveSession(tx, k, v, now); ok {
				n++
			}
		}
		return nil
	})
	return n, wrap(ctx, "count", err)
}

func init() { testhook.Register(func(s *Store) testhook.Hooks { return hooks{s} }) }

// hooks are the Store's test hooks (internal/testhook).
type hooks struct{ s *Store }

// TTL returns the time left to the session, marker or user index under key
// without refreshing it (an index's is its deadline), and false if there is
// none (expired or not). A session whose metadata is missing or damaged has
// no expiry: it is reported with a negative time and true.
func (h hooks) TTL(ctx context.Context, key string) (time.Duration, bool, error) {
	s := h.s
	var expires int64
	var damaged bool
	err := s.db.View(func(tx *bolt.Tx) error {
		k := []byte(key)
		if mk, ok := parseMarker(tx.Bucket(bucketRenamed).Get(k)); ok {
			expires = mk.expires
		} else if m, ok := parseMeta(tx.Bucket(bucketMeta).Get(k)); ok {
			expires = m.expires
		} else if d := int64At(tx.Bucket(bucketUserDue).Get(k)); d != 0 {
			expires = d
		} else {
			damaged = has(tx.Bucket(bucketSessions), k) || has(tx.Bucket(bucketMeta), k) || has(tx.Bucket(bucketRenamed), k)
		}
		return nil
	})
	switch {
	case err != nil:
		return 0, false, wrap(ctx, "ttl", err)
	case damaged:
		return -1, true, nil
	case expires == 0:
		return 0, false, nil
	}
	left := time.Duration(expires-ms(s.now())) * time.Millisecond
	return left, left > 0, nil
}

// SetRaw writes one field of a session directly, without refreshing its
// expiry, as a hand edit would.
func (h hooks) SetRaw(ctx context.Context, key, name string, value []byte) error {
	return wrap(ctx, "setraw", h.s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions).Bucket([]byte(key))
		if b == nil {
			return sessionkit.ErrNotFound
		}
		return b.Put([]byte(name), bytes.Clone(value))
	}))
}

// IndexEntries returns the number of entries in the user index, live or
// not.
func (h hooks) IndexEntries(index string) int {
	n := 0
	_ = h.s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketUsers).Bucket([]byte(index)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// Records returns the number of sessions and markers in the file, expired
// or not.
func (h hooks) Records() int {
	n := 0
	_ = h.s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSessions).Stats().BucketN - 1 + tx.Bucket(bucketRenamed).Stats().KeyN
		return nil
	})
	return n
}
