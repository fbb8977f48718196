// Package memory is an in-process sessionkit.Store, for tests and for
// single-process programs that can lose their sessions on restart.
//
// Expired sessions are invisible at once and are swept from memory during
// writes, at most once per SweepInterval, so memory does not grow with
// sessions nobody uses any more.
package memory

import (
	"context"
	"slices"
	"sort"
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

// Store is an in-memory sessionkit.Store. It implements sessionkit.Counter,
// sessionkit.Users and sessionkit.Scanner; every operation holds the
// store's one lock, so each is atomic.
type Store struct {
	now           func() time.Time
	sweepInterval time.Duration

	mu        sync.Mutex
	records   map[string]*record
	indexes   map[string]map[string]struct{} // user index -> keys of its bound records
	nextSweep time.Time
}

type record struct {
	fields  map[string][]byte
	created time.Time
	exp     sessionkit.Expiry
	expires time.Time
	movedTo string              // set on the marker that Rename leaves at the old key
	binding *sessionkit.Binding // set on a record bound to a user
}

var (
	_ sessionkit.Store   = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
	_ sessionkit.Users   = (*Store)(nil)
	_ sessionkit.Scanner = (*Store)(nil)
)

// New returns an empty Store. opts may be nil.
func New(opts *Options) *Store {
	s := &Store{now: time.Now, sweepInterval: DefaultSweepInterval, records: map[string]*record{}, indexes: map[string]map[string]struct{}{}}
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
	for index := range s.indexes {
		s.liveEntries(index, now) // drops the entries of swept records
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
	if r.binding != nil { // the index follows the record
		keys := s.indexes[r.binding.Index]
		if keys == nil { // DestroyAll of a prefix that covered the index only
			keys = map[string]struct{}{}
			s.indexes[r.binding.Index] = keys
		}
		delete(keys, oldKey)
		keys[newKey] = struct{}{}
	}
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
		if r == nil {
			break
		}
		s.remove(key, r)
		key = r.movedTo
	}
	return nil
}

// remove deletes the record r under key, and its index entry. Call with
// s.mu held.
func (s *Store) remove(key string, r *record) {
	delete(s.records, key)
	if r.binding != nil {
		if keys := s.indexes[r.binding.Index]; keys != nil {
			delete(keys, key)
			if len(keys) == 0 {
				delete(s.indexes, r.binding.Index)
			}
		}
	}
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

// alive reports whether r is a live record (not expired, not a marker),
// without refreshing it.
func alive(r *record, now time.Time) bool {
	return r != nil && r.movedTo == "" && now.Before(r.expires) && driver.TTL(r.exp, r.created, now) > 0
}

// liveEntries returns the keys of the live records of index, oldest
// first, and drops the entries of the others (and the index, once
// empty). Call with s.mu held.
func (s *Store) liveEntries(index string, now time.Time) []string {
	keys := s.indexes[index]
	out := make([]string, 0, len(keys))
	for k := range keys {
		if r := s.records[k]; alive(r, now) && r.binding != nil && r.binding.Index == index {
			out = append(out, k)
		} else {
			delete(keys, k)
		}
	}
	if len(keys) == 0 {
		delete(s.indexes, index)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := s.records[out[i]], s.records[out[j]]
		if !a.created.Equal(b.created) {
			return a.created.Before(b.created)
		}
		return out[i] < out[j]
	})
	return out
}

// Bind is sessionkit.Users.Bind, under the store's one lock: the move,
// the cap and the index change are one step.
func (s *Store) Bind(ctx context.Context, oldKey, newKey string, b sessionkit.Binding) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "memory: bind", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var r *record
	if oldKey != "" {
		var err error
		if r, err = s.live(ctx, "bind", oldKey); err != nil {
			return err
		}
	}
	if n := s.records[newKey]; n != nil && now.Before(n.expires) {
		return sessionkit.ErrExists
	}
	if b.Max > 0 {
		var others []string
		for _, k := range s.liveEntries(b.Index, now) {
			if k != oldKey {
				others = append(others, k)
			}
		}
		if over := len(others) - b.Max + 1; over > 0 {
			if b.Refuse {
				return sessionkit.ErrTooManySessions
			}
			for _, k := range others[:over] {
				s.remove(k, s.records[k])
			}
		}
	}
	if r == nil {
		ttl := driver.TTL(b.Expiry, now, now)
		r = &record{fields: map[string][]byte{}, created: now, exp: b.Expiry, expires: now.Add(ttl)}
	} else {
		s.remove(oldKey, r)
		s.records[oldKey] = &record{
			created: r.created, exp: r.exp, movedTo: newKey,
			expires: minTime(r.expires, now.Add(sessionkit.RenewMarkerTTL)),
		}
	}
	bc := b
	r.binding = &bc
	s.records[newKey] = r
	keys := s.indexes[b.Index]
	if keys == nil {
		keys = map[string]struct{}{}
		s.indexes[b.Index] = keys
	}
	keys[newKey] = struct{}{}
	return nil
}

// info describes the record r under key.
func info(key string, r *record) sessionkit.SessionInfo {
	i := sessionkit.SessionInfo{Key: key, Created: r.created, Expires: r.expires, Idle: r.exp.Idle}
	if b := r.binding; b != nil {
		i.ID, i.User, i.Device, i.IP = b.ID, b.User, b.Device, b.IP
	}
	return i
}

// UserSessions is sessionkit.Users.UserSessions.
func (s *Store) UserSessions(ctx context.Context, index string) ([]sessionkit.SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, driver.Wrap(ctx, "memory: user sessions", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.liveEntries(index, s.now())
	out := make([]sessionkit.SessionInfo, len(keys))
	for i, k := range keys {
		out[i] = info(k, s.records[k])
	}
	return out, nil
}

// Revoke is sessionkit.Users.Revoke.
func (s *Store) Revoke(ctx context.Context, index string, ids []string, except string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, driver.Wrap(ctx, "memory: revoke", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.liveEntries(index, s.now()) {
		r := s.records[k]
		if id := r.binding.ID; id != except && (ids == nil || slices.Contains(ids, id)) {
			s.remove(k, r)
			n++
		}
	}
	return n, nil
}

// Info is sessionkit.Users.Info.
func (s *Store) Info(ctx context.Context, key string) (sessionkit.SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return sessionkit.SessionInfo{}, driver.Wrap(ctx, "memory: info", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[key]
	if !alive(r, s.now()) {
		return sessionkit.SessionInfo{}, sessionkit.ErrNotFound
	}
	return info(key, r), nil
}

// Scan is sessionkit.Scanner.Scan. The cursor is the last key returned:
// the walk is in key order.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", driver.Wrap(ctx, "memory: scan", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var keys []string
	for k, r := range s.records {
		if k > cursor && strings.HasPrefix(k, prefix) && alive(r, now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	next := ""
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	out := make([]sessionkit.SessionInfo, len(keys))
	for i, k := range keys {
		out[i] = info(k, s.records[k])
	}
	return out, next, nil
}

// DestroyAll is sessionkit.Scanner.DestroyAll.
func (s *Store) DestroyAll(ctx context.Context, prefix string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, driver.Wrap(ctx, "memory: destroy all", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for k, r := range s.records {
		if strings.HasPrefix(k, prefix) {
			if alive(r, now) {
				n++
			}
			s.remove(k, r)
		}
	}
	for index := range s.indexes {
		if strings.HasPrefix(index, prefix) {
			delete(s.indexes, index)
		}
	}
	return n, nil
}

func (h hooks) IndexEntries(index string) int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return len(h.s.indexes[index])
}
