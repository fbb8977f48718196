// Package apptesting shows how an application tests its handlers without a
// Redis server: build the Manager on memory.New (or on miniredis, to run the
// real Redis adapter in process) instead of redishash on a real Redis.
package apptesting

import (
	"fmt"
	"net/http"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// The session keys the application uses, with their types.
var (
	visits = sessionkit.NewKey[int]("visits")
	user   = sessionkit.NewKey[string]("user")
)

// NewApp is the application under test: /visit counts the visits of a
// session, /whoami says who is logged in, /login?user=U logs U in.
func NewApp(m *sessionkit.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		n, _, err := visits.Get(r.Context(), s)
		if err == nil {
			err = visits.Set(r.Context(), s, n+1)
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
			err = user.Set(r.Context(), s, r.URL.Query().Get("user"))
		}
		if err != nil {
			m.HTTPError(w, r, err)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		user, _, err := user.Get(r.Context(), m.Session(r.Context()))
		if err != nil {
			m.HTTPError(w, r, err)
			return
		}
		fmt.Fprintf(w, "%q\n", user)
	})
	return m.Middleware(mux)
}
