package sessionkit

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// DefaultCookieName is the default CookieOptions.Name.
const DefaultCookieName = "session"

// CookieOptions configures the cookie that carries the token. The zero value
// is a host-only, HttpOnly, SameSite=Lax cookie named "session" on Path=/,
// Secure when the request came over TLS, and kept until the browser closes.
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

type contextKey struct{}

// FromContext returns the session of a request served by
// Manager.Middleware, or nil outside it.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(contextKey{}).(*Session)
	return s
}

// HTTPError answers a request whose session operation failed, through
// Options.ErrorHandler (by default: 503 Service Unavailable, with a body
// that carries neither the error nor the token).
func (m *Manager) HTTPError(w http.ResponseWriter, r *http.Request, err error) {
	m.errorHandler(w, r, err)
}

func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, _ error) {
	http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
}

// Middleware puts a Session in the context of every request (FromContext)
// and carries its token in a cookie or, with Options.Header, a header.
//
// It is lazy: it makes no store call of its own, so a request that never
// uses its session costs nothing, and reading a missing, malformed, unknown
// or expired session creates nothing. A session is stored when the handler
// first writes to it. The token goes out (Set-Cookie or the response header)
// when a session is created or renewed, is expired when it is destroyed or
// found gone, and, with CookieOptions.Persist, is refreshed on responses
// whose request used the session. Responses get Vary on the cookie or
// header, and those that carry a token get Cache-Control: no-store.
//
// Store errors are returned to the handler by the Session's methods; it
// decides, or calls Manager.HTTPError.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One allocation holds the request's session and its writer.
		cw := &commitWriter{ResponseWriter: w, m: m, r: r, sent: m.requestToken(r)}
		s := &cw.session
		if cw.sent != "" {
			m.load(s, cw.sent) // requestToken returns only well-formed tokens
		} else {
			m.initFresh(s)
		}
		next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), contextKey{}, s)))
		cw.commitOnce()
	})
}

// requestToken returns the first well-formed token the request carries, or "".
func (m *Manager) requestToken(r *http.Request) string {
	if m.header != "" {
		if t := r.Header.Get(m.header); validToken(t) {
			return t
		}
		return ""
	}
	// Several cookies of one name can arrive (a parent domain's, a
	// tossed one): take the first that is a token at all. Parsed here
	// rather than with Request.Cookies, which allocates every cookie.
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && name == m.cookie.Name && validToken(value) {
				return value
			}
		}
	}
	return ""
}

// writeToken sets the response headers for the session's state, just
// before the handler's response starts.
func (m *Manager) writeToken(w http.ResponseWriter, r *http.Request, s *Session, sent string) {
	s.mu.Lock()
	token, stored, issued, touched, exp, ownExpiry := s.token, s.stored, s.issued, s.touched, s.exp, s.ownExpiry
	s.mu.Unlock()

	h := w.Header()
	h.Add("Vary", m.varyOn())
	var value string
	maxAge := 0 // until the browser closes
	switch {
	case stored && ownExpiry:
		value, maxAge = token, int(exp.Absolute/time.Second)
	case stored && m.cookie.Persist && (issued || touched):
		value, maxAge = token, int(m.expiry.Idle/time.Second)
	case stored && issued:
		value = token
	case !stored && sent != "":
		// Destroyed, or gone from the store: tell the client to forget it.
	default:
		return
	}
	h.Set("Cache-Control", "no-store")
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
	sent      string // the token the request carried, if well-formed
	session   Session
	committed bool
}

func (w *commitWriter) commitOnce() {
	if !w.committed {
		w.committed = true
		w.m.writeToken(w.ResponseWriter, w.r, &w.session, w.sent)
	}
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
