package sessionkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults for the zero values of Options.
const (
	DefaultIdleTimeout  = 30 * time.Minute
	DefaultLifetime     = 24 * time.Hour
	DefaultKeyPrefix    = "session:"
	DefaultMaxFields    = 1024
	DefaultMaxValueSize = 64 << 10
)

// ReservedPrefix starts the names that adapters may use for their own
// metadata fields. Session keys cannot start with it.
const ReservedPrefix = "__sk_"

// MaxKeyLength is the longest session key, in bytes.
const MaxKeyLength = 256

// Options configures a Manager. The zero value of every field but Store
// means its default.
type Options struct {
	// Store keeps the sessions. Required.
	Store Store
	// IdleTimeout ends a session that has not been used for this long.
	// Every use slides it. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after its creation, however much
	// it is used. Default DefaultLifetime.
	Lifetime time.Duration
	// KeyPrefix starts every storage key. Default DefaultKeyPrefix.
	KeyPrefix string
	// Codec encodes values. Default JSONCodec.
	Codec Codec
	// MaxFields is the most keys one session may hold; negative means no
	// limit. Default DefaultMaxFields.
	MaxFields int
	// MaxValueSize is the largest encoded value, in bytes; negative means
	// no limit. Default DefaultMaxValueSize.
	MaxValueSize int
	// Clock returns the current time. Default time.Now. The stores keep
	// their own clock for expiry; this one dates what the Manager reports.
	Clock func() time.Time

	// Cookie configures the cookie that carries the token (the default
	// transport of Middleware).
	Cookie CookieOptions
	// Header, if set, carries the token in this request header instead of
	// a cookie, for APIs: a new token goes back in the same response header
	// (empty when the session ends).
	Header string
	// ErrorHandler answers a request whose session operation failed, when
	// the handler calls Manager.HTTPError. Default: Manager.DefaultErrorHandler.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives the errors that Manager.DefaultErrorHandler answers,
	// and every lifecycle event at Debug level, with the session's LogID,
	// never its token. Default slog.Default().
	Logger *slog.Logger
	// OnEvent, if set, receives every lifecycle event (see Event), in the
	// goroutine of the call that caused it; it must not block. Unset, the
	// events cost nothing.
	OnEvent func(Event)

	// MaxSessionsPerUser caps the live sessions bound to one user (see
	// Session.Bind); 0 means no cap. OverCap says what a login over it
	// does: EvictOldest (the default) or RefuseLogin.
	MaxSessionsPerUser int
	OverCap            CapPolicy
	// UserHashKey, if set, keys the hash of user IDs (HMAC-SHA-256) that
	// names each user's index in the store, so that a copy of the store
	// cannot be matched against a list of likely user IDs. Keep it secret
	// and stable: changing it orphans every index (the sessions stay, but
	// are no longer listed, capped or revoked by user).
	UserHashKey []byte
	// RecordIP keeps the client's IP address with each bound session, for
	// the user's list of sessions. Off by default: an IP address is
	// personal data.
	RecordIP bool
	// ClientIP returns the client's IP address for RecordIP. Default: the
	// host of Request.RemoteAddr (behind a proxy, read the header your
	// proxy sets, and only from that proxy).
	ClientIP func(*http.Request) string
}

// Manager owns session policy: tokens, storage keys, expiry, codec and
// limits. It is safe for concurrent use.
type Manager struct {
	store        Store
	expiry       Expiry
	prefix       string
	codec        Codec
	jsonCodec    bool // codec is JSONCodec: the typed getters may read its bytes directly
	maxFields    int
	maxValueSize int
	now          func() time.Time
	cookie       CookieOptions
	header       string
	errorHandler func(http.ResponseWriter, *http.Request, error)
	logger       *slog.Logger
	onEvent      func(Event)
	ctxKey       *contextKey // this Manager's key for its sessions in a request context

	maxUserSessions int
	capPolicy       CapPolicy
	recordIP        bool
	userHashKey     []byte
	clientIP        func(*http.Request) string
}

// New returns a Manager for opts. opts.Store is required; every other
// field may be left zero for its default.
func New(opts *Options) (*Manager, error) {
	if opts == nil || opts.Store == nil {
		return nil, errors.New("sessionkit: Options.Store is required")
	}
	m := &Manager{
		store:        opts.Store,
		expiry:       Expiry{Idle: opts.IdleTimeout, Absolute: opts.Lifetime},
		prefix:       opts.KeyPrefix,
		codec:        opts.Codec,
		maxFields:    opts.MaxFields,
		maxValueSize: opts.MaxValueSize,
		now:          opts.Clock,
		cookie:       opts.Cookie,
		header:       http.CanonicalHeaderKey(opts.Header),
		errorHandler: opts.ErrorHandler,
	}
	if m.expiry.Idle == 0 {
		m.expiry.Idle = DefaultIdleTimeout
	}
	if m.expiry.Absolute == 0 {
		m.expiry.Absolute = DefaultLifetime
	}
	if err := checkExpiry(m.expiry); err != nil {
		return nil, err
	}
	if m.prefix == "" {
		m.prefix = DefaultKeyPrefix
	}
	if i := strings.IndexFunc(m.prefix, func(r rune) bool { return r == '{' || r == '}' || unicode.IsControl(r) }); i >= 0 {
		// A brace would become the Redis Cluster hash tag of every key,
		// and a control character cannot be kept in the user index.
		return nil, fmt.Errorf("sessionkit: Options.KeyPrefix %q holds %q: braces and control characters are not allowed", m.prefix, m.prefix[i:i+1])
	}
	if m.codec == nil {
		m.codec = JSONCodec{}
	}
	_, m.jsonCodec = m.codec.(JSONCodec)
	if m.maxFields == 0 {
		m.maxFields = DefaultMaxFields
	}
	if m.maxValueSize == 0 {
		m.maxValueSize = DefaultMaxValueSize
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.cookie.Name == "" {
		m.cookie.Name = DefaultCookieName
	}
	if err := (&http.Cookie{Name: m.cookie.Name, Value: "x"}).Valid(); err != nil {
		return nil, fmt.Errorf("sessionkit: Options.Cookie.Name: %w", err)
	}
	if err := applyCookiePrefix(&m.cookie); err != nil {
		return nil, err
	}
	if m.cookie.Path == "" {
		m.cookie.Path = "/"
	}
	if m.cookie.SameSite == 0 {
		m.cookie.SameSite = http.SameSiteLaxMode
	}
	if m.errorHandler == nil {
		m.errorHandler = m.DefaultErrorHandler
	}
	m.onEvent = opts.OnEvent
	m.logger = opts.Logger
	if m.logger == nil {
		m.logger = slog.Default()
	}
	m.ctxKey = new(contextKey)
	if opts.MaxSessionsPerUser < 0 {
		return nil, fmt.Errorf("sessionkit: Options.MaxSessionsPerUser is negative (%d)", opts.MaxSessionsPerUser)
	}
	if opts.OverCap != EvictOldest && opts.OverCap != RefuseLogin {
		return nil, fmt.Errorf("sessionkit: Options.OverCap: unknown policy %d", opts.OverCap)
	}
	m.maxUserSessions, m.capPolicy, m.recordIP, m.clientIP = opts.MaxSessionsPerUser, opts.OverCap, opts.RecordIP, opts.ClientIP
	m.userHashKey = bytes.Clone(opts.UserHashKey)
	if m.clientIP == nil {
		m.clientIP = remoteIP
	}
	return m, nil
}

// checkExpiry refuses a policy the stores cannot keep: they count in ms.
func checkExpiry(e Expiry) error {
	if e.Idle < time.Millisecond || e.Absolute < time.Millisecond {
		return fmt.Errorf("sessionkit: idle timeout (%v) and lifetime (%v) must be at least 1ms", e.Idle, e.Absolute)
	}
	return nil
}

// Store returns the Manager's store.
func (m *Manager) Store() Store { return m.store }

// Expiry returns the default expiry policy of new sessions.
func (m *Manager) Expiry() Expiry { return m.expiry }

// StorageKey returns the key under which the store keeps the session of
// token: the prefix, the token's tag as a hash tag, a one-way hash of the
// token, and the expiry policy the token carries (see Policy), if any. It
// is not a secret and cannot be turned back into the token. A store may
// keep the record under the key without its policy (redishash does): see
// KeyPolicy.
func (m *Manager) StorageKey(token string) string { return storageKey(m.prefix, token) }

// NewSession returns a handle on a new session with a fresh token. Nothing
// is stored until the first write.
func (m *Manager) NewSession() *Session {
	s := &Session{}
	m.initFresh(s)
	return s
}

func (m *Manager) initFresh(s *Session) {
	s.m, s.exp = m, m.expiry
	s.reset()
}

// Load returns a handle on the session of token. It makes no store call:
// the first operation finds out whether the session exists. An unknown or
// expired session reads as empty, and the first write then creates a new
// session under a fresh token (the client's token is never adopted).
//
// A token that does not have the exact shape of an issued one returns
// ErrInvalidToken and no handle.
func (m *Manager) Load(token string) (*Session, error) {
	if !validToken(token) {
		m.emit(context.Background(), EventRejected, "", "", nil)
		return nil, ErrInvalidToken
	}
	s := &Session{}
	m.load(s, token)
	return s, nil
}

// load sets s up as a handle on the session of a well-formed token.
func (m *Manager) load(s *Session, token string) {
	s.m, s.token, s.key, s.stored, s.exp = m, token, m.StorageKey(token), true, m.expiry
}

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLength:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyLength)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidKey, key)
	case strings.IndexByte(key, 0) >= 0:
		// Not every backend can hold it (PostgreSQL text cannot), so no
		// backend sees it: the same key works on every store.
		return fmt.Errorf("%w: %q holds a NUL byte", ErrInvalidKey, key)
	case strings.HasPrefix(key, ReservedPrefix):
		return fmt.Errorf("%w: %q starts with the reserved prefix %q", ErrInvalidKey, key, ReservedPrefix)
	}
	return nil
}

// encode validates and encodes the values of a write.
func (m *Manager) encode(values map[string]any) ([]Field, error) {
	if m.maxFields > 0 && len(values) > m.maxFields {
		return nil, fmt.Errorf("%w: %d keys in one write, the limit is %d", ErrTooManyFields, len(values), m.maxFields)
	}
	fields := make([]Field, 0, len(values))
	for k, v := range values {
		f, err := m.encodeField(k, v)
		if err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// encodeField validates key and encodes value.
func (m *Manager) encodeField(key string, value any) (Field, error) {
	if err := checkKey(key); err != nil {
		return Field{}, err
	}
	b, err := m.codec.Marshal(value)
	if err != nil {
		return Field{}, fmt.Errorf("%w: key %q: %w", ErrEncode, key, err)
	}
	if m.maxValueSize > 0 && len(b) > m.maxValueSize {
		return Field{}, fmt.Errorf("%w: key %q encodes to %d bytes, the limit is %d", ErrTooLarge, key, len(b), m.maxValueSize)
	}
	return Field{Name: key, Value: b}, nil
}

// applyCookiePrefix enforces what browsers require of a cookie whose name
// has the __Host- or __Secure- prefix, and refuses options that contradict
// it: the browser would drop such a cookie without a word.
func applyCookiePrefix(c *CookieOptions) error {
	switch {
	case strings.HasPrefix(c.Name, "__Host-"):
		if c.Domain != "" {
			return fmt.Errorf("sessionkit: Options.Cookie: a %q cookie cannot have a Domain (%q)", "__Host-", c.Domain)
		}
		if c.Path != "" && c.Path != "/" {
			return fmt.Errorf("sessionkit: Options.Cookie: a %q cookie must have Path=/ (not %q)", "__Host-", c.Path)
		}
		c.Secure = true
	case strings.HasPrefix(c.Name, "__Secure-"):
		c.Secure = true
	}
	return nil
}
