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
// Three top-level buckets:
//
//	sessions/<key>/<field>    one nested bucket per session, one key per session field
//	meta/<key>                created, idle, absolute, expires: four big-endian int64 ms
//	expiry/<expires><key>     the expiry index, ordered by time
//
// A write touches only its fields. Every operation refreshes the expiry and
// moves the session's index entry in the same transaction. A background
// sweeper walks the expiry index from its start and stops at the first entry
// still alive, so a sweep costs what expired, not what is stored.
//
// Every operation is one bbolt read-write transaction (the expiry refresh
// is a write), so each costs an fsync unless Options.NoSync is set.
package bbolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionkit/sessionkit/sessionkit"
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
	bucketExpiry   = []byte("expiry")
)

// Store is a sessionkit.Store in a bbolt file. It implements
// sessionkit.Counter and io.Closer; operations after Close return
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
		if errors.Is(err, bolt.ErrTimeout) {
			err = fmt.Errorf("%w (is another process using %s? a bbolt file belongs to one process)", err, path)
		}
		return nil, fmt.Errorf("bbolt: open %s: %w: %w", path, sessionkit.ErrUnavailable, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketMeta, bucketExpiry} {
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

// Sweep removes the sessions that have expired and returns how many. The
// background sweeper calls it; tests and operators may too.
func (s *Store) Sweep() (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			now := ms(s.now())
			c := tx.Bucket(bucketExpiry).Cursor()
			var expired [][]byte
			for k, _ := c.First(); k != nil && n < sweepBatch; k, _ = c.Next() {
				if int64(binary.BigEndian.Uint64(k)) > now {
					break
				}
				expired = append(expired, bytes.Clone(k[8:]))
				n++
			}
			for _, key := range expired {
				if err := remove(tx, key); err != nil {
					return err
				}
			}
			return nil
		})
		total += n
		if err != nil || n < sweepBatch {
			return total, wrap("sweep", err)
		}
	}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func wrap(op string, err error) error {
	if err == nil || errors.Is(err, sessionkit.ErrNotFound) || errors.Is(err, sessionkit.ErrExists) ||
		errors.Is(err, sessionkit.ErrTooManyFields) || errors.Is(err, sessionkit.ErrInvalidKey) {
		return err
	}
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return fmt.Errorf("bbolt: %s: %w: %w", op, sessionkit.ErrClosed, err)
	}
	if errors.Is(err, bolt.ErrValueTooLarge) || errors.Is(err, bolt.ErrKeyTooLarge) {
		return fmt.Errorf("bbolt: %s: %w: %w", op, sessionkit.ErrTooLarge, err)
	}
	return sessionkit.BackendError("bbolt: "+op, err)
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

func parseMeta(b []byte) (meta, bool) {
	if len(b) != 32 {
		return meta{}, false
	}
	return meta{
		created:  int64(binary.BigEndian.Uint64(b[0:])),
		idle:     int64(binary.BigEndian.Uint64(b[8:])),
		absolute: int64(binary.BigEndian.Uint64(b[16:])),
		expires:  int64(binary.BigEndian.Uint64(b[24:])),
	}, true
}

// ttl is the time left from now under the session's policy.
func (m meta) ttl(now int64) int64 { return min(m.idle, m.created+m.absolute-now) }

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
	if err := idx.Put(indexKey(m.expires, key), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(key, m.bytes())
}

// remove deletes a session, its metadata and its index entry.
func remove(tx *bolt.Tx, key []byte) error {
	if m, ok := parseMeta(tx.Bucket(bucketMeta).Get(key)); ok {
		if err := tx.Bucket(bucketExpiry).Delete(indexKey(m.expires, key)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketMeta).Delete(key); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessions).DeleteBucket(key); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	return nil
}

// live returns the fields bucket and metadata of the live session under
// key, with its expiry refreshed; an expired one is removed.
func (s *Store) live(tx *bolt.Tx, key []byte) (*bolt.Bucket, meta, error) {
	m, ok := parseMeta(tx.Bucket(bucketMeta).Get(key))
	fields := tx.Bucket(bucketSessions).Bucket(key)
	if !ok || fields == nil {
		return nil, meta{}, sessionkit.ErrNotFound
	}
	now := ms(s.now())
	ttl := m.ttl(now)
	if now >= m.expires || ttl <= 0 {
		if err := remove(tx, key); err != nil {
			return nil, meta{}, err
		}
		return nil, meta{}, sessionkit.ErrNotFound
	}
	old := m.expires
	m.expires = now + ttl
	return fields, m, putMeta(tx, key, m, old)
}

// update runs fn on the live session under key in one read-write
// transaction. ErrNotFound, from live or from fn, still commits, so an
// expired session found on the way is removed.
func (s *Store) update(ctx context.Context, op, key string, fn func(tx *bolt.Tx, fields *bolt.Bucket, m meta) error) error {
	if err := ctx.Err(); err != nil {
		return sessionkit.BackendError("bbolt: "+op, err)
	}
	var notFound bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		fields, m, err := s.live(tx, []byte(key))
		if err == nil {
			err = fn(tx, fields, m)
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
	return wrap(op, err)
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

func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	if err := ctx.Err(); err != nil {
		return sessionkit.BackendError("bbolt: create", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		k := []byte(key)
		if _, _, err := s.live(tx, k); err == nil {
			return sessionkit.ErrExists
		} else if !errors.Is(err, sessionkit.ErrNotFound) {
			return err
		}
		if err := remove(tx, k); err != nil { // leftovers of a damaged record
			return err
		}
		b, err := tx.Bucket(bucketSessions).CreateBucket(k)
		if err != nil {
			return err
		}
		if err := putFields(b, fields); err != nil {
			return err
		}
		now := ms(s.now())
		m := meta{created: now, idle: exp.Idle.Milliseconds(), absolute: exp.Absolute.Milliseconds()}
		m.expires = now + m.ttl(now)
		return putMeta(tx, k, m, 0)
	})
	return wrap("create", err)
}

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

func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	var ok bool
	err := s.update(ctx, "has", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		ok = name != "" && has(b, []byte(name))
		return nil
	})
	return ok, err
}

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

func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	return s.update(ctx, "set", key, func(_ *bolt.Tx, b *bolt.Bucket, _ meta) error {
		// count walks the bucket: only when there is a limit to check.
		if maxFields > 0 && sessionkit.TooManyFields(count(b), fields, maxFields, func(name string) bool { return has(b, []byte(name)) }) {
			return sessionkit.ErrTooManyFields
		}
		return putFields(b, fields)
	})
}

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

func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.update(ctx, "touch", key, func(_ *bolt.Tx, _ *bolt.Bucket, m meta) error {
		left = time.Duration(m.expires-ms(s.now())) * time.Millisecond
		return nil
	})
	return left, err
}

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
		return putMeta(tx, []byte(key), m, old)
	})
}

func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	return s.update(ctx, "rename", oldKey, func(tx *bolt.Tx, from *bolt.Bucket, m meta) error {
		nk := []byte(newKey)
		if _, _, err := s.live(tx, nk); err == nil {
			return sessionkit.ErrExists
		} else if !errors.Is(err, sessionkit.ErrNotFound) {
			return err
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
		return remove(tx, []byte(oldKey))
	})
}

func (s *Store) Destroy(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return sessionkit.BackendError("bbolt: destroy", err)
	}
	return wrap("destroy", s.db.Update(func(tx *bolt.Tx) error { return remove(tx, []byte(key)) }))
}

// Count returns the number of live sessions.
func (s *Store) Count(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, sessionkit.BackendError("bbolt: count", err)
	}
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		now := ms(s.now())
		c := tx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k)) > now {
				n++
			}
		}
		return nil
	})
	return n, wrap("count", err)
}

// TTL returns the time left to the session under key without refreshing
// it, and false if there is no record (expired or not). For tests and
// operators.
func (s *Store) TTL(key string) (time.Duration, bool, error) {
	var m meta
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		m, ok = parseMeta(tx.Bucket(bucketMeta).Get([]byte(key)))
		return nil
	})
	if err != nil || !ok {
		return 0, false, wrap("ttl", err)
	}
	left := time.Duration(m.expires-ms(s.now())) * time.Millisecond
	return left, left > 0, nil
}

// SetRaw writes one field of a session directly, without refreshing its
// expiry, as a hand edit would. For tests.
func (s *Store) SetRaw(key, name string, value []byte) error {
	return wrap("setraw", s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions).Bucket([]byte(key))
		if b == nil {
			return sessionkit.ErrNotFound
		}
		return b.Put([]byte(name), bytes.Clone(value))
	}))
}
