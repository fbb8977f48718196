package adaptertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// manager returns a Manager over the harness's store, on its clock.
func (e *env) manager(opts sessionkit.Options) *sessionkit.Manager {
	e.Helper()
	opts.Store = e.s
	opts.Clock = e.h.Now
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = e.expiry().Idle
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = e.expiry().Absolute
	}
	m, err := sessionkit.New(&opts)
	require.NoError(e, err)
	return m
}

// load returns a new handle on the session of token, as the next request
// would get.
func (e *env) load(m *sessionkit.Manager, token string) *sessionkit.Session {
	e.Helper()
	s, err := m.Load(token)
	require.NoError(e, err)
	return s
}

type profile struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	Age   int      `json:"age"`
}

var managerCases = []testCase{
	{"TypedValuesRoundTrip", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		when := time.Date(2026, 11, 26, 16, 17, 18, 123456789, time.UTC)
		require.NoError(e, s.SetMany(e.ctx, map[string]any{
			"str": "héllo", "int": 1 << 53, "neg": -7, "float": 2.5, "bool": true,
			"time": when, "profile": profile{Name: "ana", Roles: []string{"admin"}, Age: 41},
		}))
		r := e.load(m, s.Token())
		str := get(e, r, sessionkit.NewKey[string]("str"))
		require.Equal(e, "héllo", str)
		require.Equal(e, 1<<53, get(e, r, sessionkit.NewKey[int]("int")))
		require.Equal(e, int64(-7), get(e, r, sessionkit.NewKey[int64]("neg")))
		require.Equal(e, 2.5, get(e, r, sessionkit.NewKey[float64]("float")))
		require.True(e, get(e, r, sessionkit.NewKey[bool]("bool")))
		tm := get(e, r, sessionkit.NewKey[time.Time]("time"))
		require.True(e, when.Equal(tm), "got %v", tm)
		require.Equal(e, profile{Name: "ana", Roles: []string{"admin"}, Age: 41}, get(e, r, sessionkit.NewKey[profile]("profile")))
		var p profile
		found, err := r.Decode(e.ctx, "profile", &p)
		require.NoError(e, err)
		require.True(e, found)
		require.Equal(e, profile{Name: "ana", Roles: []string{"admin"}, Age: 41}, p)
		_, found, err = sessionkit.NewKey[int]("str").Get(e.ctx, r)
		require.True(e, found)
		require.ErrorIs(e, err, sessionkit.ErrDecode, "a string that is no number is not an int")
	}},
	{"GetManyReadsSeveralKeysInOneOperation", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.SetMany(e.ctx, map[string]any{"user": "ana", "roles": []string{"admin"}, "csrf": "x1"}))
		var user, csrf, missing string
		var roles []string
		r := e.load(m, s.Token())
		found, err := r.GetMany(e.ctx,
			sessionkit.NewKey[string]("user").Into(&user),
			sessionkit.NewKey[[]string]("roles").Into(&roles),
			sessionkit.NewKey[string]("nope").Into(&missing),
			sessionkit.NewKey[string]("csrf").Into(&csrf))
		require.NoError(e, err)
		require.Equal(e, []bool{true, true, false, true}, found)
		require.Equal(e, "ana", user)
		require.Equal(e, []string{"admin"}, roles)
		require.Equal(e, "x1", csrf)
		require.Empty(e, missing)

		var n int
		found, err = r.GetMany(e.ctx, sessionkit.NewKey[int]("user").Into(&n), sessionkit.NewKey[string]("csrf").Into(&csrf))
		require.ErrorIs(e, err, sessionkit.ErrDecode, "a value that does not fit its type")
		require.Equal(e, []bool{true, true}, found)

		found, err = m.NewSession().GetMany(e.ctx, sessionkit.NewKey[string]("user").Into(&user))
		require.NoError(e, err)
		require.Equal(e, []bool{false}, found, "a session not stored has no keys")
	}},
	{"FiftyConcurrentIncrsEndAtFifty", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		n, err := s.Incr(e.ctx, "visits", 1)
		require.NoError(e, err, "Incr on a new session creates it")
		require.Equal(e, int64(1), n)
		var wg sync.WaitGroup
		errs := make([]error, 49)
		for i := range errs {
			wg.Go(func() {
				r, err := m.Load(s.Token())
				if err == nil {
					_, err = r.Incr(e.ctx, "visits", 1)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(e, err)
		}
		require.Equal(e, 50, get(e, e.load(m, s.Token()), sessionkit.NewKey[int]("visits")), "a Key[int] reads what Incr stored")
	}},
	{"PopShowsAFlashMessageOnce", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		flash := sessionkit.NewKey[string]("flash")
		require.NoError(e, flash.Set(e.ctx, s, "saved"))
		results := make([]bool, 6)
		errs := make([]error, len(results))
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				r, err := m.Load(s.Token())
				if err != nil {
					errs[i] = err
					return
				}
				var v string
				var found bool
				v, found, errs[i] = flash.Pop(e.ctx, r)
				results[i] = found && v == "saved"
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(e, err)
		}
		shown := 0
		for _, r := range results {
			if r {
				shown++
			}
		}
		require.Equal(e, 1, shown, "one request shows the message")
		var v string
		found, err := e.load(m, s.Token()).Pop(e.ctx, "flash", &v)
		require.NoError(e, err)
		require.False(e, found)
	}},
	{"MissingKeysReadAsZeroValues", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s, err := m.Create(e.ctx)
		require.NoError(e, err)
		v, err := s.Get(e.ctx, "nope")
		require.NoError(e, err)
		require.Nil(e, v)
		n, found, err := sessionkit.NewKey[int]("nope").Get(e.ctx, s)
		require.NoError(e, err)
		require.False(e, found, "a missing key is told apart from a stored zero")
		require.Zero(e, n)
		require.NoError(e, s.Set(e.ctx, "zero", 0))
		n, found, err = sessionkit.NewKey[int]("zero").Get(e.ctx, s)
		require.NoError(e, err)
		require.True(e, found, "a stored zero is found")
		require.Zero(e, n)
		var p profile
		found, err = s.Decode(e.ctx, "nope", &p)
		require.NoError(e, err)
		require.False(e, found)
		has, err := s.Has(e.ctx, "nope")
		require.NoError(e, err)
		require.False(e, has)
	}},
	{"SessionOperationsRoundTrip", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.SetMany(e.ctx, map[string]any{"a": 1, "b": "two", "c": true}))
		r := e.load(m, s.Token())
		n, err := r.Len(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 3, n)
		keys, err := r.Keys(e.ctx)
		require.NoError(e, err)
		require.Equal(e, []string{"a", "b", "c"}, keys)
		require.NoError(e, r.Delete(e.ctx, "a"))
		all, err := r.All(e.ctx)
		require.NoError(e, err)
		require.Equal(e, map[string]any{"b": "two", "c": true}, all)
		require.NoError(e, r.Clear(e.ctx))
		n, err = r.Len(e.ctx)
		require.NoError(e, err)
		require.Zero(e, n)
		require.Equal(e, s.Token(), r.Token(), "a cleared session keeps its token")
		e.requireExpiryWithin(m.StorageKey(s.Token()), e.expiry().Idle)
	}},
	{"StorageKeyIsAHashOfTheTokenUnderThePrefix", func(e *env) {
		m := e.manager(sessionkit.Options{KeyPrefix: "myapp:sess:"})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		key := m.StorageKey(s.Token())
		tag := s.Token()[:4]
		require.Regexp(e, `^myapp:sess:\{`+regexp.QuoteMeta(tag)+`\}[A-Za-z0-9_-]{43}(\.[0-9a-z]{1,10}){3}$`, key, "the token's tag is the key's Cluster hash tag, its policy the key's end")
		require.Equal(e, s.Token()[48:], key[len(key)-len(s.Token())+48:], "the key ends with the token's policy")
		require.NotContains(e, key, s.Token()[5:])
		e.requireExpiryWithin(key, e.expiry().Idle)
	}},
	{"TokensAre256BitURLSafeAndMalformedOnesAreRefused", func(e *env) {
		m := e.manager(sessionkit.Options{})
		seen := map[string]bool{}
		for range 100 {
			tok := m.NewSession().Token()
			require.Regexp(e, `^[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{43}$`, tok)
			require.False(e, seen[tok])
			seen[tok] = true
		}
		good := m.NewSession().Token()
		for _, bad := range []string{"", "short", good + "A", good[:47] + "!", good[:47] + " ", "../../etc/passwd", good[:47] + "B",
			good[:4] + "_" + good[5:], good[5:], good[:4] + "!" + good[4:47]} {
			if bad == good {
				continue
			}
			_, err := m.Load(bad)
			require.ErrorIs(e, err, sessionkit.ErrInvalidToken, "%q", bad)
		}
	}},
	{"UnknownTokenIsNeverAdopted", func(e *env) {
		m := e.manager(sessionkit.Options{})
		unknown := m.NewSession().Token() // well formed, never stored
		s := e.load(m, unknown)
		v, err := s.Get(e.ctx, "a")
		require.NoError(e, err)
		require.Nil(e, v)
		require.NoError(e, s.Set(e.ctx, "a", 1))
		require.NotEqual(e, unknown, s.Token(), "the write creates a session under a fresh token")
		e.requireNoRecord(m.StorageKey(unknown))
		e.requireExpiryWithin(m.StorageKey(s.Token()), e.expiry().Idle)
	}},
	{"WriteToAnExpiredSessionStartsAFreshOne", func(e *env) {
		idle := 3 * e.unit()
		m := e.manager(sessionkit.Options{IdleTimeout: idle})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		old := s.Token()
		e.waitGone(m.StorageKey(old), idle)
		r := e.load(m, old)
		require.NoError(e, r.Set(e.ctx, "b", 2))
		require.NotEqual(e, old, r.Token())
		e.requireNoRecord(m.StorageKey(old))
		all, err := r.All(e.ctx)
		require.NoError(e, err)
		require.Equal(e, map[string]any{"b": jsonNumber(2)}, all, "nothing of the expired session comes back")
	}},
	{"RenewKillsTheOldTokenAndKeepsTheData", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "user", "ana"))
		old := s.Token()
		require.NoError(e, s.Renew(e.ctx))
		require.NotEqual(e, old, s.Token())
		require.Equal(e, old[:4], s.Token()[:4], "a renewed session keeps its tag, and so its Cluster slot")

		stale := e.load(m, old)
		_, err := stale.Get(e.ctx, "user")
		require.ErrorIs(e, err, sessionkit.ErrRenewed, "the old token reads nothing")
		require.ErrorIs(e, stale.Set(e.ctx, "user", "mallory"), sessionkit.ErrRenewed, "the old token writes nothing")
		require.Equal(e, old, stale.Token(), "a renewed token does not start a fresh session either")

		fresh := e.load(m, s.Token())
		user, _, err := sessionkit.NewKey[string]("user").Get(e.ctx, fresh)
		require.NoError(e, err)
		require.Equal(e, "ana", user)
	}},
	{"ConcurrentRenewsLeaveOneLiveSession", func(e *env) {
		m := e.manager(sessionkit.Options{})
		for round := range 10 {
			s := m.NewSession()
			require.NoError(e, s.SetMany(e.ctx, map[string]any{"user": "ana", "role": "admin"}))
			old := s.Token()
			handles := []*sessionkit.Session{e.load(m, old), e.load(m, old), e.load(m, old), e.load(m, old)}
			errs := make([]error, len(handles))
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, h := range handles {
				wg.Go(func() { <-start; errs[i] = h.Renew(e.ctx) })
			}
			close(start)
			wg.Wait()
			var winner *sessionkit.Session
			for i, err := range errs {
				if err == nil {
					require.Nil(e, winner, "round %d: a second Renew succeeded", round)
					winner = handles[i]
					continue
				}
				require.ErrorIs(e, err, sessionkit.ErrRenewed, "round %d", round)
				require.Equal(e, old, handles[i].Token(), "a losing Renew leaves its handle alone")
				require.ErrorIs(e, handles[i].Delete(e.ctx, "role"), sessionkit.ErrRenewed, "a privilege drop through a losing handle is refused, not lost")
			}
			require.NotNil(e, winner, "round %d: one Renew wins", round)
			role, _, err := sessionkit.NewKey[string]("role").Get(e.ctx, e.load(m, winner.Token()))
			require.NoError(e, err)
			require.Equal(e, "admin", role)
			require.NoError(e, winner.Delete(e.ctx, "role"))
			for _, h := range handles {
				if h != winner {
					_, err := h.Get(e.ctx, "role")
					require.ErrorIs(e, err, sessionkit.ErrRenewed, "no second copy holds the dropped privilege")
				}
			}
		}
	}},
	{"RenewRacingDestroyEndsTheSession", func(e *env) {
		m := e.manager(sessionkit.Options{})
		for round := range 10 {
			s := m.NewSession()
			require.NoError(e, s.Set(e.ctx, "user", "ana"))
			renewing, destroying := e.load(m, s.Token()), e.load(m, s.Token())
			var renewErr, destroyErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Go(func() { <-start; renewErr = renewing.Renew(e.ctx) })
			wg.Go(func() { <-start; destroyErr = destroying.Destroy(e.ctx) })
			close(start)
			wg.Wait()
			require.NoError(e, renewErr)
			require.NoError(e, destroyErr)
			user, err := e.load(m, renewing.Token()).Get(e.ctx, "user")
			require.NoError(e, err)
			require.Nil(e, user, "round %d: logout ends the session whether or not a Renew came first", round)
			e.requireNoRecord(m.StorageKey(renewing.Token()))
		}
	}},
	{"LifecycleEventsAreEmitted", func(e *env) {
		var mu sync.Mutex
		var events []sessionkit.Event
		take := func() []sessionkit.Event {
			mu.Lock()
			defer mu.Unlock()
			out := events
			events = nil
			return out
		}
		idle := 3 * e.unit()
		m := e.manager(sessionkit.Options{IdleTimeout: idle, OnEvent: func(ev sessionkit.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
		}})
		requireOne := func(kind sessionkit.EventKind, token string) sessionkit.Event {
			e.Helper()
			got := take()
			require.Len(e, got, 1, "one %v event: %v", kind, got)
			require.Equal(e, kind, got[0].Kind)
			if token != "" {
				require.Equal(e, sessionkit.LogID(token), got[0].LogID)
			}
			require.NotNil(e, got[0].Context)
			require.False(e, got[0].Time.IsZero())
			return got[0]
		}
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		requireOne(sessionkit.EventCreated, s.Token())
		old := s.Token()
		require.NoError(e, s.Renew(e.ctx))
		ev := requireOne(sessionkit.EventRenewed, s.Token())
		require.Equal(e, sessionkit.LogID(old), ev.OldLogID)
		require.NoError(e, s.Destroy(e.ctx))
		requireOne(sessionkit.EventDestroyed, "")

		s = m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		take()
		e.waitGone(m.StorageKey(s.Token()), idle)
		expired := s.Token()
		_, err := e.load(m, expired).Get(e.ctx, "a")
		require.NoError(e, err)
		requireOne(sessionkit.EventGone, expired)

		_, err = m.Load("not-a-token")
		require.ErrorIs(e, err, sessionkit.ErrInvalidToken)
		requireOne(sessionkit.EventRejected, "")
	}},
	{"WritesAfterTheHeadersWentOutAreRefused", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		token := s.Token()
		errs := map[string]error{}
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, ctx := m.Session(r.Context()), r.Context()
			_, _ = w.Write([]byte("the body goes first"))
			errs["Set"] = s.Set(ctx, "a", 2)
			errs["Delete"] = s.Delete(ctx, "a")
			errs["Renew"] = s.Renew(ctx)
			errs["Destroy"] = s.Destroy(ctx)
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: token})
		h.ServeHTTP(httptest.NewRecorder(), r)
		for name, err := range errs {
			require.ErrorIs(e, err, sessionkit.ErrHeadersSent, name)
		}
		require.Equal(e, jsonNumber(1), get(e, e.load(m, token), sessionkit.NewKey[any]("a")), "the session is as it was, under its token")
	}},
	{"TheFirstCookieThatNamesALiveSessionWins", func(e *env) {
		m := e.manager(sessionkit.Options{})
		live := m.NewSession()
		require.NoError(e, live.Set(e.ctx, "who", "live"))
		renewed := m.NewSession()
		require.NoError(e, renewed.Set(e.ctx, "who", "renewed"))
		stale := renewed.Token()
		require.NoError(e, renewed.Renew(e.ctx))
		unknown := m.NewSession().Token()
		var got string
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, _, err := sessionkit.NewKey[string]("who").Get(r.Context(), m.Session(r.Context()))
			require.NoError(e, err)
			got = v
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "session="+unknown+"; session="+stale+"; session="+live.Token())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(e, "live", got, "an unknown and a renewed cookie before the live one do not hide it")
		require.Empty(e, w.Header().Values("Set-Cookie"), "no cookie is sent, so none is deleted")
	}},
	{"SkewedApplicationClocksDoNotMoveTheLifetime", func(e *env) {
		// Two Managers whose clocks are 10 s ahead and 10 s behind, as on
		// two application servers: the lifetime is decided by the store's
		// clock, whichever created or used the session. (An adapter that
		// keeps time on its own Options.Clock, as memcached does, says so in
		// its package doc; this case does not skew that one.)
		exp := sessionkit.Expiry{Idle: 10 * e.unit(), Absolute: 20 * e.unit()}
		skewed := func(d time.Duration) *sessionkit.Manager {
			m, err := sessionkit.New(&sessionkit.Options{Store: e.s, IdleTimeout: exp.Idle, Lifetime: exp.Absolute,
				Clock: func() time.Time { return e.now().Add(d) }})
			require.NoError(e, err)
			return m
		}
		ahead, behind := skewed(10*time.Second), skewed(-10*time.Second)
		s := ahead.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		key := ahead.StorageKey(s.Token())
		e.requireExpiryWithin(key, exp.Idle)
		start := time.Now()
		if e.fakeClock() {
			for i := range 3 { // 18 units of use, 2 short of the lifetime
				e.h.Advance(6 * e.unit())
				_, err := e.load(behind, s.Token()).Get(e.ctx, "a")
				require.NoError(e, err)
				e.requireExpiryWithin(key, min(exp.Idle, exp.Absolute-time.Duration(i+1)*6*e.unit()))
			}
			e.h.Advance(2 * e.unit())
			v, err := e.load(behind, s.Token()).Get(e.ctx, "a")
			require.NoError(e, err)
			require.Nil(e, v, "the session ends at its lifetime on the store's clock, not 10 s later")
			return
		}
		var v any
		for time.Since(start) < exp.Absolute+2*time.Second {
			var err error
			v, err = e.load(behind, s.Token()).Get(e.ctx, "a")
			require.NoError(e, err)
			if v == nil {
				break
			}
			time.Sleep(e.unit() / 2)
		}
		require.Nil(e, v, "a session used all along ends")
		lived := time.Since(start)
		require.Less(e, lived, exp.Absolute+time.Second, "not stretched by the skew (10 s)")
		require.GreaterOrEqual(e, lived, exp.Absolute-50*time.Millisecond, "not cut by the skew")
	}},
	{"DestroyEndsTheSession", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		tok := s.Token()
		require.NoError(e, e.load(m, tok).Destroy(e.ctx))
		e.requireNoRecord(m.StorageKey(tok))
		n, err := s.Len(e.ctx)
		require.NoError(e, err)
		require.Zero(e, n, "another handle on the destroyed session reads it empty")
	}},
	{"ExpiryOverrideAppliesToOneSession", func(e *env) {
		m := e.manager(sessionkit.Options{IdleTimeout: 5 * e.unit()})
		s := m.NewSession()
		remember := sessionkit.Expiry{Idle: 50 * e.unit(), Absolute: 100 * e.unit()}
		require.NoError(e, s.SetExpiry(e.ctx, remember))
		require.NoError(e, s.Set(e.ctx, "a", 1))
		ttl, ok := e.ttl(m.StorageKey(s.Token()))
		require.True(e, ok)
		require.Greater(e, ttl, 40*e.unit(), "the override is the session's policy from creation on")

		plain := m.NewSession()
		require.NoError(e, plain.Set(e.ctx, "a", 1))
		e.requireExpiryWithin(m.StorageKey(plain.Token()), 5*e.unit())

		at, err := e.load(m, s.Token()).ExpiresAt(e.ctx)
		require.NoError(e, err)
		require.WithinDuration(e, e.now().Add(remember.Idle), at, e.unit())
	}},
	{"SetExpiryOfAStoredSessionIssuesATokenWithItsPolicy", func(e *env) {
		m := e.manager(sessionkit.Options{IdleTimeout: 5 * e.unit()})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		old := s.Token()
		_, p, ok := sessionkit.KeyPolicy(m.StorageKey(old))
		require.True(e, ok, "a stored session's key carries its policy")
		remember := sessionkit.Expiry{Idle: 50 * e.unit(), Absolute: 100 * e.unit()}
		require.NoError(e, s.SetExpiry(e.ctx, remember))
		require.NotEqual(e, old, s.Token(), "the token carries the policy: it changes with it")
		_, q, ok := sessionkit.KeyPolicy(m.StorageKey(s.Token()))
		require.True(e, ok)
		require.Equal(e, sessionkit.Policy{Created: p.Created, Idle: remember.Idle.Milliseconds(), Absolute: remember.Absolute.Milliseconds()}, q)
		_, err := e.load(m, old).Get(e.ctx, "a")
		require.ErrorIs(e, err, sessionkit.ErrRenewed, "the old token stops working, as after Renew")
		r := e.load(m, s.Token())
		require.Equal(e, 1, get(e, r, sessionkit.NewKey[int]("a")))
		ttl, ok := e.ttl(m.StorageKey(s.Token()))
		require.True(e, ok)
		require.Greater(e, ttl, 40*e.unit(), "the new idle timeout holds")
	}},
	{"HandEditedValuesAreReadBack", func(e *env) {
		if e.h.SetRaw == nil {
			e.Skip("the harness has no SetRaw")
		}
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.SetMany(e.ctx, map[string]any{"name": "ana", "count": 1}))
		key := m.StorageKey(s.Token())
		require.NoError(e, e.h.SetRaw(e.ctx, key, "name", []byte("bob")))   // not JSON
		require.NoError(e, e.h.SetRaw(e.ctx, key, "count", []byte("42")))   // JSON number
		require.NoError(e, e.h.SetRaw(e.ctx, key, "quoted", []byte(`"x"`))) // JSON string
		r := e.load(m, s.Token())
		name, _, err := sessionkit.NewKey[string]("name").Get(e.ctx, r)
		require.NoError(e, err)
		require.Equal(e, "bob", name)
		v, err := r.Get(e.ctx, "name")
		require.NoError(e, err)
		require.Equal(e, "bob", v)
		n, _, err := sessionkit.NewKey[int]("count").Get(e.ctx, r)
		require.NoError(e, err)
		require.Equal(e, 42, n)
		q, _, err := sessionkit.NewKey[string]("quoted").Get(e.ctx, r)
		require.NoError(e, err)
		require.Equal(e, "x", q)
	}},
	{"OversizeValueIsRefusedAndTheSessionIsUnchanged", func(e *env) {
		m := e.manager(sessionkit.Options{MaxValueSize: 100})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", "small"))
		err := s.SetMany(e.ctx, map[string]any{"a": "changed", "big": string(make([]byte, 200))})
		require.ErrorIs(e, err, sessionkit.ErrTooLarge)
		require.ErrorContains(e, err, "big")
		all, err := e.load(m, s.Token()).All(e.ctx)
		require.NoError(e, err)
		require.Equal(e, map[string]any{"a": "small"}, all)
	}},
	{"TooManyKeysAreRefusedAndTheSessionIsUnchanged", func(e *env) {
		m := e.manager(sessionkit.Options{MaxFields: 3})
		s := m.NewSession()
		require.NoError(e, s.SetMany(e.ctx, map[string]any{"a": 1, "b": 2}))
		err := s.SetMany(e.ctx, map[string]any{"c": 3, "d": 4})
		require.ErrorIs(e, err, sessionkit.ErrTooManyFields)
		require.ErrorIs(e, s.SetMany(e.ctx, map[string]any{"1": 1, "2": 2, "3": 3, "4": 4}), sessionkit.ErrTooManyFields)
		keys, err := e.load(m, s.Token()).Keys(e.ctx)
		require.NoError(e, err)
		require.Equal(e, []string{"a", "b"}, keys)
	}},
	{"InvalidAndReservedKeysAreRefused", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "a", 1))
		for _, k := range []string{"", sessionkit.ReservedPrefix + "c", string(make([]byte, sessionkit.MaxKeyLength+1)), "\xff", "a\x00b"} {
			require.ErrorIs(e, s.Set(e.ctx, k, 1), sessionkit.ErrInvalidKey, "%q", k)
		}
		keys, err := s.Keys(e.ctx)
		require.NoError(e, err)
		require.Equal(e, []string{"a"}, keys, "no adapter metadata shows as a key")
	}},
	{"FiftyConcurrentRequestsWritingDistinctKeysAllSurvive", func(e *env) {
		m := e.manager(sessionkit.Options{})
		s, err := m.Create(e.ctx)
		require.NoError(e, err)
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range 50 {
			wg.Go(func() {
				r, err := m.Load(s.Token())
				if err == nil {
					err = r.Set(e.ctx, fmt.Sprintf("k%d", i), i)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(e, err, "request %d", i)
		}
		n, err := e.load(m, s.Token()).Len(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 50, n)
	}},
}

// get reads k from s, failing the case unless it is set and decodes.
func get[T any](e *env, s *sessionkit.Session, k sessionkit.Key[T]) T {
	e.Helper()
	v, found, err := k.Get(e.ctx, s)
	require.NoError(e, err, k.Name())
	require.True(e, found, k.Name())
	return v
}

func (e *env) now() time.Time {
	if e.h.Now != nil {
		return e.h.Now()
	}
	return time.Now()
}
