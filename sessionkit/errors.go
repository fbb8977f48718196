package sessionkit

import "errors"

// Sentinel errors. Act on them with errors.Is; the backend's own error, when
// there is one, stays reachable with errors.As.
var (
	// ErrNotFound: the session does not exist (never created, destroyed or expired).
	ErrNotFound = errors.New("sessionkit: session not found")
	// ErrRenewed: the request's token is stale. Another request renewed
	// the session (Session.Renew) after this one read its token, and the
	// client has been sent the new token. Nothing was read or written; the
	// session itself is fine under its new token.
	ErrRenewed = errors.New("sessionkit: session renewed by another request")
	// ErrHeadersSent: a write through a request's session came after the
	// response's headers went out, so the client could never learn of it
	// (a new or renewed token, a destroyed session). Nothing was written.
	ErrHeadersSent = errors.New("sessionkit: session written after the response headers were sent")
	// ErrNoSession: Manager.Session was asked for the session of a request
	// that the Manager's middleware did not serve.
	ErrNoSession = errors.New("sessionkit: no session in this request context (is the handler behind Manager.Middleware?)")
	// ErrExists: Create found a session under the key already.
	ErrExists = errors.New("sessionkit: session already exists")
	// ErrUnavailable: the backend could not be reached or failed.
	ErrUnavailable = errors.New("sessionkit: store unavailable")
	// ErrTooLarge: an encoded value is larger than the Manager's MaxValueSize,
	// or larger than the backend can hold.
	ErrTooLarge = errors.New("sessionkit: value too large")
	// ErrTooManyFields: a write would leave the session with more fields than
	// the Manager's MaxFields.
	ErrTooManyFields = errors.New("sessionkit: too many fields")
	// ErrInvalidKey: a session key is empty, too long, not UTF-8, holds a NUL
	// byte, or starts with ReservedPrefix.
	ErrInvalidKey = errors.New("sessionkit: invalid key")
	// ErrInvalidToken: a token does not have the exact format the Manager issues.
	ErrInvalidToken = errors.New("sessionkit: invalid token")
	// ErrDecode: a stored value could not be decoded into the requested type.
	ErrDecode = errors.New("sessionkit: cannot decode value")
	// ErrEncode: a value could not be encoded by the codec.
	ErrEncode = errors.New("sessionkit: cannot encode value")
	// ErrTooManySessions: a login would give the user more sessions than
	// Options.MaxSessionsPerUser, and Options.OverCap is RefuseLogin.
	// Nothing changed: the session the login came from is as it was.
	ErrTooManySessions = errors.New("sessionkit: the user has too many sessions")
	// ErrRevoked: the session that Session.Bind bound in this request
	// ended before a later write of the same request (revoked, or evicted
	// by MaxSessionsPerUser by a login elsewhere). Nothing was written, and
	// no new session was started in its place: the login did not hold, and
	// the client must log in again.
	ErrRevoked = errors.New("sessionkit: the session was revoked during the request")
	// ErrInvalidUser: a user ID is empty, longer than MaxUserIDLength, not
	// UTF-8, or holds a control or format character (such as U+202E).
	ErrInvalidUser = errors.New("sessionkit: invalid user ID")
	// ErrClockSkew: a store refused to create a record under a key whose
	// Policy names a creation time further from the store's clock than it
	// accepts (redishash: 1 s). Nothing was written. The Manager then
	// stores the session under a token without a policy, and reports the
	// error as an EventStoreError (Options.OnEvent): the application
	// server's clock needs NTP.
	ErrClockSkew = errors.New("sessionkit: the application server's clock is too far from the store's")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("sessionkit: store closed")
)
