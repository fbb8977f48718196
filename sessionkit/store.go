package sessionkit

import (
	"context"
	"time"
)

// Expiry is a session's expiry policy, kept by the store with the record.
//
// A record lives at most Idle after its last use and never past
// Absolute after its creation. Both are positive: the Manager checks.
type Expiry struct {
	Idle     time.Duration // sliding: every operation on the record restarts it
	Absolute time.Duration // from creation; no operation extends it
}

// Field is one session key with its encoded value.
type Field struct {
	Name  string
	Value []byte
}

// RenewMarkerTTL bounds how long a Rename marker stays at the old key: the
// marker lives this long, or as long as the record would have, if less.
const RenewMarkerTTL = time.Minute

// Store keeps sessions as records of named fields. It is the contract every
// adapter implements; the adaptertest package checks it.
//
// Keys are storage keys chosen by the Manager (a hash of the token, never the
// token). Every generation of one session (see Rename) carries the same
// Redis Cluster hash tag ("{…}") in its key, so an adapter may rely on the
// old and new key of a Rename being in one slot. A key may end with the
// session's expiry policy (KeyPolicy): an adapter may use it to refresh
// the expiry without reading the policy first, and may keep the record
// under the key without it (the hash covers the policy). Field names are
// opaque non-empty strings; values are opaque bytes.
//
// The promises, for every method:
//
//   - One round trip on network backends, with the expiry refresh inside it
//     (an adapter that needs more says so on the method; redishash needs a
//     second one when a key's policy does not match its record: see its
//     package doc).
//   - Every operation except Create and Destroy acts on an existing, live
//     record only. On a missing or expired one it returns an error matching
//     ErrNotFound and leaves no record: what a write may have put under
//     the key on the way (redishash's plain commands) is no record (no
//     operation reads it as one) and is removed before the call returns.
//     Expired records are invisible at once, whether or not the backend
//     has removed them yet.
//   - On a key that Rename moved away (the marker it leaves), every
//     operation except Destroy returns ErrRenewed and changes nothing.
//   - Every operation except Destroy refreshes the record's expiry to the
//     smaller of its idle timeout and what is left of its absolute lifetime,
//     in the same atomic step. Time is the store's own clock (the server's,
//     for a network backend), so skew between application servers can
//     neither stretch nor cut a session. The one exception: a store that
//     takes the creation time from a key's policy must refuse one further
//     than a second from its clock (ErrClockSkew), so skew moves a
//     session's deadline by at most that.
//   - Every record written carries an expiry, set in the same atomic step.
//   - A record with missing or malformed metadata, of the wrong type, or
//     that cannot be decoded reads as ErrNotFound and is removed; it never
//     causes a lasting error and is never left without an expiry.
//   - Writes to different fields of one record never overwrite each other,
//     however they interleave.
//   - Calls of any size work: Get, Set and Delete take any number of names.
//   - A write that grows a record fails with ErrUnavailable, and writes
//     nothing, when the backend is out of memory.
//   - Byte slices passed in may be reused by the caller once the call
//     returns; byte slices returned belong to the caller.
//   - Backend failures return an error matching ErrUnavailable that also
//     wraps the backend's error; a done context returns the context's error.
type Store interface {
	// Create stores a new record with the given fields (possibly none, names
	// distinct) and expiry policy; its lifetime starts now, on the store's
	// clock. It returns ErrExists if a live record or a Rename marker has
	// the key.
	Create(ctx context.Context, key string, fields []Field, exp Expiry) error

	// Get returns the values of the named fields, in order; a field that
	// does not exist has a nil value.
	Get(ctx context.Context, key string, names ...string) ([][]byte, error)

	// GetAll returns every field of the record.
	GetAll(ctx context.Context, key string) (map[string][]byte, error)

	// Keys returns the names of every field of the record, in no set order.
	Keys(ctx context.Context, key string) ([]string, error)

	// Has reports whether the record has the named field.
	Has(ctx context.Context, key, name string) (bool, error)

	// Len returns the number of fields of the record.
	Len(ctx context.Context, key string) (int, error)

	// Set writes the given fields (names distinct), leaving the others as
	// they are. If maxFields > 0 and the record would then hold more than
	// maxFields fields, it returns ErrTooManyFields and the record is left
	// as it was (redishash's fast path writes first and takes the write
	// back, field by field: a concurrent read may see it meanwhile, a
	// field that another call wrote in between, with the same bytes, is
	// taken back with it, and a write that a login is carrying to another
	// slot is taken back where it lands, or stays, past the limit, if the
	// login has not landed 100 ms later).
	Set(ctx context.Context, key string, fields []Field, maxFields int) error

	// Incr adds delta to the integer in the named field (a missing field
	// counts as 0) and returns the new value, in one atomic step: of
	// concurrent Incrs none is lost. The field holds the integer's decimal
	// text (its JSON form). A new field counts against maxFields as in Set
	// (ErrTooManyFields). A field that does not hold an integer, or a
	// result outside int64, returns an error matching ErrDecode; nothing
	// changes then.
	Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error)

	// Pop returns the value of the named field and removes the field, in
	// one atomic step: of concurrent Pops exactly one gets the value. A
	// field that does not exist returns a nil value.
	Pop(ctx context.Context, key, name string) ([]byte, error)

	// Delete removes the named fields; names that do not exist are ignored.
	Delete(ctx context.Context, key string, names ...string) error

	// Clear removes every field; the record itself stays.
	Clear(ctx context.Context, key string) error

	// Touch refreshes the expiry and returns the time left to live.
	Touch(ctx context.Context, key string) (time.Duration, error)

	// SetExpiry replaces the record's expiry policy (Absolute still counts
	// from creation) and refreshes the expiry under it. If the new policy
	// has already run out, the record is removed and ErrNotFound returned.
	SetExpiry(ctx context.Context, key string, exp Expiry) error

	// Rename moves the record, with its fields, creation time and policy,
	// from oldKey to newKey, in one atomic step as seen by every other
	// operation:
	//
	//   - Of concurrent Renames of one oldKey exactly one succeeds; the
	//     others return ErrRenewed. There is never a second live copy.
	//   - An operation on oldKey lands either before the move (and a write
	//     is carried to newKey) or after it (and returns ErrRenewed).
	//   - At oldKey it leaves a marker naming newKey, which expires after
	//     RenewMarkerTTL or when the record would have, whichever is first
	//     (redishash: unless a process dies between the two round trips of
	//     an operation through oldKey, which can leave it up to the idle
	//     timeout; it still only answers ErrRenewed).
	//   - A crash half-way fails closed: the session may be lost, never
	//     duplicated.
	//
	// It returns ErrNotFound if oldKey has no live record, ErrRenewed if
	// oldKey holds a marker, and ErrExists if newKey holds a record or a
	// marker; in each case nothing changes.
	Rename(ctx context.Context, oldKey, newKey string) error

	// Destroy removes the record. A missing record is not an error. On a
	// Rename marker it removes the marker and, following the markers, the
	// record they lead to: a logout through a token that was just renewed
	// still ends the session.
	Destroy(ctx context.Context, key string) error
}

// Counter is an optional interface that may be implemented by a Store. It
// counts the live sessions whose key starts with prefix (Rename markers
// and user indexes are not sessions). A Store that does not implement
// Counter may still be counted through Scanner, page by page.
type Counter interface {
	Count(ctx context.Context, prefix string) (int, error)
}
