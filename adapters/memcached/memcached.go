// Package memcached is a sessionkit.Store on memcached
// (github.com/bradfitz/gomemcache), for deployments that already run it and
// can lose sessions when memcached evicts or restarts.
//
// Memcached has no hashes, so a session is one item holding all its fields.
// Every operation is a compare-and-swap loop (gets, then cas), so concurrent
// writes to different keys of one session all survive, at the price of two
// round trips per operation and of rewriting the whole item on each use: the
// cost grows with the session, unlike the redishash adapter. Reads rewrite
// the item too, because the sliding expiry lives in it.
//
// # Item layout
//
// The item's key is the storage key, or, when that is longer than 250
// bytes or holds a space or control byte, "sk:h:" and the unpadded
// base64url SHA-256 of it. The value is version byte 1; created, idle,
// absolute and expires as big-endian int64 Unix ms; then the field count and
// each name and value, length-prefixed with uvarints. The item's memcached
// expiration is the session's expiry rounded up to the second: the exact
// expiry, in ms, is the one in the item, and an item past it is treated as
// gone. Expirations over 30 days are sent as an absolute Unix time, as
// memcached requires.
//
// It does not implement sessionkit.Counter: memcached cannot list items.
//
// # Errors
//
// gomemcache takes no context: a context is checked before each round trip,
// and Options.Timeout bounds each one.
package memcached

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxItemSize = 1 << 20 // memcached's default -I
	DefaultTimeout     = 500 * time.Millisecond
	maxKeyLength       = 250
	maxRelativeExpiry  = 30 * 24 * time.Hour
	casAttempts        = 1000
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
	// MaxItemSize is the largest item the server takes (memcached -I).
	// Writes that would make a larger item fail with ErrTooLarge.
	// Default DefaultMaxItemSize.
	MaxItemSize int
}

// Store is a sessionkit.Store on memcached.
type Store struct {
	client  *memcache.Client
	now     func() time.Time
	maxItem int
}

var _ sessionkit.Store = (*Store)(nil)

// New returns a Store on client; opts may be nil. The Store does not own the
// client.
func New(client *memcache.Client, opts *Options) *Store {
	s := &Store{client: client, now: time.Now, maxItem: DefaultMaxItemSize}
	if opts != nil {
		if opts.Clock != nil {
			s.now = opts.Clock
		}
		if opts.MaxItemSize > 0 {
			s.maxItem = opts.MaxItemSize
		}
	}
	return s
}

// ItemKey returns the memcached key of a storage key.
func ItemKey(key string) string {
	if len(key) <= maxKeyLength && strings.IndexFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) < 0 {
		return key
	}
	h := sha256.Sum256([]byte(key))
	return "sk:h:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// record is a decoded item.
type record struct {
	created, idle, absolute, expires int64 // Unix ms
	fields                           map[string][]byte
}

const version = 1

func (r *record) encode() []byte {
	n := 1 + 32 + binary.MaxVarintLen64
	for k, v := range r.fields {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, version)
	for _, x := range []int64{r.created, r.idle, r.absolute, r.expires} {
		b = binary.BigEndian.AppendUint64(b, uint64(x))
	}
	b = binary.AppendUvarint(b, uint64(len(r.fields)))
	for k, v := range r.fields {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

var errCorrupt = errors.New("memcached: item is not a sessionkit record")

// decode parses an item, copying every byte out of it.
func decode(b []byte) (*record, error) {
	if len(b) < 33 || b[0] != version {
		return nil, errCorrupt
	}
	r := &record{}
	for i, p := range []*int64{&r.created, &r.idle, &r.absolute, &r.expires} {
		*p = int64(binary.BigEndian.Uint64(b[1+8*i:]))
	}
	b = b[33:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errCorrupt
	}
	b = b[n:]
	r.fields = make(map[string][]byte, count)
	next := func() ([]byte, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return nil, false
		}
		v := b[n : n+int(l)]
		b = b[n+int(l):]
		return v, true
	}
	for range count {
		k, ok1 := next()
		v, ok2 := next()
		if !ok1 || !ok2 {
			return nil, errCorrupt
		}
		r.fields[string(k)] = append([]byte{}, v...) // non-nil even when empty
	}
	return r, nil
}

func (r *record) has(name string) bool {
	_, ok := r.fields[name]
	return ok
}

// ttl is the time left from now (Unix ms) under the record's policy.
func (r *record) ttl(now int64) int64 { return min(r.idle, r.created+r.absolute-now) }

// expiration converts the record's expiry into memcached's: seconds from
// now rounded up, or an absolute Unix time beyond 30 days.
func (s *Store) expiration(r *record) int32 {
	left := time.Duration(r.expires-s.now().UnixMilli()) * time.Millisecond
	secs := int64((left + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if time.Duration(secs)*time.Second > maxRelativeExpiry {
		return int32(s.now().Unix() + secs)
	}
	return int32(secs)
}

func wrap(op string, err error) error {
	switch {
	case err == nil, errors.Is(err, sessionkit.ErrNotFound), errors.Is(err, sessionkit.ErrExists),
		errors.Is(err, sessionkit.ErrTooManyFields), errors.Is(err, sessionkit.ErrTooLarge):
		return err
	case strings.Contains(err.Error(), "too large"):
		return fmt.Errorf("memcached: %s: %w: %w", op, sessionkit.ErrTooLarge, err)
	}
	return sessionkit.BackendError("memcached: "+op, err)
}

// item encodes r for key, or fails with ErrTooLarge if the server would
// refuse it (leaving the stored session as it was).
func (s *Store) item(key string, r *record, casID uint64) (*memcache.Item, error) {
	v := r.encode()
	// memcached's item overhead (header, key, CAS) counts against -I too.
	if len(v)+len(key)+64 > s.maxItem {
		return nil, fmt.Errorf("%w: the session would take %d bytes, memcached takes %d", sessionkit.ErrTooLarge, len(v), s.maxItem)
	}
	return &memcache.Item{Key: key, Value: v, Expiration: s.expiration(r), CasID: casID}, nil
}

// errUnchanged tells modify that fn wrote nothing; the expiry refresh is
// still attempted, but losing that race to a writer is fine.
var errUnchanged = errors.New("unchanged")

// modify runs fn on the live record under key in a compare-and-swap loop,
// refreshing its expiry. fn may run more than once; it returns errUnchanged
// when it only read.
func (s *Store) modify(ctx context.Context, op, key string, fn func(r *record) error) error {
	k := ItemKey(key)
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return sessionkit.BackendError("memcached: "+op, err)
		}
		it, err := s.client.Get(k)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return sessionkit.ErrNotFound
		}
		if err != nil {
			return wrap(op, err)
		}
		r, err := decode(it.Value)
		if err != nil {
			return wrap(op, err)
		}
		now := s.now().UnixMilli()
		ttl := r.ttl(now)
		if now >= r.expires || ttl <= 0 {
			return s.expire(op, k)
		}
		r.expires = now + ttl
		readOnly := false
		if err := fn(r); errors.Is(err, errUnchanged) {
			readOnly = true
		} else if err != nil {
			return err
		}
		next, err := s.item(k, r, it.CasID)
		if err != nil {
			return err
		}
		err = s.client.CompareAndSwap(next)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, memcache.ErrCASConflict):
			if readOnly {
				return nil // a concurrent write refreshed the expiry itself
			}
			continue
		case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			return sessionkit.ErrNotFound // deleted meanwhile
		default:
			return wrap(op, err)
		}
	}
	return fmt.Errorf("memcached: %s: %w: no compare-and-swap won in %d attempts", op, sessionkit.ErrUnavailable, casAttempts)
}

// expire deletes an item found past its expiry and reports it gone.
func (s *Store) expire(op, itemKey string) error {
	if err := s.client.Delete(itemKey); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return wrap(op, err)
	}
	return sessionkit.ErrNotFound
}

func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	now := s.now().UnixMilli()
	r := &record{created: now, idle: exp.Idle.Milliseconds(), absolute: exp.Absolute.Milliseconds(), fields: make(map[string][]byte, len(fields))}
	r.expires = now + r.ttl(now)
	for _, f := range fields {
		r.fields[f.Name] = f.Value // encoded (copied) below, never kept
	}
	return s.add(ctx, "create", ItemKey(key), r)
}

// add stores r under a key with no live record: Add, or, when an expired
// item still sits there, a compare-and-swap over it.
func (s *Store) add(ctx context.Context, op, k string, r *record) error {
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return sessionkit.BackendError("memcached: "+op, err)
		}
		it, err := s.item(k, r, 0)
		if err != nil {
			return err
		}
		err = s.client.Add(it)
		if !errors.Is(err, memcache.ErrNotStored) {
			return wrap(op, err)
		}
		old, err := s.client.Get(k)
		if errors.Is(err, memcache.ErrCacheMiss) {
			continue // gone meanwhile: Add again
		}
		if err != nil {
			return wrap(op, err)
		}
		if prev, err := decode(old.Value); err == nil && s.now().UnixMilli() < prev.expires {
			return sessionkit.ErrExists
		}
		it.CasID = old.CasID
		if err := s.client.CompareAndSwap(it); err == nil {
			return nil
		} else if !errors.Is(err, memcache.ErrCASConflict) && !errors.Is(err, memcache.ErrCacheMiss) && !errors.Is(err, memcache.ErrNotStored) {
			return wrap(op, err)
		}
	}
	return fmt.Errorf("memcached: %s: %w: no write won in %d attempts", op, sessionkit.ErrUnavailable, casAttempts)
}

func (s *Store) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	var out [][]byte
	err := s.modify(ctx, "get", key, func(r *record) error {
		out = make([][]byte, len(names))
		for i, n := range names {
			out[i] = r.fields[n] // decode made these copies
		}
		return errUnchanged
	})
	return out, err
}

func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	var out map[string][]byte
	err := s.modify(ctx, "getall", key, func(r *record) error {
		out = r.fields
		return errUnchanged
	})
	return out, err
}

func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	var out []string
	err := s.modify(ctx, "keys", key, func(r *record) error {
		out = make([]string, 0, len(r.fields))
		for k := range r.fields {
			out = append(out, k)
		}
		return errUnchanged
	})
	return out, err
}

func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	var ok bool
	err := s.modify(ctx, "has", key, func(r *record) error {
		_, ok = r.fields[name]
		return errUnchanged
	})
	return ok, err
}

func (s *Store) Len(ctx context.Context, key string) (int, error) {
	var n int
	err := s.modify(ctx, "len", key, func(r *record) error {
		n = len(r.fields)
		return errUnchanged
	})
	return n, err
}

func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	return s.modify(ctx, "set", key, func(r *record) error {
		if sessionkit.TooManyFields(len(r.fields), fields, maxFields, r.has) {
			return sessionkit.ErrTooManyFields
		}
		for _, f := range fields {
			r.fields[f.Name] = f.Value // encoded (copied) before modify returns
		}
		return nil
	})
}

func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	return s.modify(ctx, "delete", key, func(r *record) error {
		for _, n := range names {
			delete(r.fields, n)
		}
		return nil
	})
}

func (s *Store) Clear(ctx context.Context, key string) error {
	return s.modify(ctx, "clear", key, func(r *record) error {
		clear(r.fields)
		return nil
	})
}

func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.modify(ctx, "touch", key, func(r *record) error {
		left = time.Duration(r.expires-s.now().UnixMilli()) * time.Millisecond
		return nil
	})
	return left, err
}

func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	err := s.modify(ctx, "setexpiry", key, func(r *record) error {
		r.idle, r.absolute = exp.Idle.Milliseconds(), exp.Absolute.Milliseconds()
		now := s.now().UnixMilli()
		ttl := r.ttl(now)
		if ttl <= 0 {
			return errPolicyEnded
		}
		r.expires = now + ttl
		return nil
	})
	if errors.Is(err, errPolicyEnded) {
		return s.expire("setexpiry", ItemKey(key))
	}
	return err
}

var errPolicyEnded = errors.New("the new policy has already run out")

// Rename reads the old item, adds it under the new key and deletes the
// old one: three round trips, and a write to the old key between the first
// and the last is lost (Renew runs at login, when that does not matter).
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	var moved *record
	err := s.modify(ctx, "rename", oldKey, func(r *record) error {
		moved = r
		return errUnchanged
	})
	if err != nil {
		return err
	}
	if err := s.add(ctx, "rename", ItemKey(newKey), moved); err != nil {
		return err
	}
	return s.Destroy(ctx, oldKey)
}

func (s *Store) Destroy(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return sessionkit.BackendError("memcached: destroy", err)
	}
	err := s.client.Delete(ItemKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return wrap("destroy", err)
}
