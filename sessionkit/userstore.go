package sessionkit

import (
	"context"
	"time"
)

// Binding ties a record to a user; see Users.Bind. The Manager fills it.
type Binding struct {
	// Index is the storage key of the user's index, chosen by the Manager
	// from a hash of the user ID (never the ID itself). It carries the same
	// Redis Cluster hash tag as every key bound to the user, so an adapter
	// may rely on a user's index and sessions sharing one slot.
	Index string
	// User is the user ID as the application gave it, at most
	// MaxUserIDLength bytes of UTF-8.
	User string
	// ID is the session's public ID: random, unrelated to the token, and
	// kept for the life of the binding (across Renames).
	ID string
	// Device labels the client (the User-Agent, truncated), IP its address
	// when the Manager records it; both may be empty.
	Device, IP string
	// Expiry is the policy of the record Bind creates when oldKey is "".
	Expiry Expiry
	// Max > 0 caps the user's live sessions, this one included. When the
	// user already has Max, Bind destroys the oldest (by creation) to make
	// room, or with Refuse set returns ErrTooManySessions and changes
	// nothing.
	Max    int
	Refuse bool
}

// SessionInfo describes one stored session, for listings. Times are on the
// store's clock.
type SessionInfo struct {
	// Key is the storage key: a hash of the token, never the token. A
	// store that keeps records under the key without its policy (see
	// KeyPolicy) lists them that way.
	Key string
	// ID, User, Device and IP are the session's binding; all are empty
	// for a session bound to no user.
	ID, User, Device, IP string
	// Created is when the session was created; Expires when it ends if it
	// is not used again; Idle its idle timeout. The session was last used
	// at Expires-Idle, unless that is before Created or Expires is its
	// absolute deadline (then it was used at or after Expires-Idle).
	Created, Expires time.Time
	Idle             time.Duration
}

// Users is an optional interface that may be implemented by a Store: it
// keeps, for each user, an index of the sessions bound to that user. The
// Manager's Bind, UserSessions, RevokeSession and RevokeUser need it; the
// adaptertest package checks it under the "Users/" cases.
//
// Besides the promises of Store, a Users store keeps these:
//
//   - The index is complete: every live record bound to a user is in the
//     user's index from the moment Bind returns, under its current key
//     (Rename moves the entry with the record, atomically).
//   - Revocation is complete: once Revoke returns, no record that was in
//     the index when it was called is live, and a concurrent Bind either
//     lands before it (and is revoked) or after it.
//   - The index cleans itself: an entry whose record is gone is removed
//     when the index is next used, and the index never outlives the
//     latest absolute deadline of the records it listed.
//   - A Rename of a bound record keeps its binding; Destroy of it leaves
//     no live entry.
type Users interface {
	// Bind moves the record at oldKey to newKey as Rename does (with the
	// same promises: markers, atomicity, ErrRenewed, ErrNotFound,
	// ErrExists) and binds it to b.User, adding it to the index b.Index,
	// in one step as seen by every other operation. The record's former
	// binding, if any, ends. With oldKey "" it creates a new empty record
	// at newKey, under b.Expiry, bound the same way. The cap b.Max is
	// enforced in the same step, against concurrent Binds: a user never has
	// more than b.Max live bound sessions.
	//
	// A crash half-way fails closed: the session may be lost, never
	// duplicated, and never live outside its index.
	Bind(ctx context.Context, oldKey, newKey string, b Binding) error

	// UserSessions returns the live sessions in the index, in no set
	// order, without refreshing them. It removes the entries of records
	// that are gone.
	UserSessions(ctx context.Context, index string) ([]SessionInfo, error)

	// Revoke destroys the sessions in the index whose ID is in ids (all of
	// them when ids is nil), except the one whose ID is except, and returns
	// how many live sessions it ended. IDs not in the index are ignored.
	Revoke(ctx context.Context, index string, ids []string, except string) (int, error)

	// Info returns the session under key, without refreshing it; a missing
	// or expired record, or a Rename marker, returns ErrNotFound.
	Info(ctx context.Context, key string) (SessionInfo, error)
}

// Scanner is an optional interface that may be implemented by a Store: it
// walks every session under a key prefix, for operators (counting,
// listing and logging everyone out).
type Scanner interface {
	// Scan returns up to about limit live sessions whose key starts with
	// prefix, from cursor ("" to start), and the cursor to continue from
	// ("" when done). A session that lives through the whole walk is
	// returned at least once; Rename markers and indexes are never
	// returned.
	Scan(ctx context.Context, prefix, cursor string, limit int) (page []SessionInfo, next string, err error)

	// DestroyAll destroys every session and index whose key starts with
	// prefix and returns how many live sessions it ended. A session created
	// while it runs may survive it.
	DestroyAll(ctx context.Context, prefix string) (int, error)
}
