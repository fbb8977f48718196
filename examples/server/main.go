// Command server is the seed example: a tiny web service whose sessions live
// in the store named by -store.
//
//	go run ./examples/server                                   # embedded store
//	go run ./examples/server -store redis://127.0.0.1:6379/0   # Redis hashes
//
// Routes: /set sets key "time" to the Unix time (or ?key=K&value=V sets K),
// /get writes the session as a JSON object (or ?key=K the value of K, null
// if unset), /incr adds 1 to key "visits" (or ?key=K) and writes the
// result, /del destroys the session.
//
// Users: /login?user=U binds the session to user U (Session.Bind: a new
// token, against fixation, and an entry in U's index of sessions) and sets
// "user"; /logout destroys the session; /sessions lists your own live
// sessions as JSON, the current one marked; POST /sessions/revoke?id=ID
// ends one of them (404 for an ID that is not yours); POST
// /sessions/revoke-others ends all but the current one. On a store that
// keeps no user index (memcached), /login only renews the token and the
// /sessions routes answer 501. -max-sessions caps each user's sessions.
// There is no password: it shows the session side of a login only.
//
// With -metrics, /metrics serves the session store's latency, errors and
// live sessions for Prometheus.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/sessionkit/sessionkit/otelstore"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/storeurl"
)

// defaultStore is an embedded store that survives restarts.
const defaultStore = "bbolt://./sessions.db"

func main() {
	addr := flag.String("addr", ":8199", "listen address")
	storeURL := flag.String("store", defaultStore, "session store URL: "+strings.Join(storeurl.Schemes(), "://, ")+"://")
	maxAge := flag.Duration("max-age", time.Minute, "idle timeout of a session")
	maxFields := flag.Int("max-fields", sessionkit.DefaultMaxFields, "most keys in one session")
	maxValue := flag.Int("max-value", sessionkit.DefaultMaxValueSize, "largest value, in bytes (JSON-encoded)")
	withMetrics := flag.Bool("metrics", false, "serve Prometheus metrics of the session store at /metrics")
	maxSessions := flag.Int("max-sessions", 0, "most live sessions per user (0: no cap)")
	refuse := flag.Bool("refuse-over-cap", false, "over -max-sessions, refuse the login (default: end the user's oldest session)")
	flag.Parse()
	opts := sessionkit.Options{IdleTimeout: *maxAge, MaxFields: *maxFields, MaxValueSize: *maxValue, MaxSessionsPerUser: *maxSessions}
	if *refuse {
		opts.OverCap = sessionkit.RefuseLogin
	}
	if err := run(*addr, *storeURL, opts, *withMetrics); err != nil {
		log.Fatal(err)
	}
}

func run(addr, storeURL string, opts sessionkit.Options, withMetrics bool) error {
	var mx *metrics
	if withMetrics {
		var err error
		if mx, err = newMetrics(); err != nil {
			return err
		}
	}
	m, closer, err := newManager(storeURL, opts, mx)
	if err != nil {
		return err
	}
	defer closer.Close()
	srv := &http.Server{Addr: addr, Handler: newHandler(m, mx), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("listening on %s, sessions in %s, idle timeout %v", addr, storeurl.Redact(storeURL), m.Expiry().Idle)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newManager opens the store, checks that it answers, and returns a Manager
// on it with opts and the Closer that releases the store. A store that does
// not answer fails start-up, so a wrong address or password is found at
// once instead of by the first request.
func newManager(storeURL string, opts sessionkit.Options, mx *metrics) (*sessionkit.Manager, io.Closer, error) {
	store, closer, err := storeurl.Open(storeURL)
	if err != nil {
		return nil, nil, err
	}
	if mx != nil {
		store = otelstore.New(store, &otelstore.Options{MeterProvider: mx.provider})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // the client's own timeouts are shorter
	defer cancel()
	if err := storeurl.Ping(ctx, store); err != nil {
		closer.Close()
		return nil, nil, fmt.Errorf("session store %s does not answer: %w", storeurl.Redact(storeURL), err)
	}
	opts.Store = store
	m, err := sessionkit.New(&opts)
	if err != nil {
		closer.Close()
		return nil, nil, err
	}
	return m, closer, nil
}

// user is the session key that says who is logged in.
var user = sessionkit.NewKey[string]("user")

// metrics exports the store's OpenTelemetry metrics (otelstore) in the
// Prometheus format.
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

func newMetrics() (*metrics, error) {
	registry := promclient.NewRegistry() // its own, so a test can start the server twice
	exporter, err := prometheus.New(prometheus.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	return &metrics{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		handler:  promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}, nil
}

// newHandler serves the example's routes behind the session middleware,
// and /metrics beside it when mx is not nil.
func newHandler(m *sessionkit.Manager, mx *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		key, value := r.URL.Query().Get("key"), r.URL.Query().Get("value")
		if key == "" {
			key, value = "time", strconv.FormatInt(time.Now().Unix(), 10)
		}
		err := m.Session(r.Context()).Set(r.Context(), key, value)
		if reply(m, w, r, err) {
			fmt.Fprintln(w, "ok")
		}
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		if key := r.URL.Query().Get("key"); key != "" { // one key: one read of one field
			v, err := m.Session(r.Context()).Get(r.Context(), key)
			if reply(m, w, r, err) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(v)
			}
			return
		}
		all, err := m.Session(r.Context()).All(r.Context())
		if reply(m, w, r, err) {
			if all == nil {
				all = map[string]any{}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(all)
		}
	})
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			key = "visits"
		}
		n, err := m.Session(r.Context()).Incr(r.Context(), key, 1)
		if reply(m, w, r, err) {
			fmt.Fprintln(w, n)
		}
	})
	mux.HandleFunc("/del", func(w http.ResponseWriter, r *http.Request) {
		err := m.Session(r.Context()).Destroy(r.Context())
		if reply(m, w, r, err) {
			fmt.Fprintln(w, "ok")
		}
	})
	// Login: Bind first (a new token for the same data, against fixation,
	// and the session in the user's index), then write what the login
	// grants. A store without a user index only renews the token.
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("user")
		if name == "" {
			http.Error(w, "login needs ?user=", http.StatusBadRequest)
			return
		}
		s := m.Session(r.Context())
		err := s.Bind(r.Context(), name)
		if errors.Is(err, errors.ErrUnsupported) {
			err = s.Renew(r.Context())
		}
		if err == nil {
			err = user.Set(r.Context(), s, name)
		}
		if reply(m, w, r, err) {
			fmt.Fprintf(w, "welcome %s\n", name)
		}
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		err := m.Session(r.Context()).Destroy(r.Context())
		if reply(m, w, r, err) {
			fmt.Fprintln(w, "bye")
		}
	})
	// The user's own sessions: list them, end one, end all others.
	mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		name, ok := loggedIn(m, w, r)
		if !ok {
			return
		}
		list, err := m.UserSessions(r.Context(), name) // marks the request's own session current
		if reply(m, w, r, err) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(list)
		}
	})
	mux.HandleFunc("POST /sessions/revoke", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if id == "" {
			http.Error(w, "revoke needs ?id= (an ID from /sessions)", http.StatusBadRequest)
			return
		}
		name, ok := loggedIn(m, w, r)
		if !ok {
			return
		}
		// Among this user's sessions only: another user's ID is not found.
		err := m.RevokeSession(r.Context(), name, id)
		if errors.Is(err, sessionkit.ErrNotFound) {
			http.Error(w, "you have no session "+strconv.Quote(id), http.StatusNotFound)
			return
		}
		if reply(m, w, r, err) {
			fmt.Fprintln(w, "revoked")
		}
	})
	mux.HandleFunc("POST /sessions/revoke-others", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := loggedIn(m, w, r); !ok {
			return
		}
		n, err := m.Session(r.Context()).RevokeOthers(r.Context())
		if reply(m, w, r, err) {
			fmt.Fprintf(w, "revoked %d\n", n)
		}
	})
	if mx == nil {
		return m.Middleware(mux)
	}
	top := http.NewServeMux()
	top.Handle("/metrics", mx.handler) // outside the middleware: no session
	top.Handle("/", m.Middleware(mux))
	return top
}

// loggedIn returns the user the request's session is bound to, or answers
// 401 (no session, or one bound to no user) and returns false. Session.Info
// reads the binding without refreshing the session.
func loggedIn(m *sessionkit.Manager, w http.ResponseWriter, r *http.Request) (string, bool) {
	info, err := m.Session(r.Context()).Info(r.Context())
	if errors.Is(err, sessionkit.ErrNotFound) || err == nil && info.User == "" {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return "", false
	}
	return info.User, reply(m, w, r, err)
}

// reply answers a failed session operation and reports whether the handler
// should go on. The Manager classifies the error (sessionkit.ErrorStatus)
// and logs it; a 400 (a key or value the Manager refuses) also says why,
// since it is the client's to fix, and so does a 409 for a login over the
// cap. A store without a user index answers 501 to the user routes.
func reply(m *sessionkit.Manager, w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case sessionkit.ErrorStatus(err) == http.StatusBadRequest:
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, sessionkit.ErrTooManySessions):
		http.Error(w, "too many sessions: log out on another device first", http.StatusConflict)
	case errors.Is(err, errors.ErrUnsupported):
		http.Error(w, "this session store keeps no index of sessions by user", http.StatusNotImplemented)
	default:
		m.HTTPError(w, r, err)
	}
	return false
}
