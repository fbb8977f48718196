package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// newPrototype is not a library: it measures the design docs/performance.md
// proposes for closing the gap to iris, with the same guarantees as
// redishash. The client knows each session's deadline and idle timeout
// before its first operation (the design binds them into the storage key), so
//
//   - a read is a pipeline of plain commands, HMGET and PEXPIRE with the TTL
//     computed by the client, and
//   - a write is a two-call script: PEXPIRE as the existence guard and the
//     refresh at once, then HSET.
//
// Here every session gets the same policy, known in advance. Run it with
// -prototype.
func newPrototype(addr string) *contender {
	client := newGoRedis(addr)
	write := redis.NewScript(`
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1`)
	key := func(r *http.Request) string {
		c, err := r.Cookie("proto")
		if err != nil {
			return ""
		}
		return "proto:" + c.Value
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/setup", func(w http.ResponseWriter, r *http.Request) {
		token := fmt.Sprintf("t%d", time.Now().UnixNano())
		args := []any{"counter", "0"}
		for i := range atoi(r.URL.Query().Get("n")) {
			args = append(args, attrName(i), `"`+attrValue()+`"`)
		}
		pipe := client.TxPipeline()
		pipe.HSet(r.Context(), "proto:"+token, args...)
		pipe.PExpire(r.Context(), "proto:"+token, idle)
		if _, err := pipe.Exec(r.Context()); !fail(w, err) {
			http.SetCookie(w, &http.Cookie{Name: "proto", Value: token})
		}
	})
	mux.HandleFunc("/bench", func(w http.ResponseWriter, r *http.Request) {
		k := key(r)
		pipe := client.Pipeline()
		get := pipe.HMGet(r.Context(), k, "counter")
		pipe.PExpire(r.Context(), k, idle)
		if _, err := pipe.Exec(r.Context()); fail(w, err) {
			return
		}
		s, _ := get.Val()[0].(string)
		fail(w, write.Run(r.Context(), client, []string{k}, idle.Milliseconds(), "counter", strconv.Itoa(atoi(s)+1)).Err())
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		fail(w, write.Run(r.Context(), client, []string{key(r)}, idle.Milliseconds(), r.URL.Query().Get("k"), "1").Err())
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		ks, err := client.HKeys(r.Context(), key(r)).Result()
		if !fail(w, err) {
			fmt.Fprint(w, countK(ks))
		}
	})
	return &contender{name: "prototype", handler: mux, close: func() { client.Close() }}
}
