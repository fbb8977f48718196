package sessionkit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func TestNewRefusesOptionsItCannotHonour(t *testing.T) {
	store := memory.New(nil)
	for name, opts := range map[string]sessionkit.Options{
		"no store":            {},
		"negative idle":       {Store: store, IdleTimeout: -time.Minute},
		"sub-ms lifetime":     {Store: store, Lifetime: time.Microsecond},
		"invalid cookie name": {Store: store, Cookie: sessionkit.CookieOptions{Name: "a b"}},
	} {
		_, err := sessionkit.New(&opts)
		require.Error(t, err, name)
	}
	_, err := sessionkit.New(nil)
	require.Error(t, err, "nil options: no store")
	m, err := sessionkit.New(&sessionkit.Options{Store: store})
	require.NoError(t, err)
	require.Equal(t, sessionkit.Expiry{Idle: sessionkit.DefaultIdleTimeout, Absolute: sessionkit.DefaultLifetime}, m.Expiry())
	require.Error(t, m.NewSession().SetExpiry(t.Context(), sessionkit.Expiry{Idle: 0, Absolute: time.Hour}),
		"a per-session override is checked like the defaults")
}
