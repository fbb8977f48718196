// Package sessionkit keeps per-user session state for net/http services in
// a store that reads and writes one field at a time: with the redishash
// adapter, one Redis hash per session and one field per session key.
// Nothing is loaded at the start of a request and nothing is written back
// at the end, so a request costs the same with one key or a thousand, and
// two requests that change different keys never overwrite each other.
//
// The Manager owns policy: 256-bit tokens checked for exact format before
// any store call, storage keys that are a hash of the token (never the token
// itself), a sliding idle timeout and an absolute lifetime enforced by the
// store, a codec (JSON by default), and limits on value size and key count.
// Manager.Middleware puts a Session in each request's context and carries
// its token in a cookie or a header. A Session is a handle: each of its
// calls is one store operation.
//
// Stores implement the Store contract; the adaptertest package checks every
// promise of it. The adapters live in adapters/: redishash (primary),
// memory, bbolt and memcached; storeurl opens any of them from a URL.
//
// # Errors
//
// The sentinels are in errors.go; test for them with errors.Is.
// ErrUnavailable means the store failed, and the store's own error stays
// reachable with errors.As. A done context returns the context's error. A
// session that is gone is not an error for a Session: it reads as empty and
// the next write creates a new session under a new token. ErrInvalidKey,
// ErrTooLarge, ErrTooManyFields and ErrEncode refuse a write before anything
// is stored; ErrDecode reports a stored value that does not fit the type
// asked for.
package sessionkit
