package sessionkit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// nopStore answers every read with "41" and accepts every write, so the
// benchmarks below measure what sessionkit itself costs per request.
type nopStore struct{ sessionkit.Store }

var fortyOne = []byte("41")

func (nopStore) Get(_ context.Context, _ string, names ...string) ([][]byte, error) {
	out := make([][]byte, len(names))
	for i := range out {
		out[i] = fortyOne
	}
	return out, nil
}

func (nopStore) Set(context.Context, string, []sessionkit.Field, int) error { return nil }

var counter = sessionkit.NewKey[int]("counter")

// BenchmarkMiddlewareGetIntSet is the bench/ workload (read a counter, write
// it back incremented) on a store that costs nothing.
func BenchmarkMiddlewareGetIntSet(b *testing.B) {
	m, err := sessionkit.New(&sessionkit.Options{Store: nopStore{}, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		n, _, err := counter.Get(r.Context(), s)
		if err == nil {
			err = counter.Set(r.Context(), s, n+1)
		}
		if err != nil {
			b.Fatal(err)
		}
	}))
	cookie := &http.Cookie{Name: sessionkit.DefaultCookieName, Value: m.NewSession().Token()}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(cookie)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
