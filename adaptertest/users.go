package adaptertest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// prefix is a key prefix of this subtest's own, so that counting and
// scanning see only its sessions even on a shared server.
func (e *env) prefix() string {
	h := sha256.Sum256([]byte(e.Name()))
	return fmt.Sprintf("at%x:", h[:5])
}

// users returns the store's Users, or skips the case by name.
func (e *env) users() sessionkit.Users {
	u, ok := e.s.(sessionkit.Users)
	if !ok {
		e.Skip("the store does not implement sessionkit.Users")
	}
	return u
}

// userManager is a Manager over the store under the subtest's prefix.
func (e *env) userManager(opts sessionkit.Options) *sessionkit.Manager {
	e.users()
	opts.KeyPrefix = e.prefix()
	return e.manager(opts)
}

// bind binds a new session to user and returns its token.
func (e *env) bind(m *sessionkit.Manager, user, device string) string {
	e.Helper()
	tok, err := m.Bind(e.ctx, "", user, sessionkit.Client{Device: device})
	require.NoError(e, err, "Bind")
	return tok
}

// live reports whether the session of token is live in the store.
func (e *env) live(m *sessionkit.Manager, token string) bool {
	e.Helper()
	_, err := e.users().Info(e.ctx, m.StorageKey(token))
	if errors.Is(err, sessionkit.ErrNotFound) {
		return false
	}
	require.NoError(e, err, "Info")
	return true
}

// list returns user's sessions, by ID.
func (e *env) list(m *sessionkit.Manager, user string) map[string]sessionkit.UserSession {
	e.Helper()
	l, err := m.UserSessions(e.ctx, user)
	require.NoError(e, err, "UserSessions")
	out := map[string]sessionkit.UserSession{}
	for _, s := range l {
		require.NotContains(e, out, s.ID, "an ID is listed once")
		out[s.ID] = s
	}
	return out
}

// idOf returns the public ID of the session of token.
func (e *env) idOf(m *sessionkit.Manager, token string) string {
	e.Helper()
	i, err := e.users().Info(e.ctx, m.StorageKey(token))
	require.NoError(e, err, "Info")
	require.NotEmpty(e, i.ID, "a bound session has a public ID")
	return i.ID
}

// tick waits until the store's clock has moved on by a few milliseconds,
// so that sessions bound one after the other have distinct creation times.
func (e *env) tick() {
	if e.fakeClock() {
		e.h.Advance(time.Second)
		return
	}
	for start := time.Now(); time.Since(start) < 3*time.Millisecond; {
		time.Sleep(time.Millisecond)
	}
}

// serve runs one request through m's middleware with the given cookie
// token ("" for none) and returns the token the response set, if any.
func serve(m *sessionkit.Manager, token, ua, remote string, h func(w http.ResponseWriter, r *http.Request)) (string, *httptest.ResponseRecorder) {
	r := httptest.NewRequest("GET", "/", nil)
	if token != "" {
		r.AddCookie(&http.Cookie{Name: sessionkit.DefaultCookieName, Value: token})
	}
	if ua != "" {
		r.Header.Set("User-Agent", ua)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	m.Middleware(http.HandlerFunc(h)).ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionkit.DefaultCookieName {
			return c.Value, w
		}
	}
	return "", w
}

var userCases = []testCase{
	{"BindRenewsTheTokenAndKeepsTheData", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "cart", "3 apples"))
		old := s.Token()
		tok, err := m.Bind(e.ctx, old, "alice", sessionkit.Client{Device: "Firefox"})
		require.NoError(e, err)
		require.NotEqual(e, old, tok, "a login issues a new token (against fixation)")
		_, err = e.load(m, old).Get(e.ctx, "cart")
		require.ErrorIs(e, err, sessionkit.ErrRenewed, "the old token stops working at once")
		require.Equal(e, "3 apples", get(e, e.load(m, tok), sessionkit.NewKey[string]("cart")))
		info, err := e.users().Info(e.ctx, m.StorageKey(tok))
		require.NoError(e, err)
		require.Equal(e, "alice", info.User)
		require.Equal(e, "Firefox", info.Device)
		require.Len(e, info.ID, 22)
		require.Empty(e, info.IP, "the IP is kept only with RecordIP")
		other := e.bind(m, "alice", "Safari")
		require.Equal(e, tok[:4], other[:4], "a user's sessions share a tag, so a Redis Cluster slot")
		require.NotContains(e, m.UserIndex("alice"), "alice", "the user ID is hashed, never a key")
	}},
	{"BindOfAGoneOrNoSessionBindsANewOne", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		tok := e.bind(m, "bob", "curl")
		require.True(e, e.live(m, tok))
		gone := m.NewSession().Token() // well formed, never stored
		tok2, err := m.Bind(e.ctx, gone, "bob", sessionkit.Client{})
		require.NoError(e, err)
		require.True(e, e.live(m, tok2))
		require.Len(e, e.list(m, "bob"), 2)
		_, err = m.Bind(e.ctx, "not a token", "bob", sessionkit.Client{})
		require.ErrorIs(e, err, sessionkit.ErrInvalidToken)
	}},
	{"InvalidUserIDsAreRefused", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		for _, u := range []string{"", strings.Repeat("u", sessionkit.MaxUserIDLength+1), "a\nb", "\xff", "ad\u202emin"} {
			_, err := m.Bind(e.ctx, "", u, sessionkit.Client{})
			require.ErrorIs(e, err, sessionkit.ErrInvalidUser, "%q", u)
			_, err = m.UserSessions(e.ctx, u)
			require.ErrorIs(e, err, sessionkit.ErrInvalidUser, "%q", u)
		}
		e.bind(m, strings.Repeat("u", sessionkit.MaxUserIDLength), "")
	}},
	{"ConcurrentBindsOfOneSessionLeaveOneLiveSession", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "k", "v"))
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		toks := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				toks[i], errs[i] = m.Bind(e.ctx, s.Token(), "carol", sessionkit.Client{})
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			if err == nil {
				won++
				require.True(e, e.live(m, toks[i]))
				continue
			}
			require.ErrorIs(e, err, sessionkit.ErrRenewed)
		}
		require.Equal(e, 1, won, "exactly one login wins")
		require.Len(e, e.list(m, "carol"), 1, "one session, listed once")
	}},
	{"ListShowsLiveSessionsWithTheirDetails", func(e *env) {
		m := e.userManager(sessionkit.Options{RecordIP: true})
		login := func(w http.ResponseWriter, r *http.Request) {
			require.NoError(e, m.Session(r.Context()).Bind(r.Context(), "dana"))
		}
		before := e.now()
		a, _ := serve(m, "", "Firefox/140", "192.0.2.1:5000", login)
		e.tick()
		b, _ := serve(m, "", "Safari/19", "198.51.100.7:443", login)
		require.NotEmpty(e, a)
		require.NotEmpty(e, b)
		var l []sessionkit.UserSession
		serve(m, b, "", "", func(w http.ResponseWriter, r *http.Request) {
			var err error
			l, err = m.UserSessions(r.Context(), "dana")
			require.NoError(e, err)
		})
		require.Len(e, l, 2)
		require.Equal(e, "Firefox/140", l[0].Device, "oldest first")
		require.Equal(e, "192.0.2.1", l[0].IP)
		require.False(e, l[0].Current)
		require.Equal(e, "Safari/19", l[1].Device)
		require.Equal(e, "198.51.100.7", l[1].IP)
		require.True(e, l[1].Current, "the calling request's session is marked")
		slack := 5 * time.Second
		for _, s := range l {
			require.NotEqual(e, s.ID, a)
			require.NotEqual(e, s.ID, b)
			require.False(e, s.Created.Before(before.Add(-slack)), "created %v, before %v", s.Created, before)
			require.False(e, s.LastSeen.Before(s.Created))
			require.True(e, s.Expires.After(s.LastSeen))
			require.False(e, s.Expires.After(e.now().Add(m.Expiry().Idle+slack)), "expires within the idle timeout")
		}
		require.False(e, l[0].Created.After(l[1].Created))

		m2 := e.userManager(sessionkit.Options{})
		c, _ := serve(m2, "", "Edge", "203.0.113.9:1", func(w http.ResponseWriter, r *http.Request) {
			require.NoError(e, m2.Session(r.Context()).Bind(r.Context(), "erin"))
		})
		require.Empty(e, e.list(m2, "erin")[e.idOf(m2, c)].IP, "no IP without RecordIP")
	}},
	{"LastSeenFollowsUseWithoutWrites", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		tok := e.bind(m, "finn", "")
		id := e.idOf(m, tok)
		first := e.list(m, "finn")[id]
		for range 2 {
			e.tick()
		}
		_, err := e.load(m, tok).Get(e.ctx, "anything")
		require.NoError(e, err)
		later := e.list(m, "finn")[id]
		require.True(e, later.LastSeen.After(first.LastSeen), "a read moves last-seen: %v then %v", first.LastSeen, later.LastSeen)
		again := e.list(m, "finn")[id]
		require.Equal(e, later.LastSeen, again.LastSeen, "listing is not a use")
	}},
	{"PublicIDCannotActAsTheSession", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		tok := e.bind(m, "gil", "")
		id := e.idOf(m, tok)
		require.NotContains(e, tok, id)
		_, err := m.Load(id)
		require.ErrorIs(e, err, sessionkit.ErrInvalidToken, "an ID is not shaped like a token")
		for _, guess := range []string{id, tok[:5] + id, tok[:5] + id + id[:21]} {
			if s, err := m.Load(guess); err == nil {
				v, err := s.Get(e.ctx, "x")
				require.NoError(e, err)
				require.Nil(e, v)
				require.False(e, e.live(m, guess))
			}
		}
		require.NotEqual(e, m.StorageKey(tok), id)
	}},
	{"RenewKeepsTheBindingAndTheIndex", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		tok := e.bind(m, "hana", "")
		id := e.idOf(m, tok)
		s := e.load(m, tok)
		require.NoError(e, s.Renew(e.ctx))
		require.NotEqual(e, tok, s.Token())
		require.Equal(e, id, e.idOf(m, s.Token()), "the public ID survives a Renew")
		l := e.list(m, "hana")
		require.Len(e, l, 1)
		require.Contains(e, l, id)
		n, err := m.RevokeUser(e.ctx, "hana", "")
		require.NoError(e, err)
		require.Equal(e, 1, n)
		require.False(e, e.live(m, s.Token()), "revocation reaches the renewed token")
	}},
	{"DestroyedSessionLeavesTheList", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		a := e.bind(m, "ivan", "")
		b := e.bind(m, "ivan", "")
		require.NoError(e, e.load(m, a).Destroy(e.ctx))
		if e.h.IndexEntries != nil {
			n, err := e.h.IndexEntries(e.ctx, m.UserIndex("ivan"))
			require.NoError(e, err)
			require.Equal(e, 1, n, "Destroy removes the entry, before any listing")
		}
		l := e.list(m, "ivan")
		require.Len(e, l, 1)
		require.Contains(e, l, e.idOf(m, b))
	}},
	{"RevokeSessionOnlyAmongTheUsersOwn", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		a1, a2 := e.bind(m, "jo", ""), e.bind(m, "jo", "")
		b := e.bind(m, "kim", "")
		err := m.RevokeSession(e.ctx, "jo", e.idOf(m, b))
		require.ErrorIs(e, err, sessionkit.ErrNotFound, "one user cannot end another's session")
		require.True(e, e.live(m, b))
		require.ErrorIs(e, m.RevokeSession(e.ctx, "jo", "no-such-id"), sessionkit.ErrNotFound)
		require.NoError(e, m.RevokeSession(e.ctx, "jo", e.idOf(m, a1)))
		require.False(e, e.live(m, a1))
		require.True(e, e.live(m, a2))
		_, err = e.load(m, a1).Get(e.ctx, "x")
		require.NoError(e, err, "a revoked session reads as gone")
	}},
	{"RevokeUserEndsEverySessionButTheOneExcepted", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		toks := []string{e.bind(m, "lee", ""), e.bind(m, "lee", ""), e.bind(m, "lee", "")}
		other := e.bind(m, "max", "")
		keep := e.idOf(m, toks[1])
		n, err := m.RevokeUser(e.ctx, "lee", keep)
		require.NoError(e, err)
		require.Equal(e, 2, n)
		require.False(e, e.live(m, toks[0]))
		require.True(e, e.live(m, toks[1]))
		require.False(e, e.live(m, toks[2]))
		n, err = m.RevokeUser(e.ctx, "lee", "")
		require.NoError(e, err)
		require.Equal(e, 1, n)
		require.Empty(e, e.list(m, "lee"))
		require.True(e, e.live(m, other), "another user's sessions stay")
	}},
	{"RevokeOthersKeepsTheCurrentSession", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		mine := e.bind(m, "noa", "")
		others := []string{e.bind(m, "noa", ""), e.bind(m, "noa", "")}
		n, err := e.load(m, mine).RevokeOthers(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 2, n)
		require.True(e, e.live(m, mine))
		for _, t := range others {
			require.False(e, e.live(m, t))
		}
		_, err = e.load(m, e.createToken(m)).RevokeOthers(e.ctx)
		require.ErrorIs(e, err, sessionkit.ErrNotFound, "an unbound session has no user")
	}},
	{"CapEvictsTheOldest", func(e *env) {
		var bound []sessionkit.Event
		var mu sync.Mutex
		m := e.userManager(sessionkit.Options{MaxSessionsPerUser: 3, OnEvent: func(ev sessionkit.Event) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Kind == sessionkit.EventBound {
				bound = append(bound, ev)
			}
		}})
		var toks []string
		for range 5 {
			toks = append(toks, e.bind(m, "olga", ""))
			e.tick()
		}
		require.False(e, e.live(m, toks[0]))
		require.False(e, e.live(m, toks[1]))
		for _, t := range toks[2:] {
			require.True(e, e.live(m, t))
		}
		require.Len(e, e.list(m, "olga"), 3)
		require.Len(e, bound, 5, "every login is reported")
	}},
	{"CapRefusesWithASentinelAndKeepsTheSession", func(e *env) {
		m := e.userManager(sessionkit.Options{MaxSessionsPerUser: 2, OverCap: sessionkit.RefuseLogin})
		a, b := e.bind(m, "pia", ""), e.bind(m, "pia", "")
		s := m.NewSession()
		require.NoError(e, s.Set(e.ctx, "cart", "pears"))
		_, err := m.Bind(e.ctx, s.Token(), "pia", sessionkit.Client{})
		require.ErrorIs(e, err, sessionkit.ErrTooManySessions)
		r := e.load(m, s.Token())
		require.Equal(e, "pears", get(e, r, sessionkit.NewKey[string]("cart")), "the refused session is as it was")
		info, err := e.users().Info(e.ctx, m.StorageKey(s.Token()))
		require.NoError(e, err)
		require.Empty(e, info.User)
		require.True(e, e.live(m, a))
		require.True(e, e.live(m, b))
		require.Len(e, e.list(m, "pia"), 2)
		// Through the middleware, the handle is left as it was too.
		_, w := serve(m, s.Token(), "", "", func(w http.ResponseWriter, r *http.Request) {
			require.ErrorIs(e, m.Session(r.Context()).Bind(r.Context(), "pia"), sessionkit.ErrTooManySessions)
		})
		require.Empty(e, w.Result().Cookies(), "a refused login sends no cookie")
		require.Equal(e, "pears", get(e, e.load(m, s.Token()), sessionkit.NewKey[string]("cart")))
		// A login of a session already bound to the user does not count twice.
		tok, err := m.Bind(e.ctx, a, "pia", sessionkit.Client{})
		require.NoError(e, err, "re-login of one of the user's own sessions is within the cap")
		require.True(e, e.live(m, tok))
	}},
	{"ConcurrentLoginsNeverPassTheCap", func(e *env) {
		for _, policy := range []sessionkit.CapPolicy{sessionkit.EvictOldest, sessionkit.RefuseLogin} {
			m := e.userManager(sessionkit.Options{MaxSessionsPerUser: 3, OverCap: policy})
			user := fmt.Sprintf("quinn-%d", policy)
			const n = 20
			var wg sync.WaitGroup
			toks := make([]string, n)
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := m.NewSession()
					if errs[i] = s.Set(e.ctx, "i", i); errs[i] != nil {
						return
					}
					toks[i], errs[i] = m.Bind(e.ctx, s.Token(), user, sessionkit.Client{})
				}()
			}
			wg.Wait()
			ok, refused, alive := 0, 0, 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
					if e.live(m, toks[i]) {
						alive++
					}
				case errors.Is(err, sessionkit.ErrTooManySessions) && policy == sessionkit.RefuseLogin:
					refused++
				default:
					require.NoError(e, err)
				}
			}
			require.LessOrEqual(e, alive, 3, "never more live sessions than the cap")
			require.Len(e, e.list(m, user), alive)
			if policy == sessionkit.RefuseLogin {
				require.Equal(e, 3, ok, "exactly the cap's worth of logins succeed")
				require.Equal(e, n-3, refused)
				require.Equal(e, 3, alive)
			} else {
				require.Equal(e, n, ok)
				require.Equal(e, 3, alive, "the three newest survive")
			}
		}
	}},
	{"LoginsAgainRacingNewLoginsNeverPassTheCap", func(e *env) {
		m := e.userManager(sessionkit.Options{MaxSessionsPerUser: 3, OverCap: sessionkit.RefuseLogin})
		const user = "quinn-again"
		toks := []string{e.bind(m, user, ""), e.bind(m, user, ""), e.bind(m, user, "")}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got []string
		for i := range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				from := ""
				if i%2 == 0 {
					from = toks[i%3] // a login again of one of the user's sessions
				}
				tok, err := m.Bind(e.ctx, from, user, sessionkit.Client{})
				switch {
				case err == nil:
					mu.Lock()
					got = append(got, tok)
					mu.Unlock()
				case errors.Is(err, sessionkit.ErrTooManySessions), errors.Is(err, sessionkit.ErrRenewed):
				default:
					require.NoError(e, err)
				}
			}()
		}
		wg.Wait()
		alive := 0
		for _, t := range append(got, toks...) {
			if e.live(m, t) {
				alive++
			}
		}
		require.Equal(e, 3, alive, "a login again keeps its place; no new login gets in")
		require.Len(e, e.list(m, user), 3)
	}},
	{"LogoutRacingLoginLeavesTheOldSessionNowhere", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		for round := range 20 {
			s := m.NewSession()
			require.NoError(e, s.Set(e.ctx, "cart", round))
			var wg sync.WaitGroup
			var tok string
			var bindErr, destroyErr error
			wg.Add(2)
			go func() { defer wg.Done(); tok, bindErr = m.Bind(e.ctx, s.Token(), "ray", sessionkit.Client{}) }()
			go func() { defer wg.Done(); destroyErr = e.load(m, s.Token()).Destroy(e.ctx) }()
			wg.Wait()
			require.NoError(e, destroyErr)
			if bindErr != nil {
				require.ErrorIs(e, bindErr, sessionkit.ErrRenewed)
				continue
			}
			if e.live(m, tok) {
				// The login came after the logout: a new, empty session.
				v, err := e.load(m, tok).Get(e.ctx, "cart")
				require.NoError(e, err)
				require.Nil(e, v, "round %d: the logged-out session's data lives on under the login's token", round)
			}
		}
	}},
	{"RevokeUserIsCompleteUnderConcurrentLoginsAndRequests", func(e *env) {
		m := e.userManager(sessionkit.Options{})
		const user = "rita"
		var mu sync.Mutex
		var before []string // tokens bound or renewed before RevokeUser was called
		var revokeStarted bool
		children := map[string][]string{} // token -> the tokens it moved to (Renew, login again)
		note := func(t string) {
			mu.Lock()
			defer mu.Unlock()
			if !revokeStarted {
				before = append(before, t)
			}
		}
		moved := func(from, to string) {
			mu.Lock()
			children[from] = append(children[from], to)
			mu.Unlock()
			note(to)
		}
		for range 5 {
			note(e.bind(m, user, ""))
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					switch w {
					case 0, 1: // logins
						tok, err := m.Bind(e.ctx, "", user, sessionkit.Client{})
						if err == nil {
							note(tok)
						}
					case 2: // requests on known sessions, with renews
						mu.Lock()
						t := before[i%len(before)]
						mu.Unlock()
						s := e.load(m, t)
						if i%3 == 0 {
							if s.Renew(e.ctx) == nil && s.Token() != t {
								moved(t, s.Token())
							}
						} else {
							_ = s.Set(e.ctx, "n", i)
						}
					case 3: // reads
						_, _ = m.UserSessions(e.ctx, user)
					case 4: // logins again of known sessions: a move within the user's slot
						mu.Lock()
						t := before[(i*7)%len(before)]
						mu.Unlock()
						to := t[:5] + m.NewSession().Token()[5:] // the same tag, a fresh secret
						b := sessionkit.Binding{Index: m.UserIndex(user), User: user, ID: fmt.Sprint("again-", i), Expiry: m.Expiry()}
						if e.users().Bind(e.ctx, m.StorageKey(t), m.StorageKey(to), b) == nil {
							moved(t, to)
						}
					}
				}
			}()
		}
		// Let the workers run, then revoke in the middle of it.
		for range 20 {
			e.bind(m, "someone-else", "")
		}
		mu.Lock()
		revokeStarted = true
		snapshot := slices.Clone(before)
		mu.Unlock()
		_, err := m.RevokeUser(e.ctx, user, "")
		require.NoError(e, err)
		for _, t := range snapshot {
			require.False(e, e.live(m, t), "a session bound before RevokeUser must be gone when it returns")
		}
		close(stop)
		wg.Wait()
		// Nor may any session moved from one of them (by a Renew or a login
		// again racing the revocation) have escaped it.
		var walk func(t string)
		walk = func(t string) {
			require.False(e, e.live(m, t), "a session bound before RevokeUser must stay gone, under every later token")
			for _, c := range children[t] {
				walk(c)
			}
		}
		for _, t := range snapshot {
			walk(t)
		}
	}},
	{"ExpiredSessionsLeaveTheIndex", func(e *env) {
		short := e.userManager(sessionkit.Options{IdleTimeout: 3 * e.unit(), Lifetime: 300 * e.unit()})
		long := e.userManager(sessionkit.Options{})
		const user = "sam"
		var last string
		for range 200 {
			last = e.bind(short, user, "")
		}
		keep := []string{e.bind(long, user, ""), e.bind(long, user, "")}
		e.waitGone(short.StorageKey(last), 3*e.unit())
		l := e.list(long, user)
		require.Len(e, l, 2, "only live sessions are listed")
		for _, t := range keep {
			require.Contains(e, l, e.idOf(long, t))
		}
		if e.h.IndexEntries != nil {
			n, err := e.h.IndexEntries(e.ctx, long.UserIndex(user))
			require.NoError(e, err)
			require.Equal(e, 2, n, "the index shrinks back to the live sessions")
		}
	}},
	{"IndexNeverOutlivesItsSessions", func(e *env) {
		m := e.userManager(sessionkit.Options{IdleTimeout: 3 * e.unit(), Lifetime: 5 * e.unit()})
		toks := []string{e.bind(m, "tess", ""), e.bind(m, "tess", "")}
		index := m.UserIndex("tess")
		if ttl, ok := e.ttl(index); ok {
			require.GreaterOrEqual(e, ttl, time.Duration(0), "an index carries an expiry")
			require.LessOrEqual(e, ttl, 5*e.unit(), "an index lives no longer than its sessions' deadline")
		}
		for _, t := range toks {
			e.waitGone(m.StorageKey(t), 3*e.unit())
		}
		e.waitGone(index, 2*e.unit())
		if e.h.IndexEntries != nil {
			n, err := e.h.IndexEntries(e.ctx, index)
			require.NoError(e, err)
			if e.fakeClock() && n > 0 {
				// In-process stores drop index entries when the index is
				// next used, or at their sweep.
				_, err = m.UserSessions(e.ctx, "tess")
				require.NoError(e, err)
				n, err = e.h.IndexEntries(e.ctx, index)
				require.NoError(e, err)
			}
			require.Zero(e, n)
		}
	}},
	{"SetExpiryOfABoundSessionKeepsItIndexed", func(e *env) {
		m := e.userManager(sessionkit.Options{IdleTimeout: 10 * e.unit(), Lifetime: 4 * e.unit()})
		tok := e.bind(m, "uma", "")
		s := e.load(m, tok)
		require.NoError(e, s.SetExpiry(e.ctx, sessionkit.Expiry{Idle: 20 * e.unit(), Absolute: 40 * e.unit()}))
		tok = s.Token() // the token carries the policy: SetExpiry issued a new one
		index := m.UserIndex("uma")
		if ttl, ok := e.ttl(index); ok {
			require.Greater(e, ttl, 20*e.unit(), "the index lives as long as its longest session")
		}
		if e.fakeClock() {
			e.h.Advance(6 * e.unit())
		} else {
			time.Sleep(6 * e.unit()) // past the first deadline: the point of the case
		}
		require.True(e, e.live(m, tok))
		require.Len(e, e.list(m, "uma"), 1)
		n, err := m.RevokeUser(e.ctx, "uma", "")
		require.NoError(e, err)
		require.Equal(e, 1, n)
		require.False(e, e.live(m, tok))
	}},
}

// createToken stores a new unbound session and returns its token.
func (e *env) createToken(m *sessionkit.Manager) string {
	e.Helper()
	s, err := m.Create(e.ctx)
	require.NoError(e, err)
	return s.Token()
}

// scanAll walks every session of m with pages of n.
func (e *env) scanAll(m *sessionkit.Manager, n int) []sessionkit.SessionInfo {
	e.Helper()
	var out []sessionkit.SessionInfo
	cursor := ""
	for range 10000 {
		page, next, err := m.Scan(e.ctx, cursor, n)
		require.NoError(e, err, "Scan")
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
	e.Fatal("Scan never ended")
	return nil
}

func (e *env) scanner() sessionkit.Scanner {
	sc, ok := e.s.(sessionkit.Scanner)
	if !ok {
		e.Skip("the store does not implement sessionkit.Scanner")
	}
	return sc
}

var adminCases = []testCase{
	{"CountCountsLiveSessionsUnderThePrefix", func(e *env) {
		_, counter := e.s.(sessionkit.Counter)
		_, scanner := e.s.(sessionkit.Scanner)
		if !counter && !scanner {
			e.Skip("the store implements neither sessionkit.Counter nor sessionkit.Scanner")
		}
		m := e.manager(sessionkit.Options{KeyPrefix: e.prefix() + "a:"})
		other := e.manager(sessionkit.Options{KeyPrefix: e.prefix() + "b:"})
		short := e.manager(sessionkit.Options{KeyPrefix: e.prefix() + "a:", IdleTimeout: 3 * e.unit()})
		e.createToken(m)
		renewed := e.load(m, e.createToken(m))
		require.NoError(e, renewed.Renew(e.ctx)) // leaves a marker: not a session
		if _, ok := e.s.(sessionkit.Users); ok {
			e.bind(m, "vera", "")
		} else {
			e.createToken(m)
		}
		gone := e.createToken(short)
		e.createToken(other)
		e.waitGone(short.StorageKey(gone), 3*e.unit())
		n, err := m.Count(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 3, n, "live sessions only: no marker, no index, no expired one, none of another prefix")
		n, err = other.Count(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 1, n)
	}},
	{"ScanPagesThroughEverySession", func(e *env) {
		e.scanner()
		m := e.manager(sessionkit.Options{KeyPrefix: e.prefix()})
		other := e.manager(sessionkit.Options{KeyPrefix: e.prefix() + "x"})
		want := map[string]bool{}
		for range 22 {
			want[baseKey(m.StorageKey(e.createToken(m)))] = true
		}
		s := e.load(m, e.createToken(m))
		require.NoError(e, s.Renew(e.ctx))
		want[baseKey(m.StorageKey(s.Token()))] = true
		bound := ""
		if _, ok := e.s.(sessionkit.Users); ok {
			bound = baseKey(m.StorageKey(e.bind(m, "wes", "Lynx")))
			want[bound] = true
		}
		e.createToken(other)
		got := map[string]bool{}
		for _, i := range e.scanAll(m, 7) {
			k := baseKey(i.Key)
			require.True(e, want[k], "Scan returned %q, not a live session of the prefix", i.Key)
			got[k] = true
			require.False(e, i.Created.IsZero())
			require.True(e, i.Expires.After(i.Created))
			require.Equal(e, m.Expiry().Idle, i.Idle)
			if k == bound {
				require.Equal(e, "wes", i.User)
				require.Equal(e, "Lynx", i.Device)
				require.NotEmpty(e, i.ID)
			}
		}
		require.Equal(e, want, got, "every live session is listed")
	}},
	{"FindByPublicIDOrLogID", func(e *env) {
		e.scanner()
		m := e.manager(sessionkit.Options{KeyPrefix: e.prefix()})
		tok := e.createToken(m)
		i, err := m.Find(e.ctx, sessionkit.LogID(tok))
		require.NoError(e, err)
		require.Equal(e, baseKey(m.StorageKey(tok)), baseKey(i.Key))
		if _, ok := e.s.(sessionkit.Users); ok {
			b := e.bind(m, "xia", "")
			i, err = m.Find(e.ctx, e.idOf(m, b))
			require.NoError(e, err)
			require.Equal(e, baseKey(m.StorageKey(b)), baseKey(i.Key))
		}
		_, err = m.Find(e.ctx, "0000000000000000")
		require.ErrorIs(e, err, sessionkit.ErrNotFound)
	}},
	{"RevokeAllLogsEveryoneOut", func(e *env) {
		e.scanner()
		m := e.manager(sessionkit.Options{KeyPrefix: e.prefix()})
		other := e.manager(sessionkit.Options{KeyPrefix: e.prefix() + "x"})
		toks := []string{e.createToken(m), e.createToken(m)}
		s := e.load(m, e.createToken(m))
		require.NoError(e, s.Renew(e.ctx))
		toks = append(toks, s.Token())
		_, users := e.s.(sessionkit.Users)
		if users {
			toks = append(toks, e.bind(m, "yan", ""), e.bind(m, "yan", ""))
		}
		kept := e.createToken(other)
		n, err := m.RevokeAll(e.ctx)
		require.NoError(e, err)
		require.Equal(e, len(toks), n)
		for _, t := range toks {
			v, err := e.load(m, t).Get(e.ctx, "a")
			require.NoError(e, err)
			require.Nil(e, v)
			e.requireNoRecord(m.StorageKey(t))
		}
		if users {
			require.Empty(e, e.list(m, "yan"))
			e.requireNoRecord(m.UserIndex("yan"))
		}
		c, err := other.Count(e.ctx)
		require.NoError(e, err)
		require.Equal(e, 1, c, "another prefix is untouched")
		_, err = e.load(other, kept).Get(e.ctx, "a")
		require.NoError(e, err)
	}},
}

// baseKey is a storage key without the policy it may carry: a store may
// list its keys either way (sessionkit.KeyPolicy).
func baseKey(key string) string {
	k, _, _ := sessionkit.KeyPolicy(key)
	return k
}
