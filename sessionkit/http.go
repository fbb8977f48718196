package sessionkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DefaultCookieName is the default CookieOptions.Name.
const DefaultCookieName = "session"

// CookieOptions configures the cookie that carries the token. The zero value
// is a host-only, HttpOnly, SameSite=Lax cookie named "session" on Path=/,
// Secure when the request came over TLS, and kept until the browser closes.
//
// A Name starting with "__Host-" (recommended: the browser then refuses the
// cookie from anywhere but this host, over anything but HTTPS) gets Secure
// and Path=/ and no Domain; one starting with "__Secure-" gets Secure. New
// refuses options that contradict the prefix.
type CookieOptions struct {
	Name   string // default DefaultCookieName
	Path   string // default "/"
	Domain string // default: none (host-only)
	// Secure forces the Secure attribute; without it, Secure is set when
	// the request came over TLS.
	Secure bool
	// SameSite defaults to http.SameSiteLaxMode.
	SameSite http.SameSite
	// Partitioned sets the Partitioned attribute (CHIPS); it implies Secure.
	Partitioned bool
	// Persist makes the cookie outlive the browser: it gets Max-Age equal
	// to the Manager's idle timeout, and is sent again on each response
	// whose request used the session, as the idle timeout slides. Without
	// Persist the cookie lasts until the browser closes. The store enforces
	// the timeouts either way.
	//
	// A session given its own expiry (Session.SetExpiry, "remember me")
	// gets a cookie with Max-Age equal to its lifetime on that response,
	// Persist or not. Leave Persist off for remember-me: with it, a later
	// response slides the cookie back to the Manager's idle timeout, since
	// the middleware does not read the session's own policy from the store.
	Persist bool
}

// contextKey keys a request's session in its context. Each Manager has its
// own, so two Managers (a user session and an admin session, say) can serve
// one request.
type contextKey struct{ _ byte }

// Session returns the session of a request served by m.Middleware.
//
// It never returns nil. Outside m's middleware (a handler mounted without
// it, or under another Manager's) it returns a handle whose every call
// returns ErrNoSession, so a wiring mistake is an error, not a panic.
func (m *Manager) Session(ctx context.Context) *Session {
	if s, ok := ctx.Value(m.ctxKey).(*Session); ok {
		return s
	}
	return &Session{m: m, detached: true}
}

// HTTPError answers a request whose session operation failed, through
// Options.ErrorHandler. The default, DefaultErrorHandler, picks the status
// from the error's sentinel and logs the error through Options.Logger.
func (m *Manager) HTTPError(w http.ResponseWriter, r *http.Request, err error) {
	m.errorHandler(w, r, err)
}

// ErrorStatus is the HTTP status that DefaultErrorHandler answers err with,
// or 0 for none at all:
//
//   - 0 for a cancelled request (the client is gone) and for ErrHeadersSent
//     (the status is already out);
//   - 400 Bad Request for the caller's errors: ErrInvalidKey, ErrTooLarge,
//     ErrTooManyFields, ErrEncode, ErrInvalidToken, ErrInvalidUser;
//   - 409 Conflict for ErrRenewed (the request raced a Renew; a retry
//     carries the new token) and ErrTooManySessions (a login over the
//     cap, refused);
//   - 401 Unauthorized for ErrRevoked (the login did not hold);
//   - 503 Service Unavailable for ErrUnavailable and a store that timed out;
//   - 500 Internal Server Error for everything else (ErrDecode,
//     ErrNoSession, …).
func ErrorStatus(err error) int {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrHeadersSent):
		return 0
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrTooLarge), errors.Is(err, ErrTooManyFields),
		errors.Is(err, ErrEncode), errors.Is(err, ErrInvalidToken), errors.Is(err, ErrInvalidUser):
		return http.StatusBadRequest
	case errors.Is(err, ErrRenewed), errors.Is(err, ErrTooManySessions):
		return http.StatusConflict
	case errors.Is(err, ErrRevoked):
		return http.StatusUnauthorized
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// DefaultErrorHandler answers with ErrorStatus(err) and a body that names
// the status only: never the error's text, never a token. A cancelled
// context answers nothing only when it is the request's own (its client is
// gone); any other cancellation is a 500. It logs the error with the
// session's LogID: at Error level for a 5xx and for ErrHeadersSent (a bug in
// the handler: a write the client can never learn of), at Debug otherwise.
func (m *Manager) DefaultErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	code := ErrorStatus(err)
	if code == 0 && errors.Is(err, context.Canceled) && r.Context().Err() == nil {
		code = http.StatusInternalServerError
	}
	level := slog.LevelDebug
	if code >= 500 || errors.Is(err, ErrHeadersSent) {
		level = slog.LevelError
	}
	ctx := r.Context()
	if m.logger.Enabled(ctx, level) {
		m.logger.LogAttrs(ctx, level, "sessionkit: session operation failed",
			slog.String("session", m.Session(ctx).LogID()), slog.Int("status", code),
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	if code != 0 {
		http.Error(w, http.StatusText(code), code)
	}
}

// Middleware puts a [Session] in the context of every request ([Manager.Session])
// and carries its token in a cookie or, with Options.Header, a header.
//
// It is lazy: it makes no store call of its own, so a request that never
// uses its session costs nothing, and reading a missing, malformed, unknown
// or expired session creates nothing. A session is stored when the handler
// first writes to it. The token goes out (Set-Cookie or the response header)
// when a session is created or renewed, is expired when it is destroyed or
// found gone, and, with CookieOptions.Persist, is refreshed on responses
// whose request used the session. Responses get Vary on the cookie or
// header, and those whose handler used the session (or that carry a token)
// get Cache-Control: no-store.
//
// Store errors are returned to the handler by the Session's methods; it
// decides, or calls Manager.HTTPError.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One allocation holds the request's session and its writer.
		cw := &commitWriter{ResponseWriter: w, m: m, r: r}
		s := &cw.session
		n, rejected := m.requestTokens(r, &cw.sent)
		if rejected {
			m.emit(r.Context(), EventRejected, "", "", nil)
		}
		if n > 0 {
			m.load(s, cw.sent[0]) // requestTokens returns only well-formed tokens
			s.nalt = copy(s.alt[:], cw.sent[1:n])
		} else {
			m.initFresh(s)
		}
		s.req = r
		cw.ctx = sessionContext{Context: r.Context(), key: m.ctxKey, s: s}
		next.ServeHTTP(cw, r.WithContext(&cw.ctx))
		cw.commitOnce()
	})
}

// requestTokens fills out with the distinct well-formed tokens the request
// carries, at most maxCandidates, in order, and returns how many, and
// whether it also carried a malformed one.
func (m *Manager) requestTokens(r *http.Request, out *[maxCandidates]string) (n int, rejected bool) {
	if m.header != "" {
		t := r.Header.Get(m.header)
		if validToken(t) {
			out[0] = t
			return 1, false
		}
		return 0, t != ""
	}
	// Several cookies of one name can arrive (a parent domain's, one
	// tossed from a sibling subdomain): the first that names a live
	// session wins, so keep a few to try in order. Parsed here rather than
	// with Request.Cookies, which allocates every cookie.
	for _, line := range r.Header["Cookie"] {
		for line != "" && n < maxCandidates {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
			switch {
			case !ok || name != m.cookie.Name:
			case !validToken(value):
				rejected = true
			case !slices.Contains(out[:n], value):
				out[n] = value
				n++
			}
		}
	}
	return n, rejected
}

// writeToken sets the response headers for the session's state, just
// before the handler's response starts, and seals the session against
// writes the client could no longer learn of.
//
// The header values it adds are kept in hdr, which lives as long as the
// request, to save an allocation each.
func (m *Manager) writeToken(w http.ResponseWriter, r *http.Request, s *Session, sent []string, hdr *[2]string) {
	s.mu.Lock()
	s.sealed = true
	token, stored, issued, touched, exp, ownExpiry, destroyed, used, stale := s.token, s.stored, s.issued, s.touched, s.exp, s.ownExpiry, s.destroyed, s.used, s.stale
	s.mu.Unlock()

	h := w.Header()
	if len(h["Vary"]) == 0 {
		hdr[0] = m.varyOn()
		h["Vary"] = hdr[0:1:1] // h.Add's result, without its allocation
	} else {
		h.Add("Vary", m.varyOn())
	}
	noStore := func() {
		hdr[1] = "no-store"
		h["Cache-Control"] = hdr[1:2:2] // h.Set's result, without its allocation
	}
	if used {
		// The response may carry session data: no shared cache may keep
		// it, whatever Vary says.
		noStore()
	}
	var value string
	maxAge := 0 // until the browser closes
	switch {
	case stale:
		// Another request renewed the session: its response carries the
		// new token, which this one must not overwrite with the old.
		return
	case stored && ownExpiry:
		value, maxAge = token, int(exp.Absolute/time.Second)
	case stored && m.cookie.Persist && (issued || touched):
		value, maxAge = token, int(m.expiry.Idle/time.Second)
	case stored && issued:
		value = token
	case !stored && (destroyed || len(sent) == 1):
		// Destroyed, or gone from the store: tell the client to forget it.
		// When several cookies arrived and none was live, say nothing: a
		// deletion could hit a cookie that another response is setting.
	default:
		return
	}
	noStore()
	if m.header != "" {
		h.Set(m.header, value)
		return
	}
	c := &http.Cookie{
		Name:        m.cookie.Name,
		Value:       value,
		Path:        m.cookie.Path,
		Domain:      m.cookie.Domain,
		HttpOnly:    true,
		Secure:      m.cookie.Secure || m.cookie.Partitioned || r.TLS != nil,
		SameSite:    m.cookie.SameSite,
		Partitioned: m.cookie.Partitioned,
	}
	if value == "" {
		maxAge = -1 // Max-Age=0 on the wire: delete it now
	}
	c.MaxAge = maxAge
	http.SetCookie(w, c)
}

func (m *Manager) varyOn() string {
	if m.header != "" {
		return m.header
	}
	return "Cookie"
}

// commitWriter writes the token headers once, before the first byte of the
// response. It also holds the request's Session, to save an allocation.
type commitWriter struct {
	http.ResponseWriter
	m         *Manager
	r         *http.Request
	sent      [maxCandidates]string // the well-formed tokens the request carried
	session   Session
	ctx       sessionContext // the request's context, with session
	hdr       [2]string      // the Vary and Cache-Control values writeToken adds
	committed bool
}

// sessionContext is what context.WithValue(parent, key, s) would return,
// kept in the commitWriter to save an allocation.
type sessionContext struct {
	context.Context
	key *contextKey
	s   *Session
}

func (c *sessionContext) Value(key any) any {
	if k, ok := key.(*contextKey); ok && k == c.key {
		return c.s
	}
	return c.Context.Value(key)
}

func (c *sessionContext) String() string {
	return fmt.Sprint(c.Context) + ".WithValue(sessionkit.Session)"
}

func (w *commitWriter) commitOnce() {
	if !w.committed {
		w.committed = true
		w.m.writeToken(w.ResponseWriter, w.r, &w.session, w.sentTokens(), &w.hdr)
	}
}

func (w *commitWriter) sentTokens() []string {
	n := 0
	for n < len(w.sent) && w.sent[n] != "" {
		n++
	}
	return w.sent[:n]
}

func (w *commitWriter) WriteHeader(code int) {
	w.commitOnce()
	w.ResponseWriter.WriteHeader(code)
}

func (w *commitWriter) Write(b []byte) (int, error) {
	w.commitOnce()
	return w.ResponseWriter.Write(b)
}

// Flush lets http.ResponseController and streaming handlers flush.
func (w *commitWriter) Flush() {
	w.commitOnce()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *commitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
