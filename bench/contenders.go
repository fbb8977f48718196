package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/boj/redistore"
	redigo "github.com/gomodule/redigo/redis"
	gsessions "github.com/gorilla/sessions"
	"github.com/kataras/iris/v12"
	irissessions "github.com/kataras/iris/v12/sessions"
	irisredis "github.com/kataras/iris/v12/sessions/sessiondb/redis"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// A contender serves, through its own session middleware:
//
//	/setup?n=N   creates a session holding N attributes of 64-byte strings
//	             besides "counter"
//	/rw          reads "counter" and writes it back incremented
//	/read        reads one string attribute, attr0000 (read-only)
//	/incr        increments "counter": Session.Incr for sessionkit, the
//	             incr script for the floor, the /rw request for the others
//	/probe?k=K   sets key K
//	/count       writes how many keys starting with "k" the session holds
type contender struct {
	name    string
	handler http.Handler
	close   func()
}

const (
	attrSize = 64
	idle     = time.Hour
)

var (
	counterKey = sessionkit.NewKey[int]("counter")
	readKey    = sessionkit.NewKey[string](readName)
)

// readName is the attribute the read-only request reads; /setup writes it
// whenever N ≥ 1.
var readName = attrName(0)

func attrValue() string { return strings.Repeat("v", attrSize) }

func attrName(i int) string { return fmt.Sprintf("attr%04d", i) }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func fail(w http.ResponseWriter, err error) bool {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	return false
}

// --- sessionkit ---------------------------------------------------------

func newSessionkit(addr string) *contender {
	client := newGoRedis(addr)
	m, err := sessionkit.New(&sessionkit.Options{Store: redishash.New(client, nil), IdleTimeout: idle})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/setup", func(w http.ResponseWriter, r *http.Request) {
		n := atoi(r.URL.Query().Get("n"))
		values := make(map[string]any, n)
		for i := range n {
			values[attrName(i)] = attrValue()
		}
		values["counter"] = 0
		fail(w, m.Session(r.Context()).SetMany(r.Context(), values))
	})
	mux.HandleFunc("/rw", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r.Context())
		n, _, err := counterKey.Get(r.Context(), s)
		if fail(w, err) {
			return
		}
		fail(w, counterKey.Set(r.Context(), s, n+1))
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		_, _, err := readKey.Get(r.Context(), m.Session(r.Context()))
		fail(w, err)
	})
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		_, err := m.Session(r.Context()).Incr(r.Context(), "counter", 1)
		fail(w, err)
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		fail(w, m.Session(r.Context()).Set(r.Context(), r.URL.Query().Get("k"), 1))
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		keys, err := m.Session(r.Context()).Keys(r.Context())
		if !fail(w, err) {
			fmt.Fprint(w, countK(keys))
		}
	})
	return &contender{name: "sessionkit", handler: m.Middleware(mux), close: func() { client.Close() }}
}

func countK(keys []string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, "k") {
			n++
		}
	}
	return n
}

// --- raw go-redis floor ----------------------------------------------------

// newRawFloor sends the very commands sessionkit's redishash sends on a
// session the Manager stored (the fast path: a pipeline for a read, a
// MULTI for a write and an Incr), with the same arguments and in the same
// round trips, from a bare handler: no middleware, no token check or
// hashing, no codec. It checks the deadline and idle timeout read back, as
// redishash does, and sends no fallback.
func newRawFloor(addr string) *contender {
	client := newGoRedis(addr)
	script := func(op string) *redis.Script { return testhook.RedisScript(op).(*redis.Script) }
	create, keys := script("create"), script("keys")
	maxFields := int64(sessionkit.DefaultMaxFields)
	type rec struct {
		key      string
		deadline int64
	}
	sessions := sync.Map{} // cookie value -> rec
	session := func(r *http.Request) rec {
		if c, err := r.Cookie("raw"); err == nil {
			if v, ok := sessions.Load(c.Value); ok {
				return v.(rec)
			}
		}
		return rec{key: "raw:{none}"}
	}
	idleMS := idle.Milliseconds()
	read := func(r *http.Request, s rec, name string) (string, error) {
		pipe := client.Pipeline()
		hm := pipe.HMGet(r.Context(), s.key, "__sk_d", "__sk_i", name)
		pipe.PExpire(r.Context(), s.key, idle)
		pipe.Do(r.Context(), "pexpireat", s.key, s.deadline, "lt")
		if _, err := pipe.Exec(r.Context()); err != nil {
			return "", err
		}
		v := hm.Val()
		if d, _ := v[0].(string); d != strconv.FormatInt(s.deadline, 10) {
			return "", errors.New("no session")
		}
		str, _ := v[2].(string)
		return str, nil
	}
	write := func(r *http.Request, s rec, incr bool, name, value string) error {
		tx := client.TxPipeline()
		hm := tx.HMGet(r.Context(), s.key, "__sk_d", "__sk_i", name)
		if incr {
			tx.HIncrBy(r.Context(), s.key, name, 1)
		} else {
			tx.HSet(r.Context(), s.key, name, value)
		}
		tx.PExpire(r.Context(), s.key, idle)
		tx.Do(r.Context(), "pexpireat", s.key, s.deadline, "lt")
		hl := tx.HLen(r.Context(), s.key)
		if _, err := tx.Exec(r.Context()); err != nil {
			return err
		}
		if d, _ := hm.Val()[0].(string); d != strconv.FormatInt(s.deadline, 10) || hl.Val()-3 > maxFields {
			return errors.New("no session")
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/setup", func(w http.ResponseWriter, r *http.Request) {
		n := atoi(r.URL.Query().Get("n"))
		token := fmt.Sprintf("t%d", time.Now().UnixNano())
		created := time.Now().UnixMilli()
		lifetime := (24 * time.Hour).Milliseconds()
		args := []any{idleMS, lifetime, created, "counter", "0"}
		for i := range n {
			args = append(args, attrName(i), `"`+attrValue()+`"`)
		}
		s := rec{key: "raw:{" + token + "}", deadline: created + lifetime}
		if !fail(w, create.Run(r.Context(), client, []string{s.key}, args...).Err()) {
			sessions.Store(token, s)
			http.SetCookie(w, &http.Cookie{Name: "raw", Value: token})
		}
	})
	mux.HandleFunc("/rw", func(w http.ResponseWriter, r *http.Request) {
		s := session(r)
		v, err := read(r, s, "counter")
		if fail(w, err) {
			return
		}
		fail(w, write(r, s, false, "counter", strconv.Itoa(atoi(v)+1)))
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		_, err := read(r, session(r), readName)
		fail(w, err)
	})
	mux.HandleFunc("/incr", func(w http.ResponseWriter, r *http.Request) {
		fail(w, write(r, session(r), true, "counter", ""))
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		fail(w, write(r, session(r), false, r.URL.Query().Get("k"), "1"))
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		ks, err := keys.Run(r.Context(), client, []string{session(r).key}).StringSlice()
		if !fail(w, err) {
			fmt.Fprint(w, countK(ks))
		}
	})
	return &contender{name: "raw-floor", handler: mux, close: func() { client.Close() }}
}

// --- alexedwards/scs v2, goredisstore ------------------------------------------

func newSCS(addr string) *contender {
	client := newGoRedis(addr)
	sm := scs.New()
	sm.Store = goredisstore.New(client)
	sm.IdleTimeout = idle
	sm.Lifetime = 24 * time.Hour
	mux := http.NewServeMux()
	mux.HandleFunc("/setup", func(w http.ResponseWriter, r *http.Request) {
		for i := range atoi(r.URL.Query().Get("n")) {
			sm.Put(r.Context(), attrName(i), attrValue())
		}
		sm.Put(r.Context(), "counter", 0)
	})
	rw := func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "counter", sm.GetInt(r.Context(), "counter")+1)
	}
	mux.HandleFunc("/rw", rw)
	mux.HandleFunc("/incr", rw)
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		_ = sm.GetString(r.Context(), readName)
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), r.URL.Query().Get("k"), 1)
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, countK(sm.Keys(r.Context())))
	})
	return &contender{name: "scs", handler: sm.LoadAndSave(mux), close: func() { client.Close() }}
}

// --- gorilla/sessions, boj/redistore ----------------------------------------------

func newGorilla(addr string) *contender {
	pool := &redigo.Pool{MaxIdle: 32, Dial: func() (redigo.Conn, error) {
		return redigo.Dial("tcp", addr, redigo.DialNetDial(func(network, a string) (net.Conn, error) {
			return countingDial(context.Background(), network, a)
		}))
	}}
	store, err := redistore.NewRediStoreWithPool(pool, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	store.SetMaxLength(0) // no 4 KiB cap: sessions here reach 70 KiB
	store.SetMaxAge(int(idle / time.Second))
	const name = "gsess"
	handle := func(f func(s *gsessions.Session, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, name)
			if fail(w, err) {
				return
			}
			f(s, r)
			fail(w, s.Save(r, w))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/setup", handle(func(s *gsessions.Session, r *http.Request) {
		for i := range atoi(r.URL.Query().Get("n")) {
			s.Values[attrName(i)] = attrValue()
		}
		s.Values["counter"] = 0
	}))
	rw := handle(func(s *gsessions.Session, _ *http.Request) {
		n, _ := s.Values["counter"].(int)
		s.Values["counter"] = n + 1
	})
	mux.HandleFunc("/rw", rw)
	mux.HandleFunc("/incr", rw)
	// A read does not Save: with gorilla only a Save writes (and refreshes
	// the expiry).
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, name)
		if !fail(w, err) {
			_, _ = s.Values[readName].(string)
		}
	})
	mux.HandleFunc("/probe", handle(func(s *gsessions.Session, r *http.Request) {
		s.Values[r.URL.Query().Get("k")] = 1
	}))
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		s, err := store.Get(r, name)
		if fail(w, err) {
			return
		}
		var keys []string
		for k := range s.Values {
			if ks, ok := k.(string); ok {
				keys = append(keys, ks)
			}
		}
		fmt.Fprint(w, countK(keys))
	})
	return &contender{name: "gorilla", handler: mux, close: func() { store.Close() }}
}

// --- kataras/iris v12 sessions, sessiondb/redis ---------------------------------

func newIris(addr string) *contender {
	client := newGoRedis(addr)
	db := irisredis.New(irisredis.Config{Addr: addr, Prefix: "iris:", Driver: irisredis.GoRedis().SetClient(client)})
	sess := irissessions.New(irissessions.Config{Cookie: "irissess", Expires: idle, AllowReclaim: true})
	sess.UseDatabase(db)
	app := iris.New()
	app.Logger().SetLevel("disable")
	app.Use(sess.Handler())
	app.Get("/setup", func(ctx iris.Context) {
		s := irissessions.Get(ctx)
		for i := range ctx.URLParamIntDefault("n", 0) {
			s.Set(attrName(i), attrValue())
		}
		s.Set("counter", 0)
	})
	rw := func(ctx iris.Context) {
		s := irissessions.Get(ctx)
		s.Set("counter", s.GetIntDefault("counter", 0)+1)
	}
	app.Get("/rw", rw)
	app.Get("/incr", rw)
	app.Get("/read", func(ctx iris.Context) {
		_ = irissessions.Get(ctx).GetString(readName)
	})
	app.Get("/probe", func(ctx iris.Context) {
		irissessions.Get(ctx).Set(ctx.URLParam("k"), 1)
	})
	app.Get("/count", func(ctx iris.Context) {
		n := 0
		irissessions.Get(ctx).Visit(func(k string, _ any) {
			if strings.HasPrefix(k, "k") {
				n++
			}
		})
		ctx.WriteString(strconv.Itoa(n))
	})
	if err := app.Build(); err != nil {
		panic(err)
	}
	return &contender{name: "iris", handler: app, close: func() { client.Close() }}
}
