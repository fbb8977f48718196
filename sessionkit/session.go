package sessionkit

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Session is a handle on one session. It holds no session data: every call
// is one store operation on the fields it names, so concurrent requests on
// one session never overwrite each other's keys.
//
// A handle starts from Manager.Load (the client's token) or
// Manager.NewSession (a fresh token). When the store reports the session
// gone (expired, destroyed elsewhere, never existed), the handle turns into a
// fresh session with a new token: reads see it empty and the next write
// creates it. A store failure is returned as an error, never read as empty.
//
// When another request renewed the session after this one read its token,
// every call returns ErrRenewed and the handle stays as it is: the token is
// stale, and the client has been sent the new one.
//
// Inside Manager.Middleware, a call that writes (Set, SetMany, Delete,
// Clear, SetExpiry, Renew, Destroy) after the response's headers went out
// returns ErrHeadersSent without touching the store: the client could never
// learn of a new token or of a session's end.
//
// A Session is safe for concurrent use; its calls are serialised.
type Session struct {
	m  *Manager
	mu sync.Mutex

	token     string
	key       string
	stored    bool      // a record is believed to exist under key
	exp       Expiry    // policy for the record when this handle creates it
	ownExpiry bool      // exp was set by SetExpiry, not the Manager's default
	one       [1]Field  // Set's write, kept here to save an allocation
	name      [1]string // a one-key read's names, kept here for the same reason
	scratch   [32]byte  // Key.Set's encoding of a scalar, for the same reason

	// Further well-formed tokens the request carried (several cookies of
	// the session's name), tried in order when the current one is gone.
	alt  [maxCandidates - 1]string
	nalt int

	// What happened through this handle, for the HTTP layer.
	issued    bool // the current token was stored by this handle (created or renewed)
	touched   bool // a store operation refreshed the record's expiry
	destroyed bool // Destroy ended the session the request carried
	sealed    bool // the response's headers went out: writes are refused
	used      bool // the handler called the session: its response is private
	stale     bool // the token was renewed away by another request: send no cookie
	detached  bool // from Manager.Session outside the middleware: every call fails

	req *http.Request // the request, inside the middleware (for Bind's device label)

	bound bool // Bind bound the session through this handle
	ended bool // ... and it ended since (revoked, evicted by the cap): no write recreates it
}

// maxCandidates bounds the session tokens tried from one request.
const maxCandidates = 3

// reset turns the handle into a fresh, unstored session with a new token.
func (s *Session) reset() {
	s.token = newToken()
	s.key = s.m.StorageKey(s.token)
	s.stored = false
	s.issued = false
	s.stale = false // the new token is this handle's own
	s.nalt = 0
}

// call runs op on the stored record and interprets its outcome. When the
// record is gone and the request carried another token, the handle moves to
// it and runs op again; when none is left, the handle turns fresh and the
// caller goes on as with an empty session (check s.stored). Call with s.mu
// held and s.stored true.
//
// A token that was renewed away also yields to the next one, so that a
// stale cookie planted before the live one cannot hide it; when no token is
// left, the call returns ErrRenewed if any was renewed.
func (s *Session) call(ctx context.Context, op func(key string) error) error {
	var renewed error
	for {
		err := op(s.key)
		switch {
		case err == nil:
			s.touched = true
			return nil
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrRenewed):
			if errors.Is(err, ErrRenewed) {
				renewed = err
			} else {
				s.m.emit(ctx, EventGone, s.token, "", nil)
				if s.bound {
					// Revoked or evicted while the request that logged in
					// still runs: a write must not quietly start an
					// unbound session holding what it meant for the user.
					s.ended = true
				}
			}
			if s.nalt > 0 {
				s.nalt--
				s.token = s.alt[0]
				s.key = s.m.StorageKey(s.token)
				copy(s.alt[:], s.alt[1:])
				continue
			}
			if renewed != nil {
				s.stale = true
				return renewed
			}
			s.reset()
			return nil
		default:
			s.m.storeError(ctx, s.token, err)
			return err
		}
	}
}

// lock takes the handle's lock and notes that the request used its
// session, for Cache-Control.
func (s *Session) lock() {
	s.mu.Lock()
	s.used = true
}

// writable refuses a write on a detached handle, or once the response's
// headers are out.
func (s *Session) writable() error {
	if s.sealed {
		return ErrHeadersSent
	}
	return s.detachedErr()
}

// detachedErr is ErrNoSession on a handle that Manager.Session returned
// outside the middleware.
func (s *Session) detachedErr() error {
	if s.detached {
		return ErrNoSession
	}
	return nil
}

// Token returns the session's current token. It changes when the session is
// renewed (or SetExpiry changes its policy), when it is first stored (the
// token then carries its policy, see Policy), or when it is replaced
// because the old one was gone: read it after the writes of the request.
func (s *Session) Token() string {
	s.lock()
	defer s.mu.Unlock()
	return s.token
}

// LogID returns a short identifier of the current token that is safe to
// log, or "" for the handle that Manager.Session returns outside the
// middleware (which has no token).
func (s *Session) LogID() string {
	if t := s.Token(); t != "" {
		return LogID(t)
	}
	return ""
}

// Get returns the value of key decoded into an any (JSON numbers come back as
// json.Number with the default codec), or nil if the key is not set.
func (s *Session) Get(ctx context.Context, key string) (any, error) {
	var v any
	if _, err := s.Decode(ctx, key, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Decode decodes the value of key into v and reports whether the key was
// set. v is left alone when it was not. For a key of one known type, a
// Key is shorter.
func (s *Session) Decode(ctx context.Context, key string, v any) (found bool, err error) {
	b, err := s.getRaw(ctx, key)
	if err != nil || b == nil {
		return false, err
	}
	return true, s.m.unmarshal(key, b, v)
}

// getRaws returns the stored bytes of names (valid keys), nil for each that
// is not set, or nil for a session that is not stored.
func (s *Session) getRaws(ctx context.Context, names []string) ([][]byte, error) {
	s.lock()
	defer s.mu.Unlock()
	return s.getRawsLocked(ctx, names)
}

// getRawsLocked is getRaws with s.mu held.
func (s *Session) getRawsLocked(ctx context.Context, names []string) ([][]byte, error) {
	if !s.stored {
		return nil, s.detachedErr()
	}
	var vals [][]byte
	err := s.call(ctx, func(k string) (err error) {
		vals, err = s.m.store.Get(ctx, k, names...)
		return err
	})
	if err != nil || !s.stored {
		return nil, err
	}
	return vals, nil
}

// getRaw returns the stored bytes of key, nil if it is not set. Stores do
// not keep the names slice, so it is s.name.
func (s *Session) getRaw(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	s.lock()
	defer s.mu.Unlock()
	s.name[0] = key
	vals, err := s.getRawsLocked(ctx, s.name[:])
	s.name[0] = ""
	if err != nil || vals == nil {
		return nil, err
	}
	return vals[0], nil
}

// Set stores value under key. See SetMany.
func (s *Session) Set(ctx context.Context, key string, value any) error {
	f, err := s.m.encodeField(key, value)
	if err != nil {
		return err
	}
	return s.setField(ctx, f)
}

// setField writes one encoded field, as Set does.
func (s *Session) setField(ctx context.Context, f Field) error {
	s.lock()
	defer s.mu.Unlock()
	s.one[0] = f
	defer func() { s.one[0] = Field{} }()
	return s.writeLocked(ctx, s.one[:])
}

// SetMany stores several values in one store operation, leaving other keys
// alone. If the session does not exist yet (or is gone), it is created with
// these values under a fresh token. On any error nothing is written: an
// invalid key (ErrInvalidKey), a value the codec rejects (ErrEncode), a value
// over MaxValueSize (ErrTooLarge) or a write that would leave more than
// MaxFields keys (ErrTooManyFields).
func (s *Session) SetMany(ctx context.Context, values map[string]any) error {
	fields, err := s.m.encode(values)
	if err != nil {
		return err
	}
	s.lock()
	defer s.mu.Unlock()
	return s.writeLocked(ctx, fields)
}

// writeLocked writes fields to the stored session, or creates it with them.
// Stores do not keep the slice, so Set can reuse s.one.
func (s *Session) writeLocked(ctx context.Context, fields []Field) error {
	if err := s.writable(); err != nil {
		return err
	}
	if s.stored {
		err := s.call(ctx, func(k string) error { return s.m.store.Set(ctx, k, fields, s.m.maxFields) })
		if err != nil || s.stored {
			return err
		}
	}
	return s.create(ctx, fields)
}

func (s *Session) create(ctx context.Context, fields []Field) error {
	if s.ended {
		return ErrRevoked
	}
	// The token gets its policy now, when the store checks its creation
	// time; it was never sent before the session was stored.
	s.token = withPolicy(s.token, newPolicy(s.m.now(), s.exp))
	s.key = s.m.StorageKey(s.token)
	err := s.m.store.Create(ctx, s.key, fields, s.exp)
	if errors.Is(err, ErrClockSkew) {
		s.m.emit(ctx, EventStoreError, s.token, "", err)
		s.token = s.token[:TokenLength]
		s.key = s.m.StorageKey(s.token)
		err = s.m.store.Create(ctx, s.key, fields, s.exp)
	}
	if err != nil {
		s.m.storeError(ctx, s.token, err)
		return err
	}
	s.stored, s.issued, s.touched = true, true, true
	s.m.emit(ctx, EventCreated, s.token, "", nil)
	return nil
}

// Incr adds delta to the integer under key (0 when the key is not set) and
// returns the new value, in one atomic store operation: of concurrent
// Incrs on one session none is lost. The value is stored as its decimal
// text, the default codec's form of an integer, so a Key[int] or
// Key[int64] reads it. A key that holds something else is ErrDecode and is
// left as it is. On a session not stored yet, Incr creates it with the key
// set to delta.
func (s *Session) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	if s.stored {
		var n int64
		err := s.call(ctx, func(k string) (err error) {
			n, err = s.m.store.Incr(ctx, k, key, delta, s.m.maxFields)
			return err
		})
		if err != nil || s.stored {
			return n, err
		}
	}
	s.one[0] = Field{Name: key, Value: strconv.AppendInt(nil, delta, 10)}
	defer func() { s.one[0] = Field{} }()
	return delta, s.create(ctx, s.one[:])
}

// Pop reads the value of key into v and removes the key, in one atomic
// store operation: of concurrent Pops exactly one gets the value (a flash
// message is shown once). found is false, and v left alone, when the key
// was not set. The key is removed even when its value does not decode
// (ErrDecode).
func (s *Session) Pop(ctx context.Context, key string, v any) (found bool, err error) {
	b, err := s.popRaw(ctx, key)
	if err != nil || b == nil {
		return false, err
	}
	return true, s.m.unmarshal(key, b, v)
}

func (s *Session) popRaw(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil || !s.stored {
		return nil, err
	}
	var b []byte
	err := s.call(ctx, func(k string) (err error) {
		b, err = s.m.store.Pop(ctx, k, key)
		return err
	})
	if err != nil || !s.stored {
		return nil, err
	}
	return b, nil
}

// Delete removes keys; keys that are not set are ignored.
func (s *Session) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil || !s.stored || len(keys) == 0 {
		return err
	}
	return s.call(ctx, func(k string) error { return s.m.store.Delete(ctx, k, keys...) })
}

// Has reports whether key is set.
func (s *Session) Has(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	s.lock()
	defer s.mu.Unlock()
	if !s.stored {
		return false, s.detachedErr()
	}
	var ok bool
	err := s.call(ctx, func(k string) (err error) {
		ok, err = s.m.store.Has(ctx, k, key)
		return err
	})
	if err != nil || !s.stored {
		return false, err
	}
	return ok, nil
}

// Keys returns the session's keys, sorted.
func (s *Session) Keys(ctx context.Context) ([]string, error) {
	s.lock()
	defer s.mu.Unlock()
	if !s.stored {
		return nil, s.detachedErr()
	}
	var keys []string
	err := s.call(ctx, func(k string) (err error) {
		keys, err = s.m.store.Keys(ctx, k)
		return err
	})
	if err != nil || !s.stored {
		return nil, err
	}
	slices.Sort(keys)
	return keys, nil
}

// All returns every key and value, decoded as by Get.
func (s *Session) All(ctx context.Context) (map[string]any, error) {
	s.lock()
	raw, err := s.allRaw(ctx)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(raw))
	for k, b := range raw {
		var v any
		if err := s.m.unmarshal(k, b, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

func (s *Session) allRaw(ctx context.Context) (map[string][]byte, error) {
	if !s.stored {
		return nil, s.detachedErr()
	}
	var raw map[string][]byte
	err := s.call(ctx, func(k string) (err error) {
		raw, err = s.m.store.GetAll(ctx, k)
		return err
	})
	if err != nil || !s.stored {
		return nil, err
	}
	return raw, nil
}

// Len returns the number of keys.
func (s *Session) Len(ctx context.Context) (int, error) {
	s.lock()
	defer s.mu.Unlock()
	if !s.stored {
		return 0, s.detachedErr()
	}
	var n int
	err := s.call(ctx, func(k string) (err error) {
		n, err = s.m.store.Len(ctx, k)
		return err
	})
	if err != nil || !s.stored {
		return 0, err
	}
	return n, nil
}

// Clear removes every key. The session itself, its token and its expiry stay.
func (s *Session) Clear(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil || !s.stored {
		return err
	}
	return s.call(ctx, func(k string) error { return s.m.store.Clear(ctx, k) })
}

// Destroy removes the session from the store (logout). The handle turns
// into a fresh session: a later write creates a new one under a new token.
//
// Destroy through a token that another request has just renewed still ends
// the session, under its new token too: whichever of a Renew and a Destroy
// runs first, nothing is left live once both have returned. When the request
// carried several session cookies, the session of each is destroyed.
func (s *Session) Destroy(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.stored {
		if err := s.m.store.Destroy(ctx, s.key); err != nil {
			s.m.storeError(ctx, s.token, err)
			return err
		}
		for _, t := range s.alt[:s.nalt] {
			if err := s.m.store.Destroy(ctx, s.m.StorageKey(t)); err != nil {
				s.m.storeError(ctx, t, err)
				return err
			}
		}
		s.nalt = 0
		s.destroyed = true
		s.m.emit(ctx, EventDestroyed, s.token, "", nil)
	}
	s.bound, s.ended = false, false // a logout: what follows is a new session
	s.reset()
	return nil
}

// Renew gives the session a new token and keeps its data, expiry policy and
// creation time (so its lifetime is not extended). Call it on login and on
// every privilege change, against session fixation, before writing what
// the new privilege needs.
//
// The move is atomic in every store: the old token stops working at once,
// and a write through it lands either before the move (and is carried
// over) or after it (and returns ErrRenewed). Of concurrent Renews of one
// session exactly one succeeds; the others return ErrRenewed and leave
// their handle as it is (their response sends no cookie, so the winner's
// new token stays with the client). Renew of a session that is gone (or
// was never stored) gives the handle a fresh token and returns nil, as any
// other call on a gone session does.
func (s *Session) Renew(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if !s.stored {
		s.reset()
		return nil
	}
	var token, key string
	err := s.call(ctx, func(old string) error {
		token = renewToken(s.token) // the same tag (the same Cluster slot) and policy
		key = s.m.StorageKey(token)
		return s.m.store.Rename(ctx, old, key)
	})
	if err != nil || !s.stored {
		return err
	}
	s.m.emit(ctx, EventRenewed, token, s.token, nil)
	s.token, s.key, s.issued = token, key, true
	return nil
}

// SetExpiry overrides the expiry policy of this session, as for "remember
// me". The lifetime still counts from the session's creation.
//
// A stored session's token carries its policy (see Policy), so SetExpiry
// then gives it a new token, as Renew does: a second store operation (a
// Rename), after which the old token answers ErrRenewed. If that step
// fails, the new policy holds all the same, under the old token; a store
// that uses the policy in the key (redishash) then serves that token more
// slowly (two round trips per read).
func (s *Session) SetExpiry(ctx context.Context, exp Expiry) error {
	if err := checkExpiry(exp); err != nil {
		return err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.stored {
		if err := s.call(ctx, func(k string) error { return s.m.store.SetExpiry(ctx, k, exp) }); err != nil {
			return err // the policy did not change: the cookie must not say it did
		}
		if p, ok := parsePolicy(s.token[min(len(s.token), TokenLength):]); ok && s.stored {
			s.reissue(ctx, newPolicy(time.UnixMilli(p.Created), exp))
		}
	}
	s.exp, s.ownExpiry = exp, true
	return nil
}

// reissue moves the stored session to a new token carrying p, after
// SetExpiry changed its policy. A failure leaves the session under its
// old token, which still works: it is reported, not returned.
func (s *Session) reissue(ctx context.Context, p Policy) {
	token := withPolicy(renewToken(s.token), p)
	key := s.m.StorageKey(token)
	if err := s.m.store.Rename(ctx, s.key, key); err != nil {
		if !errors.Is(err, ErrRenewed) && !errors.Is(err, ErrNotFound) {
			s.m.storeError(ctx, s.token, err)
		}
		return
	}
	s.m.emit(ctx, EventRenewed, token, s.token, nil)
	s.token, s.key, s.issued = token, key, true
}

// ExpiresAt refreshes the session's idle timeout and returns when the
// session will expire if it is not used again. It returns the zero time for
// a session that is not stored.
func (s *Session) ExpiresAt(ctx context.Context) (time.Time, error) {
	s.lock()
	defer s.mu.Unlock()
	if !s.stored {
		return time.Time{}, s.detachedErr()
	}
	var ttl time.Duration
	err := s.call(ctx, func(k string) (err error) {
		ttl, err = s.m.store.Touch(ctx, k)
		return err
	})
	if err != nil || !s.stored {
		return time.Time{}, err
	}
	return s.m.now().Add(ttl), nil
}

// Create stores a new, empty session now and returns its handle.
func (m *Manager) Create(ctx context.Context) (*Session, error) {
	s := m.NewSession()
	if err := s.create(ctx, nil); err != nil {
		return nil, err
	}
	return s, nil
}
