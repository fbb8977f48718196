// Package memcached is a sessionkit.Store on memcached
// (github.com/bradfitz/gomemcache), for deployments that already run it and
// can lose sessions when memcached evicts or restarts.
//
// Memcached has no hashes, so a session is one item holding all its fields.
// Every operation on a session is a compare-and-swap loop (gets, then cas),
// so concurrent writes to different keys of one session all survive, at the
// price of rewriting the whole item on each use: the cost grows with the
// session, unlike the redishash adapter. Reads rewrite the item too, because
// the sliding expiry lives in it.
//
// # Deviations from the sessionkit.Store contract
//
//   - Round trips. Operations take more than the one round trip the
//     contract promises, as a compare-and-swap loop must: Get, GetAll, Keys,
//     Has, Len, Set, Incr, Pop, Delete, Clear, Touch and SetExpiry take 2
//     (gets + cas), plus 2 for each compare-and-swap lost to a concurrent
//     write (a read, or a Pop of a missing field, that loses it does not
//     retry: the writer refreshed the expiry). Create takes 1 (add).
//     Rename takes 4 (see Rename below). Destroy takes 2 on a session
//     (gets + cas), 1 on a missing key, and 2 more for each Rename marker
//     it follows (gets + delete). An expired or damaged item found on the
//     way costs 1 more (delete); Create over one costs 2 more (gets + cas).
//   - Clock. Expiry is decided on the application's clock, not memcached's
//     (see Clock below).
//   - Eviction. Memcached may evict any item at any time when it runs out of
//     memory: a session then reads as ErrNotFound, and an evicted Rename
//     marker makes the old key read as ErrNotFound instead of
//     sessionkit.ErrRenewed (and a Destroy through it cannot reach the
//     session it led to).
//   - Memory limits. Unless started with -M, memcached makes room by
//     evicting other items, so a write that grows a session succeeds when
//     memcached is full and some other session is lost. With -M, memcached
//     refuses the write instead, and it fails with ErrUnavailable.
//
// # Item layout
//
// The item's key is the storage key, or, when that is longer than 250
// bytes or holds a space or control byte, "sk:h:" and the unpadded
// base64url SHA-256 of it. The value is one of:
//
//	session: 0x01; created, idle, absolute, expires as big-endian int64
//	         Unix ms; the field count, then each name and value, all
//	         length-prefixed with uvarints
//	marker:  0x02; expires as a big-endian int64 Unix ms; the new storage
//	         key; a big-endian CRC-32C of all the bytes before it
//
// The item's memcached expiration is the exact expiry in the value rounded
// up to the second; expirations over 30 days are sent as an absolute Unix
// time, as memcached requires. An item past its exact expiry is treated as
// gone. Destroy overwrites a session with an emptied one whose exact expiry
// has passed, so it reads as gone at once and memcached drops it within a
// second. An item that cannot be decoded, or whose metadata is not what the
// store writes (a policy that is not positive, bytes left over), reads as no
// session and is deleted by the operation that finds it.
//
// # Listing sessions
//
// The Store implements sessionkit.Counter and sessionkit.Scanner (Count,
// Scan, DestroyAll) with memcached's "lru_crawler metadump hash", which
// walks the server's hash table and prints every item's key and
// expiration; a server that does not know "hash" is asked for
// "lru_crawler metadump all" (memcached 1.4.31 and later), which walks the
// LRUs instead. gomemcache has no call for it, so the Store opens a
// connection of its own to each server it is given in Options.Servers or
// Options.Selector (without them the three fail with errors.ErrUnsupported),
// keeps the keys under the prefix that memcached has not expired on its
// own clock, and reads them with gets, 256 at a time, to keep the live
// sessions: not the Rename markers, not expired or damaged items. A gets
// changes nothing, so listing refreshes no session (memcached does mark
// what it reads as recently used, which only shields it from eviction).
//
// A server started with "-o no_lru_crawler", one whose crawler was turned
// off ("lru_crawler disable"), or one older than 1.4.31 cannot list its
// items: the three fail at once with an error matching ErrNoCrawler and
// errors.ErrUnsupported (a configuration to change, not an outage to
// retry). When the crawler is busy (memcached's own expiry sweep, or
// another client's metadump: it runs one at a time) they wait for it, up
// to 30 seconds, then fail with sessionkit.ErrUnavailable. Every read of
// the metadump must come within the client's Timeout.
//
// What they see of writes made meanwhile. A metadump is not a snapshot.
// Walking the hash table, it prints every item that exists from its start
// to its end exactly once, whatever is written to it meanwhile (a write
// replaces the item in its hash bucket, and memcached does not grow its
// hash table during the walk); an item added or removed meanwhile may or
// may not be printed. So Count counts every session that lives through the
// whole call, and any number of those created, renamed or ended meanwhile.
// Scan lists each server's keys in byte order, a page at a time, each
// page from a new metadump, after the last key of the page before: a
// session that lives through the whole walk under one key is returned
// exactly once, if the server list does not change during the walk. A
// Rename gives a session a new key, which the walk may have passed. With
// "metadump all" (servers before "hash") the walk follows the LRUs, which
// memcached reorders as items are used and rewritten, and this Store
// rewrites a session on every use: a session in use during the walk may
// then be missed or listed twice. Memcached may also evict any item at any
// time (see Deviations).
//
// Costs: one stats and one metadump per server (per page, for Scan), one
// gets per 256 keys found under the prefix, and for DestroyAll one cas
// or delete per item found (see DestroyAll). The keys found are held in
// memory, about 100 bytes each. A metadump walks every item of the server,
// under the prefix or not: on one local memcached, counting 10,000
// sessions among 20,000 items took 0.1 to 0.18 s (0.04 to 0.07 s of it the
// metadump), a whole Scan in pages of 1,000 0.5 to 0.7 s, and DestroyAll
// of them 0.5 to 1.3 s.
//
// Item keys that ItemKey hashed (storage keys longer than 250 bytes or
// holding a space or control byte) do not hold the storage key, so they
// are never counted, listed or destroyed; a prefix that would be hashed
// fails with errors.ErrUnsupported. A Manager's keys are hashed only
// when its KeyPrefix is longer than about 190 bytes or holds such a byte.
//
// It does not implement sessionkit.Users (the per-user index): memcached
// cannot change two items atomically, so an index item and the sessions it
// lists could not be kept in step, and a login racing a revoke-all could
// bind a session the revoke never saw: revocation could not be complete.
//
// # Rename
//
// Memcached cannot change two items atomically, so Rename freezes first and
// copies second, and a crash anywhere fails closed (the session may be lost,
// never duplicated). Its round trips:
//
//  1. gets oldKey and newKey together (one "gets" per server, sent in
//     parallel): ErrNotFound if oldKey holds no live session, ErrRenewed if
//     it holds a marker, ErrExists if newKey holds a live session or marker.
//  2. cas oldKey from the session to a marker naming newKey (expiring after
//     sessionkit.RenewMarkerTTL or with the session, whichever is first).
//     Of concurrent Renames only one wins this cas; a loser reads again
//     and finds the marker (ErrRenewed). A write through oldKey that came
//     before is in the bytes this cas replaced, so it moves with the
//     session; one after it finds the marker (ErrRenewed). A write that
//     raced it lost its own cas and reads again; if the write won, this cas
//     is the one that fails, and Rename starts over at 1.
//  3. add newKey with the session's fields, creation time, policy and
//     expiry. If newKey was taken since step 1, the marker is turned back
//     into the session (2 more round trips) and Rename returns ErrExists.
//  4. gets oldKey again: if it still holds this marker, Rename returns nil.
//     If not, a Destroy removed the marker meanwhile (see below): Rename
//     deletes newKey (1 more round trip) and returns ErrNotFound.
//
// A crash after 2 leaves a marker and no session (the session is lost);
// after 3, the renamed session (done, and the caller never heard). Once
// step 2 is done, a cancelled context no longer stops Rename: stopping
// then would lose the session. A backend error after step 2 returns
// ErrUnavailable, and fails closed like a crash: the session is frozen
// under oldKey, or already under newKey, which the caller was not told.
//
// # Destroy racing Rename
//
// Destroy reads the key first. On a session it overwrites it with a dead
// one by cas; on a marker it deletes the marker first and then destroys
// what it named (following a chain of markers). Every interleaving with a
// Rename of the same key (steps R1 to R4 above; D for Destroy) ends with
// nothing live once both have returned:
//
//   - D reads a session, and its cas lands before R2: R2 fails its cas,
//     reads again, finds a dead item and returns ErrNotFound.
//   - D reads a session, and R2 lands first: D's cas fails, D reads again
//     and finds the marker, as in the next cases.
//   - D reads the marker and deletes it before R4: R4 finds the marker
//     gone, deletes newKey and returns ErrNotFound. Whether D then reaches
//     newKey before or after R3 (finding nothing there, or the session,
//     which it kills), nothing is left: R4 runs after R3.
//   - D reads the marker and deletes it after R4: Rename returned nil, R3
//     is done, so D finds the session under newKey and kills it.
//
// That is why Destroy deletes the marker before it follows it: had it
// destroyed newKey first, it could find newKey still empty, let R3 add the
// session and R4 see the marker, and only then delete the marker, leaving
// the renamed session live. The cost is that a crash of Destroy between
// the two leaves the renamed session live; that Destroy never returned.
//
// Only a concurrent Create or Rename onto the very same newKey (which
// random 256-bit keys rule out) can make Rename turn the marker back while
// a Destroy follows it, and then that Destroy kills the other record.
//
// # Clock
//
// Memcached's own clock only counts whole seconds and cannot be read
// without a round trip, so the exact expiry (to the millisecond) is decided
// on the application's clock (Options.Clock, default time.Now) and kept in
// the item. What depends on the application servers' clocks:
//
//   - A session's creation time, taken by Create on the creating server's
//     clock, and so its absolute deadline (creation time plus the absolute
//     lifetime), which every later operation compares with its own
//     server's clock: skew between application servers moves the deadline
//     by the skew, later or earlier.
//   - Every check of whether a session or a Rename marker has expired,
//     and every refresh of the idle expiry (now plus the idle timeout, on
//     the refreshing server's clock): a server whose clock is ahead of the
//     one that last used the session sees it end up to the skew early.
//     It cannot outlive its idle timeout by more than the second memcached
//     rounds to: see the next paragraph.
//   - A Rename marker's expiry (RenewMarkerTTL or the session's expiry,
//     on the renaming server's clock).
//
// Memcached's own expiration reclaims the memory and bounds the rest: each
// write sets it to the exact expiry rounded up to the second, as seconds
// from now, which memcached counts on its own clock from when it gets the
// write. So an item is gone at most the idle timeout plus a second after
// its last use, whatever the skew. Expirations over 30 days are sent as an
// absolute Unix time instead (memcached requires it), which moves with the
// skew between the writing server's clock and memcached's. Keep
// application servers' clocks in step (NTP): the skew is the error.
//
// # Errors
//
// gomemcache takes no context: a context is checked before each attempt of
// an operation (by Destroy only at its start, by Rename not once it has
// frozen the session), and the client's Timeout (see Options.Timeout)
// bounds each round trip. A write that would make an item larger than the
// server takes fails with sessionkit.ErrTooLarge, checked against
// Options.MaxItemSize before sending and mapped from the server's refusal
// if the server's limit is lower.
package memcached

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxItemSize = 1 << 20 // memcached's default -I
	maxKeyLength       = 250
	maxRelativeExpiry  = 30 * 24 * time.Hour
	casAttempts        = 1000
	// maxChain bounds how many markers Destroy follows. Markers cannot
	// form a cycle (Rename refuses a target that holds one) and each lives
	// at most sessionkit.RenewMarkerTTL, so a real chain is a few links.
	maxChain = 64
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Clock returns the current time. Default time.Now. It decides expiry:
	// see the package doc's Clock section.
	Clock func() time.Time
	// MaxItemSize is the largest item the server takes (memcached -I).
	// Writes that would make a larger item fail with ErrTooLarge.
	// Default DefaultMaxItemSize.
	MaxItemSize int
	// Timeout, if positive, is set by New as the client's socket read and
	// write timeout (memcache.Client.Timeout), which bounds each round trip
	// since gomemcache takes no context. It changes the client for all its
	// users. Zero leaves the client as it is (gomemcache's default is
	// memcache.DefaultTimeout, 500 ms).
	Timeout time.Duration
	// Servers are the addresses the client was made with (the arguments of
	// memcache.New: host:port, or a Unix socket path holding a "/"), for
	// Count, Scan and DestroyAll, which talk to every server directly
	// (gomemcache keeps its server list to itself). Without Servers or
	// Selector those three fail with errors.ErrUnsupported; every other
	// operation goes through the client and does not need them.
	Servers []string
	// Selector is the client's server selector, for a client made with
	// memcache.NewFromSelector; it takes the place of Servers (Count, Scan
	// and DestroyAll ask it for the servers on each call).
	Selector memcache.ServerSelector
}

// Store is a sessionkit.Store on memcached.
type Store struct {
	client   *memcache.Client
	now      func() time.Time
	maxItem  int
	servers  []string
	selector memcache.ServerSelector
}

var (
	_ sessionkit.Store   = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
	_ sessionkit.Scanner = (*Store)(nil)
)

// New returns a Store on client; opts may be nil. The Store does not own the
// client, but sets its Timeout if opts.Timeout is positive.
func New(client *memcache.Client, opts *Options) *Store {
	s := &Store{client: client, now: time.Now, maxItem: DefaultMaxItemSize}
	if opts != nil {
		if opts.Clock != nil {
			s.now = opts.Clock
		}
		if opts.MaxItemSize > 0 {
			s.maxItem = opts.MaxItemSize
		}
		if opts.Timeout > 0 {
			client.Timeout = opts.Timeout
		}
		s.servers = append([]string(nil), opts.Servers...)
		s.selector = opts.Selector
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

// Kinds of item: the first byte of the value.
const (
	kindSession = 1
	kindMarker  = 2
)

// record is a decoded session.
type record struct {
	created, idle, absolute, expires int64 // Unix ms
	fields                           map[string][]byte
}

func (r *record) encode() []byte {
	n := 1 + 32 + binary.MaxVarintLen64
	for k, v := range r.fields {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, kindSession)
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

// marker is what Rename leaves at the old key.
type marker struct {
	expires int64  // Unix ms
	target  string // the storage key the session moved to
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (m *marker) encode() []byte {
	b := binary.BigEndian.AppendUint64([]byte{kindMarker}, uint64(m.expires))
	b = append(b, m.target...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errCorrupt = errors.New("memcached: item is not a sessionkit record")

// decode parses an item's value into a session or a marker, copying every
// byte out of it.
func decode(b []byte) (*record, *marker, error) {
	if len(b) == 0 {
		return nil, nil, errCorrupt
	}
	switch b[0] {
	case kindSession:
		r, err := decodeSession(b)
		return r, nil, err
	case kindMarker:
		m, err := decodeMarker(b)
		return nil, m, err
	}
	return nil, nil, errCorrupt
}

func decodeSession(b []byte) (*record, error) {
	if len(b) < 33 {
		return nil, errCorrupt
	}
	r := &record{}
	for i, p := range []*int64{&r.created, &r.idle, &r.absolute, &r.expires} {
		*p = int64(binary.BigEndian.Uint64(b[1+8*i:]))
	}
	if r.created <= 0 || r.idle <= 0 || r.absolute <= 0 {
		return nil, errCorrupt
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
	if len(b) != 0 {
		return nil, errCorrupt
	}
	return r, nil
}

func decodeMarker(b []byte) (*marker, error) {
	if len(b) < 1+8+1+4 {
		return nil, errCorrupt
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errCorrupt
	}
	return &marker{expires: int64(binary.BigEndian.Uint64(body[1:])), target: string(body[9:])}, nil
}

func (r *record) has(name string) bool {
	_, ok := r.fields[name]
	return ok
}

// ttl is the time left from now (Unix ms) under the record's policy.
func (r *record) ttl(now int64) int64 { return min(r.idle, r.created+r.absolute-now) }

// found is what a gets found under a key: a live session, a live marker,
// or neither (no item, or a dead one: expired, or not a sessionkit item).
type found struct {
	it  *memcache.Item
	rec *record
	mk  *marker
}

func inspect(it *memcache.Item, now int64) found {
	f := found{it: it}
	if it == nil {
		return f
	}
	rec, mk, err := decode(it.Value)
	switch {
	case err != nil:
	case rec != nil && now < rec.expires && rec.ttl(now) > 0:
		f.rec = rec
	case mk != nil && now < mk.expires:
		f.mk = mk
	}
	return f
}

func (f found) live() bool { return f.rec != nil || f.mk != nil }

// expiration converts an exact expiry (Unix ms) into memcached's: seconds
// from now rounded up, at least 1, or an absolute Unix time beyond 30 days.
func (s *Store) expiration(expires int64) int32 {
	left := time.Duration(expires-s.now().UnixMilli()) * time.Millisecond
	secs := int64((left + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if time.Duration(secs)*time.Second > maxRelativeExpiry {
		return int32(s.now().Unix() + secs)
	}
	return int32(secs)
}

func wrap(ctx context.Context, op string, err error) error {
	if err != nil && strings.Contains(err.Error(), "SERVER_ERROR object too large") {
		// gomemcache has no error value for a server's refusal: it is only
		// in the text of the unexpected reply.
		return driver.WrapAs("memcached: "+op, sessionkit.ErrTooLarge, err)
	}
	return driver.Wrap(ctx, "memcached: "+op, err)
}

// item encodes r for key, or fails with ErrTooLarge if the server would
// refuse it (leaving the stored session as it was).
func (s *Store) item(key string, r *record, casID uint64) (*memcache.Item, error) {
	v := r.encode()
	// memcached's item overhead (header, key, CAS) counts against -I too.
	if len(v)+len(key)+64 > s.maxItem {
		return nil, fmt.Errorf("%w: the session would take %d bytes, memcached takes %d", sessionkit.ErrTooLarge, len(v), s.maxItem)
	}
	return &memcache.Item{Key: key, Value: v, Expiration: s.expiration(r.expires), CasID: casID}, nil
}

// get returns the item under key, or nil if there is none.
func (s *Store) get(key string) (*memcache.Item, error) {
	it, err := s.client.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil
	}
	return it, err
}

// del deletes the item under key; a missing one is fine.
func (s *Store) del(key string) error {
	if err := s.client.Delete(key); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return err
	}
	return nil
}

// gone removes a dead item f found (if any) and reports the session gone.
// Memcached has no delete-if-unchanged, so this is a plain delete: only a
// concurrent Create of the very same key could be hurt by it.
func (s *Store) gone(ctx context.Context, op string, f found) error {
	if f.it != nil {
		if err := s.del(f.it.Key); err != nil {
			return wrap(ctx, op, err)
		}
	}
	return sessionkit.ErrNotFound
}

// errUnchanged tells modify that fn wrote nothing; the expiry refresh is
// still attempted, but losing that race to a writer is fine.
var errUnchanged = errors.New("unchanged")

// modify runs fn on the live session under key in a compare-and-swap loop,
// refreshing its expiry. fn may run more than once; it returns errUnchanged
// when it only read. On a marker it returns ErrRenewed and writes nothing.
func (s *Store) modify(ctx context.Context, op, key string, fn func(r *record) error) error {
	k := ItemKey(key)
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return driver.Wrap(ctx, "memcached: "+op, err)
		}
		it, err := s.get(k)
		if err != nil {
			return wrap(ctx, op, err)
		}
		now := s.now().UnixMilli()
		f := inspect(it, now)
		switch {
		case f.mk != nil:
			return sessionkit.ErrRenewed
		case f.rec == nil:
			return s.gone(ctx, op, f)
		}
		r := f.rec
		r.expires = now + r.ttl(now)
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
				return nil // what was read held until the concurrent write
			}
		case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			// deleted meanwhile: read again
		default:
			return wrap(ctx, op, err)
		}
	}
	return fmt.Errorf("memcached: %s: %w: no compare-and-swap won in %d attempts", op, sessionkit.ErrUnavailable, casAttempts)
}

// add stores it under a key with no live session or marker: add, or, when
// a dead item sits there, a compare-and-swap over it. ErrExists if a live
// one is there.
func (s *Store) add(ctx context.Context, op string, it *memcache.Item) error {
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return driver.Wrap(ctx, "memcached: "+op, err)
		}
		err := s.client.Add(it)
		if !errors.Is(err, memcache.ErrNotStored) {
			return wrap(ctx, op, err)
		}
		old, err := s.get(it.Key)
		if err != nil {
			return wrap(ctx, op, err)
		}
		if old == nil {
			continue // gone meanwhile: add again
		}
		if inspect(old, s.now().UnixMilli()).live() {
			return sessionkit.ErrExists
		}
		it.CasID = old.CasID
		if err := s.client.CompareAndSwap(it); err == nil {
			return nil
		} else if !errors.Is(err, memcache.ErrCASConflict) && !errors.Is(err, memcache.ErrCacheMiss) && !errors.Is(err, memcache.ErrNotStored) {
			return wrap(ctx, op, err)
		}
	}
	return fmt.Errorf("memcached: %s: %w: no write won in %d attempts", op, sessionkit.ErrUnavailable, casAttempts)
}

// Create stores a new session: 1 round trip (add), 2 more over a dead item.
func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	now := s.now().UnixMilli()
	r := &record{created: now, idle: exp.Idle.Milliseconds(), absolute: exp.Absolute.Milliseconds(), fields: make(map[string][]byte, len(fields))}
	r.expires = now + r.ttl(now)
	for _, f := range fields {
		r.fields[f.Name] = f.Value // encoded (copied) below, never kept
	}
	it, err := s.item(ItemKey(key), r, 0)
	if err != nil {
		return err
	}
	return s.add(ctx, "create", it)
}

// Get returns the named fields' values: 2 round trips (gets + cas, to refresh the expiry).
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

// GetAll returns every field: 2 round trips (gets + cas).
func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	var out map[string][]byte
	err := s.modify(ctx, "getall", key, func(r *record) error {
		out = r.fields
		return errUnchanged
	})
	return out, err
}

// Keys returns every field name: 2 round trips (gets + cas).
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

// Has reports whether the session has the named field: 2 round trips (gets + cas).
func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	var ok bool
	err := s.modify(ctx, "has", key, func(r *record) error {
		_, ok = r.fields[name]
		return errUnchanged
	})
	return ok, err
}

// Len returns the number of fields: 2 round trips (gets + cas).
func (s *Store) Len(ctx context.Context, key string) (int, error) {
	var n int
	err := s.modify(ctx, "len", key, func(r *record) error {
		n = len(r.fields)
		return errUnchanged
	})
	return n, err
}

// Set writes the given fields: 2 round trips (gets + cas), 2 more per lost race.
func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	return s.modify(ctx, "set", key, func(r *record) error {
		if driver.TooManyFields(len(r.fields), fields, maxFields, r.has) {
			return sessionkit.ErrTooManyFields
		}
		for _, f := range fields {
			r.fields[f.Name] = f.Value // encoded (copied) before modify returns
		}
		return nil
	})
}

// Incr adds delta to the integer in the named field: 2 round trips (gets + cas), 2 more per lost race.
func (s *Store) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	var n int64
	err := s.modify(ctx, "incr", key, func(r *record) error {
		sum, err := driver.AddInt(r.fields[name], delta) // decode made present fields non-nil
		if err != nil {
			return fmt.Errorf("memcached: incr: %w", err)
		}
		if driver.TooManyFields(len(r.fields), []sessionkit.Field{{Name: name}}, maxFields, r.has) {
			return sessionkit.ErrTooManyFields
		}
		n = sum
		r.fields[name] = strconv.AppendInt(nil, sum, 10)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Pop returns the named field's value and removes it: 2 round trips (gets + cas), 2 more per lost race.
func (s *Store) Pop(ctx context.Context, key, name string) ([]byte, error) {
	var out []byte
	err := s.modify(ctx, "pop", key, func(r *record) error {
		v, ok := r.fields[name]
		if !ok {
			out = nil
			return errUnchanged
		}
		out = v // decode made this copy
		delete(r.fields, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes the named fields: 2 round trips (gets + cas), 2 more per lost race.
func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	return s.modify(ctx, "delete", key, func(r *record) error {
		for _, n := range names {
			delete(r.fields, n)
		}
		return nil
	})
}

// Clear removes every field: 2 round trips (gets + cas), 2 more per lost race.
func (s *Store) Clear(ctx context.Context, key string) error {
	return s.modify(ctx, "clear", key, func(r *record) error {
		clear(r.fields)
		return nil
	})
}

// Touch refreshes the expiry and returns the time left: 2 round trips (gets + cas).
func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	var left time.Duration
	err := s.modify(ctx, "touch", key, func(r *record) error {
		left = time.Duration(r.expires-s.now().UnixMilli()) * time.Millisecond
		return nil
	})
	return left, err
}

// SetExpiry replaces the expiry policy: 2 round trips (gets + cas).
func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	ended := false
	err := s.modify(ctx, "setexpiry", key, func(r *record) error {
		r.idle, r.absolute = exp.Idle.Milliseconds(), exp.Absolute.Milliseconds()
		now := s.now().UnixMilli()
		ttl := r.ttl(now)
		if ended = ttl <= 0; ended {
			kill(r)
			return nil
		}
		r.expires = now + ttl
		return nil
	})
	if err == nil && ended {
		return sessionkit.ErrNotFound
	}
	return err
}

// kill empties r and sets its exact expiry in the past: written over a
// session by cas, it ends the session at once, and memcached drops the item
// within a second.
func kill(r *record) {
	clear(r.fields)
	r.expires = 0
}

// Rename moves the session to newKey and leaves a marker at oldKey:
// 4 round trips, not atomic on the server but fail-closed (see the package
// doc, Rename).
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	ok, nk := ItemKey(oldKey), ItemKey(newKey)
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return driver.Wrap(ctx, "memcached: rename", err)
		}
		// 1. Both keys in one round trip.
		items, err := s.client.GetMulti([]string{ok, nk})
		if err != nil {
			return wrap(ctx, "rename", err)
		}
		now := s.now().UnixMilli()
		from, to := inspect(items[ok], now), inspect(items[nk], now)
		switch {
		case from.mk != nil:
			return sessionkit.ErrRenewed
		case from.rec == nil:
			return s.gone(ctx, "rename", from)
		case to.live():
			return sessionkit.ErrExists
		}
		r := from.rec
		r.expires = now + r.ttl(now)
		moved, err := s.item(nk, r, 0)
		if err != nil {
			return err
		}
		mk := &marker{expires: min(now+sessionkit.RenewMarkerTTL.Milliseconds(), r.expires), target: newKey}
		frozen := &memcache.Item{Key: ok, Value: mk.encode(), Expiration: s.expiration(mk.expires), CasID: from.it.CasID}

		// 2. Freeze: from here on the session is only under newKey, or lost.
		err = s.client.CompareAndSwap(frozen)
		switch {
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			continue // written, renamed or destroyed meanwhile: look again
		case err != nil:
			return wrap(ctx, "rename", err)
		}
		// Stopping now would lose the session: the context no longer counts.
		ctx := context.WithoutCancel(ctx)

		// 3. Copy.
		if err := s.add(ctx, "rename", moved); errors.Is(err, sessionkit.ErrExists) {
			return s.thaw(ctx, frozen, r)
		} else if err != nil {
			return err
		}

		// 4. Check that no Destroy went through the marker meanwhile.
		it, err := s.get(ok)
		if err != nil {
			return wrap(ctx, "rename", err)
		}
		if it != nil && bytes.Equal(it.Value, frozen.Value) {
			return nil
		}
		if err := s.del(nk); err != nil {
			return wrap(ctx, "rename", err)
		}
		return sessionkit.ErrNotFound
	}
	return fmt.Errorf("memcached: rename: %w: no compare-and-swap won in %d attempts", sessionkit.ErrUnavailable, casAttempts)
}

// thaw turns Rename's marker back into the session r when newKey turned out
// to be taken, and returns ErrExists. If the marker is gone, a Destroy went
// through it: the session is gone too.
func (s *Store) thaw(ctx context.Context, frozen *memcache.Item, r *record) error {
	it, err := s.get(frozen.Key)
	if err != nil {
		return wrap(ctx, "rename", err)
	}
	if it == nil || !bytes.Equal(it.Value, frozen.Value) {
		return sessionkit.ErrExists
	}
	back, err := s.item(frozen.Key, r, it.CasID)
	if err != nil {
		return err
	}
	if err := s.client.CompareAndSwap(back); err != nil && !errors.Is(err, memcache.ErrCASConflict) && !errors.Is(err, memcache.ErrCacheMiss) {
		return wrap(ctx, "rename", err)
	}
	return sessionkit.ErrExists
}

// Destroy removes the session: 2 round trips (gets + cas), 1 if missing; on
// a marker, 2 more per marker followed (gets + delete). Not atomic on the
// server: see the package doc, Destroy racing Rename.
func (s *Store) Destroy(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, "memcached: destroy", err)
	}
	k := ItemKey(key)
	_, err := s.destroyChain(ctx, "destroy", k, maxChain)
	return err
}

// destroyChain ends what the item key k holds, following up to links Rename
// markers, and reports whether it ended a live session.
func (s *Store) destroyChain(ctx context.Context, op, k string, links int) (killed bool, err error) {
	for range links {
		next, killed, err := s.destroy(ctx, op, k)
		if next == "" || err != nil {
			return killed, err
		}
		k = next
	}
	return false, fmt.Errorf("memcached: %s: %w: more than %d Rename markers in a chain", op, sessionkit.ErrUnavailable, links)
}

// destroy ends what key holds. On a marker it deletes it and returns the
// item key it named, for Destroy to go on with. killed reports that it
// ended a live session.
func (s *Store) destroy(ctx context.Context, op, k string) (next string, killed bool, err error) {
	for range casAttempts {
		it, err := s.get(k)
		if err != nil || it == nil {
			return "", false, wrap(ctx, op, err)
		}
		f := inspect(it, s.now().UnixMilli())
		switch {
		case f.mk != nil:
			// The marker goes first, then what it names: see the package doc.
			return ItemKey(f.mk.target), false, wrap(ctx, op, s.del(k))
		case f.rec == nil:
			return "", false, wrap(ctx, op, s.del(k))
		}
		kill(f.rec)
		dead, err := s.item(k, f.rec, it.CasID)
		if err != nil {
			return "", false, err
		}
		switch err := s.client.CompareAndSwap(dead); {
		case err == nil:
			return "", true, nil
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			// written, renamed or deleted meanwhile: look again
		default:
			return "", false, wrap(ctx, op, err)
		}
	}
	return "", false, fmt.Errorf("memcached: %s: %w: no compare-and-swap won in %d attempts", op, sessionkit.ErrUnavailable, casAttempts)
}
