package sessionkit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// plainStore hides every optional interface of the store it wraps.
type plainStore struct{ sessionkit.Store }

func TestUserCallsNeedAUsersStore(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: plainStore{memory.New(nil)}})
	require.NoError(t, err)
	ctx := t.Context()
	_, err = m.Bind(ctx, "", "ann", sessionkit.Client{})
	require.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.UserSessions(ctx, "ann")
	require.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.RevokeUser(ctx, "ann", "")
	require.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.Count(ctx)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	_, err = m.RevokeAll(ctx)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	require.Contains(t, err.Error(), "plainStore", "the error names the store that cannot")
}

func TestKeyLogIDIsTheTokensLogID(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), KeyPrefix: "app:"})
	require.NoError(t, err)
	tok := m.NewSession().Token()
	require.Equal(t, sessionkit.LogID(tok), sessionkit.KeyLogID(m.StorageKey(tok)))
	require.Empty(t, sessionkit.KeyLogID("short"))
	require.Empty(t, sessionkit.KeyLogID(strings.Repeat("!", 50)))
}

func TestUserIndexIsHashedAndSharesTheTagOfTheUsersTokens(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	require.NoError(t, err)
	tok, err := m.Bind(t.Context(), "", "ann@example.com", sessionkit.Client{})
	require.NoError(t, err)
	index := m.UserIndex("ann@example.com")
	require.NotContains(t, index, "ann")
	require.Len(t, index, len("session:{xxxx}u:")+43)
	require.True(t, strings.HasPrefix(index, "session:{"+tok[:4]+"}u:"), "%s for %s", index, tok)
	require.True(t, strings.HasPrefix(m.StorageKey(tok), "session:{"+tok[:4]+"}"))
	require.NotEqual(t, index, m.UserIndex("ann@example.co"))
}

func TestDeviceLabelAndIPAreCleanedAndCut(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), RecordIP: true,
		ClientIP: func(*http.Request) string { return "192.0.2.1\r\nX-Evil: 1" }})
	require.NoError(t, err)
	ua := "Mozilla\n\x00" + strings.Repeat("é", 200) + "\xff"
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, m.Session(r.Context()).Bind(r.Context(), "ann"))
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", ua)
	h.ServeHTTP(httptest.NewRecorder(), r)
	l, err := m.UserSessions(t.Context(), "ann")
	require.NoError(t, err)
	require.Len(t, l, 1)
	d := l[0].Device
	require.LessOrEqual(t, len(d), sessionkit.MaxDeviceLength)
	require.True(t, utf8.ValidString(d))
	require.True(t, strings.HasPrefix(d, "Mozilla  éé"), "%q", d)
	require.NotContains(t, l[0].IP, "\n")
	require.NotContains(t, l[0].IP, "\r")
}

func TestUserOptionsAreChecked(t *testing.T) {
	_, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), MaxSessionsPerUser: -1})
	require.Error(t, err)
	_, err = sessionkit.New(&sessionkit.Options{Store: memory.New(nil), OverCap: 7})
	require.Error(t, err)
}

func TestUserErrorsHaveTheirStatus(t *testing.T) {
	require.Equal(t, http.StatusConflict, sessionkit.ErrorStatus(sessionkit.ErrTooManySessions))
	require.Equal(t, http.StatusBadRequest, sessionkit.ErrorStatus(sessionkit.ErrInvalidUser))
}

func TestBindAndRevokeAreEvents(t *testing.T) {
	var log eventLog
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), OnEvent: log.add})
	require.NoError(t, err)
	ctx := context.Background()
	s, err := m.Create(ctx)
	require.NoError(t, err)
	log.take()
	tok, err := m.Bind(ctx, s.Token(), "ann", sessionkit.Client{})
	require.NoError(t, err)
	ev := log.take()
	require.Len(t, ev, 1)
	require.Equal(t, sessionkit.EventBound, ev[0].Kind)
	require.Equal(t, sessionkit.LogID(tok), ev[0].LogID)
	require.Equal(t, sessionkit.LogID(s.Token()), ev[0].OldLogID)
	n, err := m.RevokeUser(ctx, "ann", "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ev = log.take()
	require.Len(t, ev, 1)
	require.Equal(t, sessionkit.EventRevoked, ev[0].Kind)
	require.Equal(t, 1, ev[0].Sessions)
	require.Empty(t, ev[0].LogID)
}

func TestUserHashKeyKeysTheIndex(t *testing.T) {
	plain, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	require.NoError(t, err)
	keyed, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), UserHashKey: []byte("secret")})
	require.NoError(t, err)
	other, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), UserHashKey: []byte("other")})
	require.NoError(t, err)
	require.NotEqual(t, plain.UserIndex("ann"), keyed.UserIndex("ann"))
	require.NotEqual(t, keyed.UserIndex("ann"), other.UserIndex("ann"))
	tok, err := keyed.Bind(t.Context(), "", "ann", sessionkit.Client{})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(keyed.UserIndex("ann"), "session:{"+tok[:4]+"}"), "the tag follows the keyed hash")
	l, err := keyed.UserSessions(t.Context(), "ann")
	require.NoError(t, err)
	require.Len(t, l, 1)
}

func TestKeyPrefixWithBracesOrControlsIsRefused(t *testing.T) {
	for _, p := range []string{"a{b}", "x}", "new\nline"} {
		_, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), KeyPrefix: p})
		require.Error(t, err, "%q", p)
	}
}

func TestInfoSendsNoCookie(t *testing.T) {
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), Cookie: sessionkit.CookieOptions{Persist: true}})
	require.NoError(t, err)
	tok, err := m.Bind(t.Context(), "", "ann", sessionkit.Client{})
	require.NoError(t, err)
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, err := m.Session(r.Context()).Info(r.Context())
		require.NoError(t, err)
		require.Equal(t, "ann", info.User)
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: tok})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Empty(t, w.Result().Cookies(), "Info refreshes nothing, so the cookie is not sent again")
}

// A login evicted by a concurrent login (over the cap) before the handler's
// next write must not turn into an unbound session holding the user: the
// write fails, nothing is stored, no cookie names a session.
func TestAWriteAfterTheLoginWasEvictedFailsInsteadOfStartingASession(t *testing.T) {
	mem := memory.New(nil)
	m, err := sessionkit.New(&sessionkit.Options{Store: mem, MaxSessionsPerUser: 1})
	require.NoError(t, err)
	var writeErr, readErr error
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		require.NoError(t, s.Bind(r.Context(), "ann"))
		_, err := m.Bind(r.Context(), "", "ann", sessionkit.Client{}) // a login elsewhere evicts this one
		require.NoError(t, err)
		_, readErr = s.Get(r.Context(), "user")
		writeErr = s.Set(r.Context(), "user", "ann")
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	require.NoError(t, readErr, "a read finds the session gone, as ever")
	require.ErrorIs(t, writeErr, sessionkit.ErrRevoked)
	require.Equal(t, http.StatusUnauthorized, sessionkit.ErrorStatus(writeErr))
	n, err := m.Count(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the other login's session: no unbound one was started")
	for _, c := range w.Result().Cookies() {
		require.Empty(t, c.Value, "no cookie names a session")
	}
}
