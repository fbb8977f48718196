// Package memory is an in-process sessionkit.Store, for tests and for
// single-process programs that can lose their sessions on restart.
//
// Expired sessions are invisible at once and are swept from memory during
// writes, at most once per SweepInterval, so memory does not grow with
// sessions nobody uses any more.
package memory

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// DefaultSweepInterval is the default Options.SweepInterval.
const DefaultSweepInterval = time.Minute

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Clock returns the current time. Default time.Now. Tests pass a fake
	// clock to drive expiry.
	Clock func() time.Time
	// SweepInterval is the least time between two sweeps of expired
	// sessions. Default DefaultSweepInterval.
	SweepInterval time.Duration
}

// Store is an in-memory sessionkit.Store. It implements sessionkit.Counter.
type Store struct {
	now           func() time.Time
	sweepInterval time.Duration

	mu        sync.Mutex
	records   map[string]*record
	nextSweep time.Time
}

type record struct {
	fields  map[string][]byte
	created time.Time
	exp     sessionkit.Expiry
	expires time.Time
	movedTo string // set on the marker that Rename leaves at the old key
}

var (
	_ sessionkit.Store   = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
)

// New returns an empty Store. opts may be nil.
func New(opts *Options) *Store {
	s := &Store{now: time.Now, sweepInterval: DefaultSweepInterval, records: map[string]*record{}}
	if opts != nil {
		if opts.Clock != nil {
			s.now = opts.Clock
		}
		if opts.SweepInterval > 0 {
			s.sweepInterval = opts.SweepInterval
		}
	}
	return s
}

// live returns the live record under key with its expiry refreshed, or
// ErrNotFound. It removes an expired record it finds. Call with s.mu held.
func (s *Store) live(ctx context.Context, op, key string) (*record, error) {
	if err := ctx.Err(); err != nil {
		return nil, driver.Wrap(ctx, "memory: "+op, err)
	}
	r := s.records[key]
	if r == nil {
		return nil, sessionkit.ErrNotFound
	}
	now := s.now()
	ttl := driver.TTL(r.exp, r.created, now)
	if !now.Before(r.expires) || ttl <= 0 {
		delete(s.records, key)
		return nil, sessionkit.ErrNotFound
	}
	if r.movedTo != "" {
		return nil, sessionkit.ErrRenewed
	}
	r.expires = now.Add(ttl)
	return r, nil
}

// sweep removes expired records if the sweep interval has passed.
// Call with s.mu held.
func (s *Store) sweep(now time.Time) {
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(s.sweepInterval)
	for k, r := range s.records {
		if !now.Before(r.expires) {
			delete(s.records, k)
		}
	}
}

func (r *record) has(name string) bool {
	_, ok := r.fields[name]
	return ok
}

func cloneFields(fields map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(fields))
	for k, v := range fields {
		out[k] = clone(v)
	}
	return out
}

func fieldMap(fields []sessionkit.Field) map[string][]byte {
	out := make(map[string][]byte, len(fields))
	for _, f := range fields {
		out[f.Name] = clone(f.Value)
	}
	return out
}

// clone copies b; a nil or empty value becomes a non-nil empty slice, since
// nil means "no such field".
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// Create is sessionkit.Store.Create; it sweeps expired records first when
// the sweep interval has passed.
func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "memory: create", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	if r := s.records[key]; r != nil && now.Before(r.expires) {
		return sessionkit.ErrExists
	}
	s.records[key] = &record{fields: fieldMap(fields), created: now, exp: exp, expires: now.Add(driver.TTL(exp, now, now))}
	return nil
}

// Get is sessionkit.Store.Get.
func (s *Store) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(names))
	for i, n := range names {
		if v, ok := r.fields[n]; ok {
			out[i] = clone(v)
		}
	}
	return out, nil
}

// GetAll is sessionkit.Store.GetAll.
func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "getall", key)
	if err != nil {
		return nil, err
	}
	return cloneFields(r.fields), nil
}

// Keys is sessionkit.Store.Keys.
func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "keys", key)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r.fields))
	for k := range r.fields {
		out = append(out, k)
	}
	return out, nil
}

// Has is sessionkit.Store.Has.
func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "has", key)
	if err != nil {
		return false, err
	}
	_, ok := r.fields[name]
	return ok, nil
}

// Len is sessionkit.Store.Len.
func (s *Store) Len(ctx context.Context, key string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "len", key)
	if err != nil {
		return 0, err
	}
	return len(r.fields), nil
}

// Set is sessionkit.Store.Set; it sweeps expired records first when the
// sweep interval has passed.
func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(s.now())
	r, err := s.live(ctx, "set", key)
	if err != nil {
		return err
	}
	if driver.TooManyFields(len(r.fields), fields, maxFields, r.has) {
		return sessionkit.ErrTooManyFields
	}
	for _, f := range fields {
		r.fields[f.Name] = clone(f.Value)
	}
	return nil
}

// Incr is sessionkit.Store.Incr.
func (s *Store) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "incr", key)
	if err != nil {
		return 0, err
	}
	n, err := driver.AddInt(r.fields[name], delta)
	if err != nil {
		return 0, err
	}
	if driver.TooManyFields(len(r.fields), []sessionkit.Field{{Name: name}}, maxFields, r.has) {
		return 0, sessionkit.ErrTooManyFields
	}
	r.fields[name] = strconv.AppendInt(nil, n, 10)
	return n, nil
}

// Pop is sessionkit.Store.Pop.
func (s *Store) Pop(ctx context.Context, key, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "pop", key)
	if err != nil {
		return nil, err
	}
	v, ok := r.fields[name]
	if !ok {
		return nil, nil
	}
	delete(r.fields, name)
	return v, nil // the map's own copy, now unshared
}

// Delete is sessionkit.Store.Delete.
func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "delete", key)
	if err != nil {
		return err
	}
	for _, n := range names {
		delete(r.fields, n)
	}
	return nil
}

// Clear is sessionkit.Store.Clear.
func (s *Store) Clear(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "clear", key)
	if err != nil {
		return err
	}
	clear(r.fields)
	return nil
}

// Touch is sessionkit.Store.Touch.
func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "touch", key)
	if err != nil {
		return 0, err
	}
	return r.expires.Sub(s.now()), nil
}

// SetExpiry is sessionkit.Store.SetExpiry.
func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "setexpiry", key)
	if err != nil {
		return err
	}
	now := s.now()
	ttl := driver.TTL(exp, r.created, now)
	if ttl <= 0 {
		delete(s.records, key)
		return sessionkit.ErrNotFound
	}
	r.exp, r.expires = exp, now.Add(ttl)
	return nil
}

// Rename is sessionkit.Store.Rename, under the store's one lock.
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.live(ctx, "rename", oldKey)
	if err != nil {
		return err
	}
	now := s.now()
	if n := s.records[newKey]; n != nil && now.Before(n.expires) {
		return sessionkit.ErrExists
	}
	s.records[newKey] = r
	s.records[oldKey] = &record{
		created: r.created, exp: r.exp, movedTo: newKey,
		expires: minTime(r.expires, now.Add(sessionkit.RenewMarkerTTL)),
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Destroy removes the record, and on a Rename marker the records that the
// markers lead to.
func (s *Store) Destroy(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "memory: destroy", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key != "" {
		r := s.records[key]
		delete(s.records, key)
		if r == nil {
			break
		}
		key = r.movedTo
	}
	return nil
}

// Count returns the number of live sessions.
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, driver.Wrap(ctx, "memory: count", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for k, r := range s.records {
		if now.Before(r.expires) && r.movedTo == "" && strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n, nil
}

func init() { testhook.Register(func(s *Store) testhook.Hooks { return hooks{s} }) }

// hooks are the Store's test hooks (internal/testhook).
type hooks struct{ s *Store }

func (h hooks) TTL(_ context.Context, key string) (time.Duration, bool, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[key]
	if r == nil || !s.now().Before(r.expires) {
		return 0, false, nil
	}
	return r.expires.Sub(s.now()), true, nil
}

func (h hooks) SetRaw(_ context.Context, key, name string, value []byte) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[key]
	if r == nil || !s.now().Before(r.expires) || r.movedTo != "" {
		return sessionkit.ErrNotFound
	}
	r.fields[name] = clone(value)
	return nil
}

func (h hooks) Records() int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return len(h.s.records)
}
