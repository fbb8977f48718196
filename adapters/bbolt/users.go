package bbolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// The user index (sessionkit.Users) lives in four buckets of its own, so
// that the session buckets, and every ordinary operation, are as they were:
//
//	bound/<key>                  a bound session's binding: index, ID, user, device, IP
//	users/<index>/<key>          one nested bucket per user index, one key per bound
//	                             session: its absolute deadline (big-endian int64 ms)
//	userdue/<index>              the index's deadline: the latest deadline it was given
//	userexpiry/<deadline><index> the indexes ordered by deadline, for the sweeper
//
// remove (Destroy, expiry, damage, the old key of a Rename) unbinds the key
// in the same transaction: the entry leaves its index, and an index left
// empty is dropped with its deadline. So a gone session leaves nothing
// behind in the index once its removal commits; the sweeper drops a whole
// index when its deadline passes (every session it listed is then past its
// absolute deadline), removing whatever it still listed.
var (
	bucketBound      = []byte("bound")
	bucketUsers      = []byte("users")
	bucketUserDue    = []byte("userdue")
	bucketUserExpiry = []byte("userexpiry")
)

var (
	_ sessionkit.Users   = (*Store)(nil)
	_ sessionkit.Scanner = (*Store)(nil)
)

// binding is what bound/<key> holds.
type binding struct{ index, id, user, device, ip string }

func (b binding) bytes() []byte {
	var out []byte
	for _, s := range []string{b.index, b.id, b.user, b.device, b.ip} {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	return out
}

func parseBinding(v []byte) (binding, bool) {
	var parts [5]string
	for i := range parts {
		n, w := binary.Uvarint(v)
		if w <= 0 || n > uint64(len(v)-w) {
			return binding{}, false
		}
		parts[i] = string(v[w : w+int(n)])
		v = v[w+int(n):]
	}
	b := binding{parts[0], parts[1], parts[2], parts[3], parts[4]}
	return b, len(v) == 0 && b.index != ""
}

func getBinding(tx *bolt.Tx, key []byte) (binding, bool) {
	v := tx.Bucket(bucketBound).Get(key)
	if v == nil {
		return binding{}, false
	}
	return parseBinding(v)
}

func int64At(v []byte) int64 {
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func int64Bytes(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

// deadline is the absolute deadline of a session: no operation extends it,
// so its index entry need not change as the session is used.
func (m meta) deadline() int64 { return m.created + m.absolute }

// addMember lists key in index until deadline, creating the index if need
// be and extending its own deadline to cover the entry.
func addMember(tx *bolt.Tx, index, key []byte, deadline int64) error {
	users := tx.Bucket(bucketUsers)
	ib, err := users.CreateBucketIfNotExists(index)
	if errors.Is(err, berrors.ErrIncompatibleValue) { // damage: a value where the index belongs
		if err = users.Delete(index); err == nil {
			ib, err = users.CreateBucket(index)
		}
	}
	if err != nil {
		return err
	}
	if err := ib.Put(bytes.Clone(key), int64Bytes(deadline)); err != nil {
		return err
	}
	return raiseDue(tx, index, deadline)
}

// raiseDue extends the index's deadline to d if it is earlier.
func raiseDue(tx *bolt.Tx, index []byte, d int64) error {
	due := tx.Bucket(bucketUserDue)
	old := int64At(due.Get(index))
	if old >= d {
		return nil
	}
	exp := tx.Bucket(bucketUserExpiry)
	if old != 0 {
		if err := exp.Delete(indexKey(old, index)); err != nil {
			return err
		}
	}
	if err := exp.Put(indexKey(d, index), nil); err != nil {
		return err
	}
	return due.Put(bytes.Clone(index), int64Bytes(d))
}

// dropIndex removes the index, its deadline and its expiry entry. The
// sessions it listed are left as they are.
func dropIndex(tx *bolt.Tx, index []byte) error {
	due := tx.Bucket(bucketUserDue)
	if d := int64At(due.Get(index)); d != 0 {
		if err := tx.Bucket(bucketUserExpiry).Delete(indexKey(d, index)); err != nil {
			return err
		}
	}
	if err := due.Delete(index); err != nil {
		return err
	}
	err := drop(tx.Bucket(bucketUsers), index)
	if errors.Is(err, berrors.ErrBucketNotFound) {
		err = nil
	}
	return err
}

// unlist removes key from index, and the index if that leaves it empty.
func unlist(tx *bolt.Tx, index, key []byte) error {
	ib := tx.Bucket(bucketUsers).Bucket(index)
	if ib == nil {
		return nil
	}
	if err := ib.Delete(key); err != nil {
		return err
	}
	if k, _ := ib.Cursor().First(); k == nil {
		return dropIndex(tx, index)
	}
	return nil
}

// unbind ends key's binding, if any: its binding and its index entry go.
func unbind(tx *bolt.Tx, key []byte) error {
	v := tx.Bucket(bucketBound).Get(key)
	if v == nil {
		return nil
	}
	b, ok := parseBinding(v) // copies: v is not read after the Delete
	if err := tx.Bucket(bucketBound).Delete(key); err != nil || !ok {
		return err
	}
	return unlist(tx, []byte(b.index), key)
}

// bind gives the session under key (metadata m) the binding raw, of index,
// and lists it there.
func bind(tx *bolt.Tx, key []byte, raw []byte, index []byte, m meta) error {
	if err := tx.Bucket(bucketBound).Put(bytes.Clone(key), raw); err != nil {
		return err
	}
	return addMember(tx, index, key, m.deadline())
}

// members returns the keys listed in index, copied (the caller may then
// change the index while it walks them).
func members(tx *bolt.Tx, index []byte) [][]byte {
	ib := tx.Bucket(bucketUsers).Bucket(index)
	if ib == nil {
		return nil
	}
	var keys [][]byte
	c := ib.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// peekMember returns the live session that index lists under key, bound to
// index, without changing anything; ok is false for an entry that should go.
func peekMember(tx *bolt.Tx, index, key []byte, now int64) (e entry, b binding, ok bool) {
	e, live := peek(tx, key, now)
	if !live || e.isMarker() {
		return entry{}, binding{}, false
	}
	b, bound := getBinding(tx, key)
	if !bound || b.index != string(index) {
		return entry{}, binding{}, false
	}
	return e, b, true
}

// member is peekMember that removes what it finds dead: an expired or
// damaged session with its binding, and an entry that leads to no session
// bound to index (the index goes too if that empties it).
func member(tx *bolt.Tx, index, key []byte, now int64) (entry, binding, bool, error) {
	if e, b, ok := peekMember(tx, index, key, now); ok {
		return e, b, true, nil
	}
	if _, _, err := lookup(tx, key, now); err != nil { // removes what is dead under key
		return entry{}, binding{}, false, err
	}
	return entry{}, binding{}, false, unlist(tx, index, key)
}

func sessionInfo(key []byte, m meta, b binding) sessionkit.SessionInfo {
	return sessionkit.SessionInfo{
		Key: string(key), ID: b.id, User: b.user, Device: b.device, IP: b.ip,
		Created: time.UnixMilli(m.created), Expires: time.UnixMilli(m.expires),
		Idle: time.Duration(m.idle) * time.Millisecond,
	}
}

// Bind moves the session at oldKey to newKey as Rename does and binds it,
// or creates a new empty bound session at newKey when oldKey is "", in one
// transaction that also enforces the cap: bbolt's single writer orders it
// with every other Bind, Revoke and removal.
func (s *Store) Bind(ctx context.Context, oldKey, newKey string, b sessionkit.Binding) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "bbolt: bind", err)
	}
	if b.Index == "" || newKey == "" {
		return fmt.Errorf("bbolt: bind: %w: empty index or key", sessionkit.ErrInvalidKey)
	}
	raw := binding{index: b.Index, id: b.ID, user: b.User, device: b.Device, ip: b.IP}.bytes()
	var notFound bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		now := ms(s.now())
		ok, nk, index := []byte(oldKey), []byte(newKey), []byte(b.Index)
		var m meta
		if oldKey != "" {
			e, live, err := lookup(tx, ok, now)
			switch {
			case err != nil:
				return err
			case !live:
				notFound = true
				return nil // commit: what lookup found dead is removed
			case e.isMarker():
				return sessionkit.ErrRenewed
			}
			m = e.m
		} else {
			m = meta{created: now, idle: b.Expiry.Idle.Milliseconds(), absolute: b.Expiry.Absolute.Milliseconds()}
			if m.idle <= 0 || m.absolute <= 0 {
				return fmt.Errorf("%w: expiry %v is not positive", sessionkit.ErrInvalidKey, b.Expiry)
			}
		}
		m.expires = now + m.ttl(now) // a Bind is a use
		if _, taken, err := lookup(tx, nk, now); err != nil {
			return err
		} else if taken {
			return sessionkit.ErrExists
		}
		if b.Max > 0 {
			if err := makeRoom(tx, index, ok, b.Max, b.Refuse, now); err != nil {
				return err
			}
		}
		to, err := tx.Bucket(bucketSessions).CreateBucket(nk)
		if err != nil {
			return err
		}
		if oldKey != "" {
			from := tx.Bucket(bucketSessions).Bucket(ok)
			if err := from.ForEach(func(k, v []byte) error { return to.Put(bytes.Clone(k), bytes.Clone(v)) }); err != nil {
				return err
			}
		}
		if err := putMeta(tx, nk, m, 0); err != nil {
			return err
		}
		// The new entry first: if the old key was the index's only entry,
		// the index is not dropped and made again.
		if err := bind(tx, nk, raw, index, m); err != nil {
			return err
		}
		if oldKey == "" {
			return nil
		}
		if err := remove(tx, ok); err != nil { // ends the old binding too
			return err
		}
		return putMarker(tx, ok, marker{expires: min(now+sessionkit.RenewMarkerTTL.Milliseconds(), m.expires), target: nk})
	})
	switch {
	case errors.Is(err, sessionkit.ErrTooManySessions):
		return fmt.Errorf("bbolt: bind: %w", err)
	case err == nil && notFound:
		return sessionkit.ErrNotFound
	}
	return wrap(ctx, "bind", err)
}

// makeRoom ends the oldest live sessions of index, but self, until fewer
// than max are left, or returns ErrTooManySessions (the caller rolls back)
// if refuse is set and there are max already.
func makeRoom(tx *bolt.Tx, index, self []byte, max int, refuse bool, now int64) error {
	type live struct {
		created int64
		key     []byte
	}
	var others []live
	for _, k := range members(tx, index) {
		if len(self) > 0 && bytes.Equal(k, self) {
			continue
		}
		e, _, ok, err := member(tx, index, k, now)
		if err != nil {
			return err
		}
		if ok {
			others = append(others, live{e.m.created, k})
		}
	}
	if len(others) < max {
		return nil
	}
	if refuse {
		return fmt.Errorf("%w: %d live, the limit is %d", sessionkit.ErrTooManySessions, len(others), max)
	}
	slices.SortFunc(others, func(a, b live) int {
		return cmp.Or(cmp.Compare(a.created, b.created), bytes.Compare(a.key, b.key))
	})
	for _, o := range others[:len(others)-max+1] {
		if err := remove(tx, o.key); err != nil {
			return err
		}
	}
	return nil
}

// errDirty stops a read-only transaction that found something to remove:
// the caller does it again in a read-write one.
var errDirty = errors.New("bbolt: something to clean")

// readOrClean runs fn in a read-only transaction with clean false, and
// only if fn returns errDirty again in a read-write one with clean true:
// a listing with nothing dead in it costs no write (no fsync).
func (s *Store) readOrClean(fn func(tx *bolt.Tx, clean bool) error) error {
	err := s.db.View(func(tx *bolt.Tx) error { return fn(tx, false) })
	if errors.Is(err, errDirty) {
		err = s.db.Update(func(tx *bolt.Tx) error { return fn(tx, true) })
	}
	return err
}

// UserSessions returns the live sessions in the index without refreshing
// them. A read-only transaction when every entry is live; when some are
// not, one read-write transaction more, which lists again and removes
// them, and shrinks the index's deadline to that of its live entries.
func (s *Store) UserSessions(ctx context.Context, index string) ([]sessionkit.SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, driver.Wrap(ctx, "bbolt: usersessions", err)
	}
	var out []sessionkit.SessionInfo
	err := s.readOrClean(func(tx *bolt.Tx, clean bool) error {
		out = out[:0]
		now := ms(s.now())
		idx := []byte(index)
		var latest int64
		for _, k := range members(tx, idx) {
			var (
				e  entry
				b  binding
				ok bool
			)
			if clean {
				var err error
				if e, b, ok, err = member(tx, idx, k, now); err != nil {
					return err
				}
			} else if e, b, ok = peekMember(tx, idx, k, now); !ok {
				return errDirty
			}
			if ok {
				out = append(out, sessionInfo(k, e.m, b))
				latest = max(latest, e.m.deadline())
			}
		}
		if !clean || latest == 0 {
			return nil // an empty index was dropped by member
		}
		return resetDue(tx, idx, latest)
	})
	if err != nil {
		return nil, wrap(ctx, "usersessions", err)
	}
	return out, nil
}

// resetDue sets the index's deadline to d, earlier or later.
func resetDue(tx *bolt.Tx, index []byte, d int64) error {
	due := tx.Bucket(bucketUserDue)
	if old := int64At(due.Get(index)); old != d && old != 0 {
		if err := tx.Bucket(bucketUserExpiry).Delete(indexKey(old, index)); err != nil {
			return err
		}
		if err := due.Delete(index); err != nil {
			return err
		}
	}
	return raiseDue(tx, index, d)
}

// Revoke destroys the selected sessions of the index in one read-write
// transaction: no Bind can land in the middle of it.
func (s *Store) Revoke(ctx context.Context, index string, ids []string, except string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, driver.Wrap(ctx, "bbolt: revoke", err)
	}
	var want map[string]bool
	if ids != nil {
		want = make(map[string]bool, len(ids))
		for _, id := range ids {
			want[id] = true
		}
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		now := ms(s.now())
		idx := []byte(index)
		for _, k := range members(tx, idx) {
			_, b, ok, err := member(tx, idx, k, now)
			if err != nil {
				return err
			}
			if !ok || b.id == except && except != "" || want != nil && !want[b.id] {
				continue
			}
			if err := remove(tx, k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, wrap(ctx, "revoke", err)
	}
	return n, nil
}

// Info returns the session under key without refreshing it, in a
// read-only transaction (and a read-write one when it finds an expired or
// damaged record there to remove).
func (s *Store) Info(ctx context.Context, key string) (sessionkit.SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return sessionkit.SessionInfo{}, driver.Wrap(ctx, "bbolt: info", err)
	}
	var info sessionkit.SessionInfo
	var found bool
	err := s.readOrClean(func(tx *bolt.Tx, clean bool) error {
		k := []byte(key)
		now := ms(s.now())
		e, live := peek(tx, k, now)
		switch {
		case live && !e.isMarker():
			b, _ := getBinding(tx, k)
			info, found = sessionInfo(k, e.m, b), true
		case live: // a marker
		case clean:
			return remove(tx, k)
		case held(tx, k):
			return errDirty
		}
		return nil
	})
	if err != nil {
		return sessionkit.SessionInfo{}, wrap(ctx, "info", err)
	}
	if !found {
		return sessionkit.SessionInfo{}, sessionkit.ErrNotFound
	}
	return info, nil
}

// held reports whether anything at all is stored under key.
func held(tx *bolt.Tx, key []byte) bool {
	for _, b := range [][]byte{bucketSessions, bucketMeta, bucketRenamed, bucketBound} {
		if has(tx.Bucket(b), key) {
			return true
		}
	}
	return false
}

// liveSession returns the metadata of the live session under key, read
// off the buckets without changing anything.
func liveSession(tx *bolt.Tx, key, v []byte, now int64) (meta, bool) {
	m, ok := parseMeta(v)
	if !ok || now >= m.expires || m.ttl(now) <= 0 || tx.Bucket(bucketSessions).Bucket(key) == nil {
		return meta{}, false
	}
	return m, true
}

// Scan returns a page of the live sessions under prefix in key order, in
// one read-only transaction. The cursor is the key to start from.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", driver.Wrap(ctx, "bbolt: scan", err)
	}
	if limit <= 0 {
		limit = 100
	}
	var page []sessionkit.SessionInfo
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		now := ms(s.now())
		p := []byte(prefix)
		start := max(cursor, prefix)
		c := tx.Bucket(bucketMeta).Cursor()
		for k, v := c.Seek([]byte(start)); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if len(page) == limit {
				next = string(k)
				return nil
			}
			if m, ok := liveSession(tx, k, v, now); ok {
				b, _ := getBinding(tx, k)
				page = append(page, sessionInfo(k, m, b))
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", wrap(ctx, "scan", err)
	}
	return page, next, nil
}

// destroyBatch bounds one DestroyAll transaction.
const destroyBatch = 1000

// DestroyAll removes every session, marker and user index under prefix, in
// read-write transactions of up to destroyBatch keys each. The sessions an
// index under prefix lists go with it, wherever their keys are.
func (s *Store) DestroyAll(ctx context.Context, prefix string) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, driver.Wrap(ctx, "bbolt: destroyall", err)
		}
		var n, seen int
		err := s.db.Update(func(tx *bolt.Tx) error {
			n, seen = 0, 0
			now := ms(s.now())
			p := []byte(prefix)
			gone := func(k []byte) error {
				if e, ok := peek(tx, k, now); ok && !e.isMarker() {
					n++
				}
				return remove(tx, k)
			}
			for _, k := range under(tx, p, bucketSessions, bucketMeta, bucketRenamed, bucketBound) {
				if err := gone(k); err != nil {
					return err
				}
				seen++
			}
			for _, idx := range under(tx, p, bucketUsers, bucketUserDue) {
				for _, k := range members(tx, idx) {
					if _, _, ok := peekMember(tx, idx, k, now); ok {
						if err := gone(k); err != nil {
							return err
						}
					}
				}
				if err := dropIndex(tx, idx); err != nil {
					return err
				}
				seen++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, wrap(ctx, "destroyall", err)
		}
		if seen == 0 {
			return total, nil
		}
	}
}

// under returns up to destroyBatch distinct keys under prefix in the named
// buckets, copied.
func under(tx *bolt.Tx, prefix []byte, buckets ...[]byte) [][]byte {
	seen := map[string]bool{}
	var keys [][]byte
	for _, name := range buckets {
		c := tx.Bucket(name).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < destroyBatch; k, _ = c.Next() {
			if !seen[string(k)] {
				seen[string(k)] = true
				keys = append(keys, bytes.Clone(k))
			}
		}
	}
	return keys
}

// sweepIndexes drops the user indexes whose deadline has passed, removing
// what they still list that is dead, in batches; it returns how many index
// deadlines came due.
func (s *Store) sweepIndexes() (int, error) {
	return s.sweepDue(bucketUserExpiry, func(tx *bolt.Tx, entry []byte, now int64) error {
		if err := tx.Bucket(bucketUserExpiry).Delete(entry); err != nil {
			return err
		}
		idx := entry[8:]
		if d := int64At(tx.Bucket(bucketUserDue).Get(idx)); d == int64(binary.BigEndian.Uint64(entry)) {
			if err := tx.Bucket(bucketUserDue).Delete(idx); err != nil {
				return err
			}
		} else if d != 0 {
			return nil // a stale entry: the index is due later
		}
		// Every session the index listed is past its deadline, unless
		// SetExpiry or damage says otherwise: keep what still lives.
		var latest int64
		for _, k := range members(tx, idx) {
			e, _, ok, err := member(tx, idx, k, now)
			if err != nil {
				return err
			}
			if ok {
				if err := tx.Bucket(bucketUsers).Bucket(idx).Put(k, int64Bytes(e.m.deadline())); err != nil {
					return err
				}
				latest = max(latest, e.m.deadline())
			}
		}
		if latest == 0 {
			if err := dropIndex(tx, idx); err != nil {
				return err
			}
		} else if err := raiseDue(tx, idx, latest); err != nil {
			return err
		}
		return nil
	})
}
