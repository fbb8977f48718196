// Package sessionkit keeps per-user session state for net/http services in
// a store that reads and writes one field at a time: with the redishash
// adapter, one Redis hash per session and one field per session key.
// Nothing is loaded at the start of a request and nothing is written back
// at the end, so a request costs the same with one key or a thousand, and
// two requests that change different keys never overwrite each other.
//
// A [Manager] owns policy: 256-bit tokens checked for exact format before
// any store call, storage keys that are a hash of the token (never the
// token itself), a sliding idle timeout and an absolute lifetime enforced
// by the store on its own clock, a [Codec] (JSON by default), and limits on
// value size and key count. [Manager.Middleware] puts a [Session] in each
// request's context, where [Manager.Session] finds it, and carries its
// token in a cookie or a header. A Session is a handle: each of its calls
// is one store operation. A [Key] gives a session key a Go type:
//
//	var user = sessionkit.NewKey[string]("user")
//
//	name, found, err := user.Get(ctx, m.Session(ctx))
//
// At login, call [Session.Renew] first (a new token, the same data, the
// old token dead at once), then write what the login grants; at logout,
// [Session.Destroy]. [Options.OnEvent] and [Options.Logger] see every
// lifecycle event ([Event]), with a [LogID], never a token.
//
// Stores implement the [Store] contract; the adaptertest package checks
// every promise of it, and package driver has the helpers an adapter
// author needs. The adapters live in adapters/: redishash (primary),
// memory, bbolt, memcached and postgres; storeurl opens any of them from a
// URL.
//
// # Errors
//
// The sentinels are in errors.go; test for them with errors.Is, or map them
// to an HTTP status with [ErrorStatus] (what [Manager.HTTPError] answers by
// default). [ErrUnavailable] means the store failed, and the store's own
// error stays reachable with errors.As. A done context returns the
// context's error. A session that is gone is not an error for a Session: it
// reads as empty and the next write creates a new session under a new
// token. [ErrRenewed] says the request's token was renewed by another
// request: nothing was read or written. [ErrInvalidKey], [ErrTooLarge],
// [ErrTooManyFields] and [ErrEncode] refuse a write before anything is
// stored; [ErrHeadersSent] refuses a write made after the response's
// headers went out; [ErrDecode] reports a stored value that does not fit
// the type asked for; [ErrNoSession] comes from the handle that
// [Manager.Session] returns outside the middleware.
package sessionkit
