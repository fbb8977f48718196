package sessionkit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// skewedStore refuses every Create of a key that carries a policy, as
// redishash does when the application server's clock is more than a
// second from Redis's.
type skewedStore struct {
	sessionkit.Store
	refused int
}

func (s *skewedStore) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	if _, _, ok := sessionkit.KeyPolicy(key); ok {
		s.refused++
		return sessionkit.ErrClockSkew
	}
	return s.Store.Create(ctx, key, fields, exp)
}

// TestClockSkewFallsBackToATokenWithoutPolicyAndIsReported: a store that
// refuses the token's creation time gets the session under a token
// without a policy, and the refusal reaches OnEvent as EventStoreError.
func TestClockSkewFallsBackToATokenWithoutPolicyAndIsReported(t *testing.T) {
	store := &skewedStore{Store: memory.New(nil)}
	var events []sessionkit.Event
	m, err := sessionkit.New(&sessionkit.Options{Store: store, OnEvent: func(e sessionkit.Event) { events = append(events, e) }})
	require.NoError(t, err)
	s, err := m.Create(t.Context())
	require.NoError(t, err)
	require.Len(t, s.Token(), sessionkit.TokenLength, "the token carries no policy")
	require.Equal(t, 1, store.refused)
	var skew []error
	for _, e := range events {
		if e.Kind == sessionkit.EventStoreError {
			skew = append(skew, e.Err)
		}
	}
	require.Len(t, skew, 1)
	require.True(t, errors.Is(skew[0], sessionkit.ErrClockSkew))
	require.NoError(t, s.Set(t.Context(), "a", 1))
	r, err := m.Load(s.Token())
	require.NoError(t, err)
	var a int
	found, err := r.Decode(t.Context(), "a", &a)
	require.NoError(t, err)
	require.True(t, found)
}

// TestTokensCarryThePolicyTheyWereStoredWith: a stored session's token
// ends with its creation, idle timeout and lifetime in base 36, the key
// with the same, and a token whose policy was altered is refused or names
// nothing.
func TestTokensCarryThePolicyTheyWereStoredWith(t *testing.T) {
	now := time.UnixMilli(1795818985670)
	m, err := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), Clock: func() time.Time { return now }, IdleTimeout: 30 * time.Minute, Lifetime: 24 * time.Hour})
	require.NoError(t, err)
	s, err := m.Create(t.Context())
	require.NoError(t, err)
	tok := s.Token()
	require.True(t, strings.HasSuffix(tok, ".mwzk99l2.12kw0.1ffuo0"), tok)
	_, p, ok := sessionkit.KeyPolicy(m.StorageKey(tok))
	require.True(t, ok)
	require.Equal(t, sessionkit.Policy{Created: 1795818985670, Idle: 1800000, Absolute: 86400000}, p)
	require.Equal(t, int64(1795818985670+86400000), p.Deadline())

	for _, bad := range []string{
		tok[:len(tok)-1] + "1",                         // another lifetime: valid, names nothing
		strings.Replace(tok, ".12kw0.", ".012kw0.", 1), // a leading zero
		strings.Replace(tok, ".12kw0.", ".12KW0.", 1),  // upper case
		tok + ".1",                               // four parts
		strings.Replace(tok, ".12kw0.", "..", 1), // an empty part
		tok[:48] + ".zzzzzzzzzzz.1.1",            // eleven digits
		tok[:48] + ".0.1.1",                      // zero
	} {
		r, err := m.Load(bad)
		if err != nil {
			require.ErrorIs(t, err, sessionkit.ErrInvalidToken, bad)
			continue
		}
		require.Equal(t, tok[:len(tok)-1]+"1", bad, "only the altered lifetime is well-formed")
		n, err := r.Len(t.Context())
		require.NoError(t, err)
		require.Zero(t, n, "an altered policy names no session")
	}
}
