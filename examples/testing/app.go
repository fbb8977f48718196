// Package apptesting shows how an application tests its handlers without a
// Redis server: build the Manager on memory.New (or on miniredis, to run the
// real Redis adapter in process) instead of redishash on a real Redis.
package apptesting

import (
	"fmt"
	"net/http"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// NewApp is the application under test: /visit counts the visits of a
// session, /whoami says who is logged in, /login?user=U logs U in.
func NewApp(m *sessionkit.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		n, err := s.GetInt(r.Context(), "visits")
		if err == nil {
			err = s.Set(r.Context(), "visits", n+1)
		}
		if err != nil {
			m.HTTPError(w, r, err)
			return
		}
		fmt.Fprintf(w, "visit %d\n", n+1)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		err := s.Renew(r.Context()) // a new token on login, against fixation
		if err == nil {
			err = s.Set(r.Context(), "user", r.URL.Query().Get("user"))
		}
		if err != nil {
			m.HTTPError(w, r, err)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		user, err := m.Session(r.Context()).GetString(r.Context(), "user")
		if err != nil {
			m.HTTPError(w, r, err)
			return
		}
		fmt.Fprintf(w, "%q\n", user)
	})
	return m.Middleware(mux)
}
