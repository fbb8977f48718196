package sessionkit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// The session keys of an application, each with its type.
var (
	userKey   = sessionkit.NewKey[string]("user")
	visitsKey = sessionkit.NewKey[int]("visits")
)

func Example() {
	ctx := context.Background()
	m, _ := sessionkit.New(&sessionkit.Options{Store: memory.New(nil), IdleTimeout: 30 * time.Minute})

	// First request: a new session, stored at its first write.
	s := m.NewSession()
	_ = s.SetMany(ctx, map[string]any{"user": "ana", "visits": 1})
	token := s.Token() // send it to the client

	// Next request: Load makes no store call; each read is one.
	s, _ = m.Load(token)
	user, _, _ := userKey.Get(ctx, s)
	visits, _, _ := visitsKey.Get(ctx, s)
	_, found, _ := sessionkit.NewKey[string]("cart").Get(ctx, s)
	fmt.Println(user, visits, found)

	// Login: Renew first (a new token for the same data; the old one is
	// dead), then write what the login grants.
	_ = s.Renew(ctx)
	_ = s.Set(ctx, "role", "admin")
	old, _ := m.Load(token)
	_, _, err := userKey.Get(ctx, old)
	fmt.Printf("old token: %v; new token differs: %v\n", err, s.Token() != token)

	// Logout.
	_ = s.Destroy(ctx)
	// Output:
	// ana 1 false
	// old token: sessionkit: session renewed by another request; new token differs: true
}

func ExampleManager_Middleware() {
	m, _ := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	app := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		if err := s.Set(r.Context(), "seen", true); err != nil {
			m.HTTPError(w, r, err) // 400, 409 or 503 by the error's kind
			return
		}
	}))

	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	c := rec.Result().Cookies()[0]
	fmt.Println(c.Name, c.HttpOnly, c.SameSite == http.SameSiteLaxMode)
	fmt.Println(rec.Header().Get("Cache-Control"), rec.Header().Get("Vary"))
	// Output:
	// session true true
	// no-store Cookie
}

func ExampleSession_SetExpiry() {
	ctx := context.Background()
	m, _ := sessionkit.New(&sessionkit.Options{Store: memory.New(nil)})
	s := m.NewSession()
	// "Remember me": this session may idle for a week and live for 30 days.
	_ = s.SetExpiry(ctx, sessionkit.Expiry{Idle: 7 * 24 * time.Hour, Absolute: 30 * 24 * time.Hour})
	_ = s.Set(ctx, "user", "ana")
	at, _ := s.ExpiresAt(ctx)
	fmt.Println(at.Sub(time.Now()).Round(time.Hour))
	// Output:
	// 168h0m0s
}
