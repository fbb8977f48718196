package sessionkit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

type eventLog struct {
	mu     sync.Mutex
	events []sessionkit.Event
}

func (l *eventLog) add(e sessionkit.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) take() []sessionkit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.events
	l.events = nil
	return e
}

func TestMiddlewareEmitsLifecycleEvents(t *testing.T) {
	var log eventLog
	var logs strings.Builder
	f := newFixture(t, sessionkit.Options{OnEvent: log.add, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok := sessionCookie(t, f.do("/set?v=1", "")).Value
	ev := log.take()
	require.Len(t, ev, 1)
	require.Equal(t, sessionkit.EventCreated, ev[0].Kind)
	require.Equal(t, sessionkit.LogID(tok), ev[0].LogID)
	require.Equal(t, f.clock.Now(), ev[0].Time)
	require.NotNil(t, ev[0].Context)

	renewed := sessionCookie(t, f.do("/login", tok)).Value
	ev = log.take()
	require.Equal(t, sessionkit.EventRenewed, ev[0].Kind)
	require.Equal(t, sessionkit.LogID(renewed), ev[0].LogID)
	require.Equal(t, sessionkit.LogID(tok), ev[0].OldLogID)

	f.do("/del", renewed)
	ev = log.take()
	require.Equal(t, []sessionkit.EventKind{sessionkit.EventDestroyed}, kinds(ev))
	require.Equal(t, sessionkit.LogID(renewed), ev[0].LogID)

	f.do("/get", renewed)
	require.Equal(t, []sessionkit.EventKind{sessionkit.EventGone}, kinds(log.take()), "a request carried a token whose session is gone")

	f.do("/get", "not-a-token")
	require.Equal(t, []sessionkit.EventKind{sessionkit.EventRejected}, kinds(log.take()))

	live := sessionCookie(t, f.do("/set?v=1", "")).Value
	log.take()
	f.store.fail = driver.Wrap(context.Background(), "test", errors.New("connection refused"))
	f.do("/get", live)
	ev = log.take()
	require.Equal(t, []sessionkit.EventKind{sessionkit.EventStoreError}, kinds(ev))
	require.ErrorIs(t, ev[0].Err, sessionkit.ErrUnavailable)
	f.store.fail = sessionkit.ErrTooManyFields // the caller's input, not the store's failure
	f.do("/get", live)
	require.Empty(t, log.take(), "only the store's own failures are store errors")
	f.store.fail = nil

	for _, token := range []string{tok, renewed, live} {
		require.NotContains(t, logs.String(), token, "the logs never show a token")
	}
	require.Contains(t, logs.String(), "session="+sessionkit.LogID(live))
}

func kinds(ev []sessionkit.Event) []sessionkit.EventKind {
	out := make([]sessionkit.EventKind, len(ev))
	for i, e := range ev {
		out[i] = e.Kind
	}
	return out
}

// TestEventsCostNothingWhenUnset pins the allocations of a request that
// reads and writes its session, and of one whose session is gone (which
// emits an event), with no OnEvent hook and Debug logging off.
func TestEventsCostNothingWhenUnset(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // Info: Debug events are off
	counter := sessionkit.NewKey[int]("counter")
	for name, c := range map[string]struct {
		store  sessionkit.Store
		allocs float64
	}{
		// The middleware's own (session, writer, request context and
		// header values in one; the request's copy; the storage key) and
		// the store's reply; the value is encoded in the session's own
		// scratch.
		"live session": {nopStore{}, 4},
		// The same less the write, plus the fresh token and key that
		// replace the gone one and the cookie that deletes it; the
		// EventGone it emits adds nothing.
		"gone session": {goneStore{}, 6},
	} {
		m, err := sessionkit.New(&sessionkit.Options{Store: c.store, Logger: quiet})
		require.NoError(t, err)
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := m.Session(r.Context())
			n, found, err := counter.Get(r.Context(), s)
			if err == nil && found {
				err = counter.Set(r.Context(), s, n+1)
			}
			if err != nil {
				t.Fatal(err)
			}
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: m.NewSession().Token()})
		w := httptest.NewRecorder()
		got := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, r) })
		require.Equal(t, c.allocs, got, name)
	}
}

// goneStore finds no session.
type goneStore struct{ nopStore }

func (goneStore) Get(context.Context, string, ...string) ([][]byte, error) {
	return nil, sessionkit.ErrNotFound
}
