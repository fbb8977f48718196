package sessionkit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxUserIDLength is the longest user ID, in bytes.
const MaxUserIDLength = 256

// MaxDeviceLength is the longest device label kept, in bytes: a longer
// User-Agent is cut (at a character boundary).
const MaxDeviceLength = 128

// CapPolicy says what a login over Options.MaxSessionsPerUser does.
type CapPolicy int

const (
	// EvictOldest ends the user's oldest sessions (by creation) to make
	// room for the new one. The default.
	EvictOldest CapPolicy = iota
	// RefuseLogin refuses the login with ErrTooManySessions and leaves
	// everything as it was.
	RefuseLogin
)

// UserSession is one of a user's live sessions, as UserSessions lists them.
type UserSession struct {
	// ID is the session's public ID: it names the session to RevokeSession
	// and in listings, and cannot be used to act as the session.
	ID string `json:"id"`
	// Created is when the session began; LastSeen when it was last used
	// (to within the store's bookkeeping: see SessionInfo); Expires when it
	// ends unless used again.
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
	// Device is the client's User-Agent, cut to MaxDeviceLength; IP its
	// address, when Options.RecordIP is set.
	Device string `json:"device"`
	IP     string `json:"ip,omitempty"`
	// Current is true for the session of the request the call came from.
	Current bool `json:"current"`
}

// LastSeen returns when the session was last used, from its expiry: the
// stores keep no separate time (a read would become a write), and the idle
// timeout restarts at every use.
func (i SessionInfo) LastSeen() time.Time {
	t := i.Expires.Add(-i.Idle)
	if t.Before(i.Created) {
		return i.Created
	}
	return t
}

// LogID returns the LogID of the token whose storage key is key (the same
// value LogID gives for the token), or "" for a key the Manager did not
// build. Operators can match a log line to a stored session with it.
func KeyLogID(key string) string {
	const hashLen = 43 // base64url of a SHA-256
	key, _, _ = KeyPolicy(key)
	if len(key) < hashLen {
		return ""
	}
	var h [sha256.Size + 1]byte
	n, err := tokenEncoding.Decode(h[:], []byte(key[len(key)-hashLen:]))
	if err != nil || n != sha256.Size {
		return ""
	}
	return hex.EncodeToString(h[:8])
}

// sameKey reports whether two storage keys name one record, with or
// without their policy (a store may list its keys without it).
func sameKey(a, b string) bool {
	a, _, _ = KeyPolicy(a)
	b, _, _ = KeyPolicy(b)
	return a == b
}

// userHash is the one-way hash of a user ID that keys its index: an
// HMAC under Options.UserHashKey when it is set, so that a dump of the
// store cannot be matched against a list of likely IDs (e-mail addresses).
func (m *Manager) userHash(user string) (h [sha256.Size]byte) {
	if len(m.userHashKey) == 0 {
		return sha256.Sum256([]byte("sessionkit/user\x00" + user))
	}
	mac := hmac.New(sha256.New, m.userHashKey)
	mac.Write([]byte("sessionkit/user\x00" + user))
	mac.Sum(h[:0])
	return h
}

// userTag is the token tag of every session bound to user: the first 24
// bits of its hash. Sessions of one user therefore share a Redis Cluster
// slot with the user's index, and a store can bind, cap and revoke them in
// one atomic step.
func userTag(h [sha256.Size]byte) string { return tokenEncoding.EncodeToString(h[:3]) }

// UserIndex returns the storage key of the index of user's sessions: the
// prefix, the user's tag as a hash tag, "u:" and a hash of the user ID.
func (m *Manager) UserIndex(user string) string {
	h := m.userHash(user)
	return m.prefix + "{" + userTag(h) + "}u:" + tokenEncoding.EncodeToString(h[:])
}

// CheckUserID returns an error matching ErrInvalidUser for a user ID that
// Bind and the user calls refuse: empty, longer than MaxUserIDLength, not
// UTF-8, or holding a control or format character. Tools that take user
// IDs (cmd/sessionkit) check with it before any store call.
func CheckUserID(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("%w: empty", ErrInvalidUser)
	case len(user) > MaxUserIDLength:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidUser, len(user), MaxUserIDLength)
	case !utf8.ValidString(user):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidUser)
	case strings.IndexFunc(user, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0:
		// Format characters too: a right-to-left override would make a
		// listing or a log line lie about whose session it is.
		return fmt.Errorf("%w: %q holds a control character or a format character", ErrInvalidUser, user)
	}
	return nil
}

// deviceLabel cleans a User-Agent for storage and display: control
// characters become spaces, and it is cut to MaxDeviceLength bytes.
func deviceLabel(ua string) string {
	ua = strings.ToValidUTF8(ua, "?")
	ua = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, ua)
	if len(ua) > MaxDeviceLength {
		cut := MaxDeviceLength
		for cut > 0 && !utf8.RuneStart(ua[cut]) {
			cut--
		}
		ua = ua[:cut]
	}
	return ua
}

// remoteIP is the default Options.ClientIP: the host of RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// newPublicID returns a fresh public session ID: 128 random bits, unrelated
// to the token.
func newPublicID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return tokenEncoding.EncodeToString(b[:])
}

func (m *Manager) users() (Users, error) {
	u, ok := m.store.(Users)
	if !ok {
		return nil, fmt.Errorf("sessionkit: the store (%T) keeps no user index: %w", m.store, errors.ErrUnsupported)
	}
	return u, nil
}

// Client describes the client of a login, for the user's list of sessions.
type Client struct {
	// Device labels the client; the middleware uses the User-Agent. It is
	// cut to MaxDeviceLength.
	Device string
	// IP is kept only when Options.RecordIP is set.
	IP string
}

func (m *Manager) binding(user string, c Client, exp Expiry) Binding {
	b := Binding{
		Index:  m.UserIndex(user),
		User:   user,
		ID:     newPublicID(),
		Device: deviceLabel(c.Device),
		Expiry: exp,
		Max:    m.maxUserSessions,
		Refuse: m.capPolicy == RefuseLogin,
	}
	if m.recordIP {
		b.IP = deviceLabel(c.IP) // cleaned like the device: it comes from a header or a hook
	}
	return b
}

// Bind ties the session of token to user and gives it a new token, in one
// step (against session fixation), and returns the new token. It is the
// login of code that does not use the middleware; inside it, use
// Session.Bind. With token "" or the token of a session that is gone, it
// binds a new, empty session. The old token stops working at once.
//
// Over Options.MaxSessionsPerUser, the user's oldest sessions end, or with
// RefuseLogin it returns ErrTooManySessions and changes nothing. A token
// that another request renewed returns ErrRenewed.
func (m *Manager) Bind(ctx context.Context, token, user string, c Client) (string, error) {
	if err := CheckUserID(user); err != nil {
		return "", err
	}
	if token != "" && !validToken(token) {
		return "", ErrInvalidToken
	}
	u, err := m.users()
	if err != nil {
		return "", err
	}
	b := m.binding(user, c, m.expiry)
	tag := userTag(m.userHash(user))
	var newTok string
	if token != "" {
		newTok = m.bindToken(tag, token, m.expiry)
		err = u.Bind(ctx, m.StorageKey(token), m.StorageKey(newTok), b)
	}
	if token == "" || errors.Is(err, ErrNotFound) {
		if token != "" {
			m.emit(ctx, EventGone, token, "", nil)
			token = ""
		}
		// A fresh token: a failed move may have left something (a
		// tombstone) under the one it meant to use.
		newTok, err = m.bindNew(ctx, u, tag, m.expiry, b)
	}
	if err != nil {
		m.storeError(ctx, newTok, err)
		return "", err
	}
	m.emit(ctx, EventBound, newTok, token, nil)
	return newTok, nil
}

// bindToken returns a fresh token under tag for a Bind of the session of
// token, with its policy.
func (m *Manager) bindToken(tag, token string, exp Expiry) string {
	if token == "" {
		return withPolicy(tokenUnder(tag, ""), newPolicy(m.now(), exp))
	}
	return tokenUnder(tag, token)
}

// bindNew binds a new session under a fresh token under tag, whose policy
// says exp from now, and returns the token. When the store finds the
// application server's clock too far from its own (ErrClockSkew), the
// token carries no policy.
func (m *Manager) bindNew(ctx context.Context, u Users, tag string, exp Expiry, b Binding) (string, error) {
	token := m.bindToken(tag, "", exp)
	err := u.Bind(ctx, "", m.StorageKey(token), b)
	if errors.Is(err, ErrClockSkew) {
		m.emit(ctx, EventStoreError, token, "", err)
		token = token[:TokenLength]
		err = u.Bind(ctx, "", m.StorageKey(token), b)
	}
	return token, err
}

// Bind ties the request's session to user and renews its token, in one
// step: call it at login, in place of Renew. The session keeps its data; a
// session not yet stored is created. The device label is the request's
// User-Agent, and with Options.RecordIP the client IP is kept too.
//
// Over Options.MaxSessionsPerUser, the user's oldest sessions end, or with
// RefuseLogin it returns ErrTooManySessions and the session stays as it
// was. As for Renew, a concurrent login through the same session returns
// ErrRenewed to all but one.
func (s *Session) Bind(ctx context.Context, user string) error {
	if err := CheckUserID(user); err != nil {
		return err
	}
	u, err := s.m.users()
	if err != nil {
		return err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	var c Client
	if s.req != nil {
		c.Device = s.req.UserAgent()
		if s.m.recordIP {
			c.IP = s.m.clientIP(s.req)
		}
	}
	b := s.m.binding(user, c, s.exp)
	tag := userTag(s.m.userHash(user))
	var token, key, old string
	if s.stored {
		// Each attempt gets a fresh token: a failed move may have left
		// something (a tombstone) under the one it meant to use.
		err = s.call(ctx, func(k string) error {
			token = tokenUnder(tag, s.token)
			key = s.m.StorageKey(token)
			return u.Bind(ctx, k, key, b)
		})
		if err != nil {
			return err
		}
		if s.stored {
			old = s.token
		}
	}
	if !s.stored { // never stored, or gone: bind a new session
		if token, err = s.m.bindNew(ctx, u, tag, s.exp, b); err != nil {
			s.m.storeError(ctx, token, err)
			return err
		}
		key = s.m.StorageKey(token)
	}
	s.m.emit(ctx, EventBound, token, old, nil)
	s.token, s.key, s.stored, s.issued, s.touched = token, key, true, true, true
	s.bound, s.ended = true, false
	s.nalt = 0
	return nil
}

// Info returns what the store keeps about the request's session: its
// binding (empty for a session bound to no user), creation and expiry. It
// does not refresh the session. A session not stored returns ErrNotFound.
func (s *Session) Info(ctx context.Context) (SessionInfo, error) {
	u, err := s.m.users()
	if err != nil {
		return SessionInfo{}, err
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.detachedErr(); err != nil {
		return SessionInfo{}, err
	}
	if !s.stored {
		return SessionInfo{}, ErrNotFound
	}
	var info SessionInfo
	touched := s.touched
	err = s.call(ctx, func(k string) (err error) {
		info, err = u.Info(ctx, k)
		return err
	})
	s.touched = touched // Info refreshes nothing: the cookie need not be sent again
	if err == nil && !s.stored {
		err = ErrNotFound
	}
	return info, err
}

// UserSessions lists user's live sessions, in order of creation. Called
// with the context of a request served by the middleware, it marks that
// request's session Current.
func (m *Manager) UserSessions(ctx context.Context, user string) ([]UserSession, error) {
	if err := CheckUserID(user); err != nil {
		return nil, err
	}
	u, err := m.users()
	if err != nil {
		return nil, err
	}
	infos, err := u.UserSessions(ctx, m.UserIndex(user))
	if err != nil {
		return nil, err
	}
	current := ""
	if s, ok := ctx.Value(m.ctxKey).(*Session); ok {
		s.mu.Lock()
		if s.stored {
			current = s.key
		}
		s.mu.Unlock()
	}
	out := make([]UserSession, 0, len(infos))
	for _, i := range infos {
		out = append(out, UserSession{
			ID: i.ID, Created: i.Created, LastSeen: i.LastSeen(), Expires: i.Expires,
			Device: i.Device, IP: i.IP, Current: sameKey(i.Key, current),
		})
	}
	sortByCreation(out)
	return out, nil
}

func sortByCreation(s []UserSession) {
	for i := 1; i < len(s); i++ { // insertion sort: a user has few sessions
		for j := i; j > 0 && (s[j].Created.Before(s[j-1].Created) ||
			s[j].Created.Equal(s[j-1].Created) && s[j].ID < s[j-1].ID); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// RevokeSession ends one of user's sessions, named by its public ID. An ID
// that is not one of user's live sessions returns ErrNotFound: one user
// cannot end another's session.
func (m *Manager) RevokeSession(ctx context.Context, user, id string) error {
	if err := CheckUserID(user); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("%w: empty session ID", ErrNotFound)
	}
	u, err := m.users()
	if err != nil {
		return err
	}
	n, err := u.Revoke(ctx, m.UserIndex(user), []string{id}, "")
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: the user has no live session %q", ErrNotFound, id)
	}
	m.emitRevoked(ctx, n)
	return nil
}

// RevokeUser ends every session of user, except the one whose public ID
// is except ("" for none), and returns how many it ended. Once it returns,
// no session bound to user before the call can be used again. Call it when
// the account changes (password, e-mail, disabling it).
func (m *Manager) RevokeUser(ctx context.Context, user, except string) (int, error) {
	if err := CheckUserID(user); err != nil {
		return 0, err
	}
	u, err := m.users()
	if err != nil {
		return 0, err
	}
	n, err := u.Revoke(ctx, m.UserIndex(user), nil, except)
	if err != nil {
		return 0, err
	}
	m.emitRevoked(ctx, n)
	return n, nil
}

// RevokeOthers ends every other session of the request's user ("log out
// other devices", after a password change) and returns how many it ended.
// The request's session must be bound (ErrNotFound otherwise).
func (s *Session) RevokeOthers(ctx context.Context) (int, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.User == "" {
		return 0, fmt.Errorf("%w: the session is bound to no user", ErrNotFound)
	}
	return s.m.RevokeUser(ctx, info.User, info.ID)
}

func (m *Manager) emitRevoked(ctx context.Context, n int) {
	if m.onEvent != nil {
		m.onEvent(Event{Kind: EventRevoked, Time: m.now(), Context: ctx, Sessions: n})
	}
	m.logger.DebugContext(ctx, "sessionkit: revoked", "event", "revoked", "sessions", n)
}

// scanPrefix starts every key of this Manager's sessions and indexes, and
// no key of a Manager whose prefix merely starts with this one's: the
// prefix, then the "{" of the hash tag.
func (m *Manager) scanPrefix() string { return m.prefix + "{" }

func (m *Manager) scanner() (Scanner, error) {
	sc, ok := m.store.(Scanner)
	if !ok {
		return nil, fmt.Errorf("sessionkit: the store (%T) cannot list its sessions: %w", m.store, errors.ErrUnsupported)
	}
	return sc, nil
}

// Count returns the number of live sessions under the Manager's prefix,
// through the store's Counter, or else by walking them with its Scanner.
func (m *Manager) Count(ctx context.Context) (int, error) {
	if c, ok := m.store.(Counter); ok {
		return c.Count(ctx, m.scanPrefix())
	}
	n, cursor := 0, ""
	for {
		page, next, err := m.Scan(ctx, cursor, 1000)
		if err != nil {
			return 0, err
		}
		n += len(page)
		if next == "" {
			return n, nil
		}
		cursor = next
	}
}

// Scan returns a page of up to about limit live sessions under the
// Manager's prefix, from cursor ("" to start), and the cursor of the next
// page ("" after the last). A session that lives through the whole walk is
// listed at least once.
func (m *Manager) Scan(ctx context.Context, cursor string, limit int) ([]SessionInfo, string, error) {
	sc, err := m.scanner()
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = 100
	}
	return sc.Scan(ctx, m.scanPrefix(), cursor, limit)
}

// Find returns the live session whose public ID or LogID (see KeyLogID) is
// id, walking every session: it is for operators, not for requests.
func (m *Manager) Find(ctx context.Context, id string) (SessionInfo, error) {
	if id == "" {
		return SessionInfo{}, fmt.Errorf("%w: empty ID", ErrNotFound)
	}
	cursor := ""
	for {
		page, next, err := m.Scan(ctx, cursor, 1000)
		if err != nil {
			return SessionInfo{}, err
		}
		for _, i := range page {
			if i.ID == id || KeyLogID(i.Key) == id {
				return i, nil
			}
		}
		if next == "" {
			return SessionInfo{}, fmt.Errorf("%w: no live session has the ID %q", ErrNotFound, id)
		}
		cursor = next
	}
}

// RevokeAll ends every session under the Manager's prefix (everyone is
// logged out) and removes the user indexes, and returns how many sessions
// it ended. A session created while it runs may survive it.
func (m *Manager) RevokeAll(ctx context.Context) (int, error) {
	sc, err := m.scanner()
	if err != nil {
		return 0, err
	}
	n, err := sc.DestroyAll(ctx, m.scanPrefix())
	if err != nil {
		return n, err
	}
	m.emitRevoked(ctx, n)
	return n, nil
}
