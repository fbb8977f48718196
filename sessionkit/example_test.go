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

func Example() {
	ctx := context.Background()
	m, _ := sessionkit.New(sessionkit.Options{Store: memory.New(nil), IdleTimeout: 30 * time.Minute})

	// First request: a new session, stored at its first write.
	s := m.NewSession()
	_ = s.SetMany(ctx, map[string]any{"user": "ana", "visits": 1})
	token := s.Token() // send it to the client

	// Next request: Load makes no store call; each read is one.
	s, _ = m.Load(token)
	user, _ := s.GetString(ctx, "user")
	visits, _ := s.GetInt(ctx, "visits")
	fmt.Println(user, visits)

	// Login: a new token for the same data; the old one is dead.
	_ = s.Renew(ctx)
	old, _ := m.Load(token)
	gone, _ := old.GetString(ctx, "user")
	fmt.Printf("old token reads %q; new token differs: %v\n", gone, s.Token() != token)
	// Output:
	// ana 1
	// old token reads ""; new token differs: true
}

func ExampleManager_Middleware() {
	m, _ := sessionkit.New(sessionkit.Options{Store: memory.New(nil)})
	app := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		if err := s.Set(r.Context(), "seen", true); err != nil {
			m.HTTPError(w, r, err) // 503 by default
			return
		}
	}))

	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	c := rec.Result().Cookies()[0]
	fmt.Println(c.Name, len(c.Value), c.HttpOnly, c.SameSite == http.SameSiteLaxMode)
	fmt.Println(rec.Header().Get("Cache-Control"), rec.Header().Get("Vary"))
	// Output:
	// session 48 true true
	// no-store Cookie
}

func ExampleSession_SetExpiry() {
	ctx := context.Background()
	m, _ := sessionkit.New(sessionkit.Options{Store: memory.New(nil)})
	s := m.NewSession()
	// "Remember me": this session may idle for a week and live for 30 days.
	_ = s.SetExpiry(ctx, sessionkit.Expiry{Idle: 7 * 24 * time.Hour, Absolute: 30 * 24 * time.Hour})
	_ = s.Set(ctx, "user", "ana")
	at, _ := s.ExpiresAt(ctx)
	fmt.Println(at.Sub(time.Now()).Round(time.Hour))
	// Output:
	// 168h0m0s
}
