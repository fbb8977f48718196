// Package redishash is the primary sessionkit.Store: each session is one
// Redis hash with one field per session key. A read fetches only the fields
// asked for and a write touches only the fields written, so the cost of a
// request does not grow with the session, and requests that change
// different keys of one session never overwrite each other.
//
// It takes a redis.UniversalClient, so one server, Sentinel and Cluster run
// the same code. It needs Redis 7.0+ or Valkey 7.2+ (PEXPIREAT … LT).
//
// # Key layout
//
// A session lives under the storage key the Manager chooses (a prefix, the
// session's hash tag and a hash of the token, e.g. "session:{AbCd}3q2-…"),
// without the expiry policy the key ends with (sessionkit.KeyPolicy; the
// hash covers it), as a hash:
//
//	HGETALL session:{AbCd}3q2-…
//	__sk_d  1764260238123   deadline: creation + lifetime, Unix ms
//	__sk_i  1800000         idle timeout, ms
//	__sk_c  1764173838123   creation, Unix ms
//	cart    {"items":3}     one field per session key, the codec's bytes
//	user    "ana"
//
// The three __sk_ fields are the metadata; session keys cannot start with
// that prefix (sessionkit.ReservedPrefix). Times are Redis's own clock
// (TIME, read by Create and SetExpiry), never the application servers', so
// clock skew between them moves nothing. The key's TTL is always
// min(idle, deadline - now): every operation sets it again in the same
// script, with PEXPIRE key idle then PEXPIREAT key deadline LT, so a key
// never lives without a TTL and never past its deadline. Values are the
// codec's bytes (JSON by default), so `HSET session:{AbCd}3q2-… user '"bob"'`
// (or plain `bob`) edits a session by hand.
//
// Rename (Session.Renew) moves the hash to the new key with RENAME (same
// hash tag, same Cluster slot) and leaves at the old key a marker, a hash
// naming the new key, with its own expiry time:
//
//	HGETALL session:{AbCd}old…
//	__sk_r  session:{AbCd}3q2-…
//	__sk_x  1764173898123
//
// It expires after sessionkit.RenewMarkerTTL (1 min), or with the record if
// that comes first. Every operation on it returns sessionkit.ErrRenewed
// except Destroy, which removes it and the record it leads to.
//
// A key with missing or malformed metadata, or of another type than a hash,
// is corrupt: every operation reads it as sessionkit.ErrNotFound and
// deletes it.
//
// Small sessions stay in Redis's compact listpack encoding: up to
// hash-max-listpack-entries fields (128 by default, metadata included) of
// values up to hash-max-listpack-value bytes (64 by default; a JSON string
// of 62 characters already reaches it). docs/backends.md has the measured
// memory per session.
//
// # Users
//
// A session bound to a user (sessionkit.Users) has one more metadata field,
// its binding: the user's index key, public ID, user ID, device and IP,
// joined by newlines. Field counts (Len, the limit of Set and Incr) leave
// it out, and GetAll and Keys never return it:
//
//	__sk_b  session:{Xy9a}u:Kq…\nPUBLIC-ID\nana\nFirefox/140\n192.0.2.1
//
// The user's index is a sorted set under the key the Manager chooses (the
// prefix, the user's hash tag, "u:" and a hash of the user ID): one member
// per bound session, its current key, scored by its deadline (Unix ms). It
// expires with the latest deadline it lists:
//
//	ZRANGE session:{Xy9a}u:Kq… 0 -1 WITHSCORES
//	session:{Xy9a}3q2-…  1764260238123
//
// A user's sessions carry the user's hash tag, so the index and its
// members share one Cluster slot: the scripts on the index read and delete
// its members, and Rename, SetExpiry and Destroy of a bound record update
// its index, without declaring those keys (Redis 7 allows undeclared keys
// of the script's own slot). Entries of records that are gone are removed
// when the index is next listed or revoked; a Bind checks every entry under a cap (Binding.Max), and two
// at random otherwise.
//
// # Round trips
//
// On a key whose policy matches its record (every key of a token the
// Manager issued, until SetExpiry changes the policy and issues another),
// Get is one pipeline of plain commands (HMGET, PEXPIRE, PEXPIREAT … LT),
// and Set and Incr one MULTI: a script costs Redis about 6 µs more per
// call. Anything else they find (no record, a marker, a changed policy)
// costs a second round trip, the operation's script, which answers and
// puts right what the plain commands did (fast.go). Every other operation
// is one EVALSHA of a script that touches only the keys it declares (an
// EVAL once per script and server, when Redis answers NOSCRIPT). Rename is one script on both keys. Destroy is one script, plus
// one more per marker it follows: two round trips for a logout through a
// token renewed less than a minute ago. A bound session costs what an
// unbound one does. Bind is two scripts (one on the old key's slot, one on
// the user's), UserSessions and Revoke one on the index; Scan, Count and
// DestroyAll one SCAN per batch plus one pipeline of one-key scripts.
// docs/redis.md lists the commands each operation runs on the server.
//
// # Memory
//
// Under maxmemory-policy noeviction, a write that grows a record (Create,
// Set, Incr, Rename) fails with sessionkit.ErrUnavailable, wrapping Redis's
// OOM error, and changes nothing once Redis is over maxmemory; reads, Pop,
// Delete, Clear and Destroy keep working. docs/operations.md says which eviction
// policies are safe for sessions.
//
// # Errors
//
// A missing, expired or corrupt session is sessionkit.ErrNotFound, a key
// left by Rename is sessionkit.ErrRenewed. Every error of the client wraps
// sessionkit.ErrUnavailable and the client's error (a redis.Error, a
// net.Error, …); a done context wraps the context's error.
package redishash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// The metadata fields of every session hash, and the field of a marker.
const (
	fieldDeadline = sessionkit.ReservedPrefix + "d" // creation + lifetime, Unix ms on Redis's clock
	fieldIdle     = sessionkit.ReservedPrefix + "i" // idle timeout, ms
	fieldCreated  = sessionkit.ReservedPrefix + "c" // creation, Unix ms on Redis's clock
	fieldRenamed  = sessionkit.ReservedPrefix + "r" // in a marker: the key the record moved to
	fieldBinding  = sessionkit.ReservedPrefix + "b" // in a bound record: index, ID, user, device, IP

	fieldMarkerExpiry = sessionkit.ReservedPrefix + "x" // in a marker: its expiry time, Unix ms
)

// Options configures a Store. It has no settings today (the clock is
// Redis's); nil and the zero value mean defaults.
type Options struct{}

// Store is a sessionkit.Store on Redis hashes.
type Store struct {
	client redis.UniversalClient
	fast   fastState
}

var _ sessionkit.Store = (*Store)(nil)

// New returns a Store on client; opts may be nil. The Store does not own the
// client: closing it is the caller's job.
func New(client redis.UniversalClient, opts *Options) *Store {
	return &Store{client: client}
}

func wrap(ctx context.Context, op string, err error) error {
	return driver.Wrap(ctx, "redishash: "+op, err)
}

// ms is d in whole milliseconds, at least 1: a positive duration never
// becomes an expiry of 0, which would delete the key at once.
func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// checkNames refuses field names that would overwrite the metadata.
func checkNames(names []string) error {
	for _, n := range names {
		if strings.HasPrefix(n, sessionkit.ReservedPrefix) {
			return sessionkit.ErrInvalidKey
		}
	}
	return nil
}

// checkFields refuses field names that would overwrite the metadata.
func checkFields(fields []sessionkit.Field) error {
	for _, f := range fields {
		if strings.HasPrefix(f.Name, sessionkit.ReservedPrefix) {
			return sessionkit.ErrInvalidKey
		}
	}
	return nil
}

// pairs appends field, value, … to args.
func pairs(args []any, fields []sessionkit.Field) ([]any, error) {
	for _, f := range fields {
		if strings.HasPrefix(f.Name, sessionkit.ReservedPrefix) {
			return nil, sessionkit.ErrInvalidKey
		}
		args = append(args, f.Name, f.Value)
	}
	return args, nil
}

// boxedMaxFields is sessionkit.DefaultMaxFields as an argument: an int
// over 255 put in an interface costs an allocation, and most Managers pass
// the default to every Set.
var boxedMaxFields any = sessionkit.DefaultMaxFields

func boxMaxFields(n int) any {
	if n == sessionkit.DefaultMaxFields {
		return boxedMaxFields
	}
	return n
}

// shas holds each script's hash as an argument (*redis.Script → any), so
// that an EVALSHA does not box it again.
var shas sync.Map

func sha(sc *redis.Script) any {
	if v, ok := shas.Load(sc); ok {
		return v
	}
	v, _ := shas.LoadOrStore(sc, any(sc.Hash()))
	return v
}

// command returns the EVALSHA of sc on one key, with room for n arguments
// more: the slice the client sends, built once at its final size.
func command(sc *redis.Script, key string, n int) []any {
	argv := make([]any, 4, 4+n)
	argv[0], argv[1], argv[2], argv[3] = "evalsha", sha(sc), 1, key
	return argv
}

// errRetry is Create's replyRetry: it removed a corrupt record in its way.
var errRetry = errors.New("redishash: retry")

// Incr's refusals, nothing written.
var (
	errNotInt   = fmt.Errorf("%w: redishash: the field does not hold an int64", sessionkit.ErrDecode)
	errOverflow = fmt.Errorf("%w: redishash: the result would overflow int64", sessionkit.ErrDecode)
)

// run runs a script and turns its reply codes into errors.
func (s *Store) run(ctx context.Context, op string, sc *redis.Script, keys []string, args ...any) (any, error) {
	argv := make([]any, 3, 3+len(keys)+len(args))
	argv[0], argv[1], argv[2] = "evalsha", sha(sc), len(keys)
	for _, k := range keys {
		argv = append(argv, k)
	}
	return s.eval(ctx, op, sc, append(argv, args...), len(keys))
}

// eval sends argv, an EVALSHA of sc (see command), and turns the reply
// codes into errors. It does what sc.Run does without Run's copies of the
// keys and arguments: EVALSHA, then EVAL when Redis answers NOSCRIPT.
func (s *Store) eval(ctx context.Context, op string, sc *redis.Script, argv []any, nkeys int) (any, error) {
	cmd := redis.NewCmd(ctx, argv...)
	if nkeys > 0 {
		cmd.SetFirstKeyPos(3)
	}
	_ = s.client.Process(ctx, cmd)
	v, err := cmd.Result()
	if err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")) {
		keys := make([]string, nkeys)
		for i := range keys {
			keys[i], _ = argv[3+i].(string)
		}
		v, err = sc.Eval(ctx, s.client, keys, argv[3+nkeys:]...).Result()
	}
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	n, ok := v.(int64)
	if !ok || n >= 0 {
		return v, nil
	}
	switch n {
	case replyNotFound:
		return nil, sessionkit.ErrNotFound
	case replyTooMany:
		return nil, sessionkit.ErrTooManyFields
	case replyRenewed:
		return nil, sessionkit.ErrRenewed
	case replyExists:
		return nil, sessionkit.ErrExists
	case replyRetry:
		return nil, errRetry
	case replyNotInt:
		return nil, errNotInt
	case replyOverflow:
		return nil, errOverflow
	case replyCap:
		return nil, sessionkit.ErrTooManySessions
	case replySkew:
		return nil, sessionkit.ErrClockSkew
	case replyInFlight:
		return nil, errInFlight
	}
	return nil, wrap(ctx, op, fmt.Errorf("unexpected reply %d", n))
}

// status runs a script whose result is an integer.
func (s *Store) status(ctx context.Context, op string, sc *redis.Script, key string, args ...any) (int64, error) {
	return s.statusOf(ctx, op, sc, append(command(sc, key, len(args)), args...))
}

// statusOf sends argv (see command) to a script whose result is an integer.
func (s *Store) statusOf(ctx context.Context, op string, sc *redis.Script, argv []any) (int64, error) {
	v, err := s.eval(ctx, op, sc, argv, 1)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, wrap(ctx, op, fmt.Errorf("unexpected reply %T", v))
	}
	return n, nil
}

// list runs a script whose result is an array.
func (s *Store) list(ctx context.Context, op string, sc *redis.Script, key string, args ...any) ([]any, error) {
	return s.listOf(ctx, op, sc, append(command(sc, key, len(args)), args...))
}

// listOf sends argv (see command) to a script whose result is an array.
func (s *Store) listOf(ctx context.Context, op string, sc *redis.Script, argv []any) ([]any, error) {
	v, err := s.eval(ctx, op, sc, argv, 1)
	if err != nil {
		return nil, err
	}
	vals, ok := v.([]any)
	if !ok {
		return nil, wrap(ctx, op, fmt.Errorf("unexpected reply %T", v))
	}
	return vals, nil
}

// Create is sessionkit.Store.Create: one script that stamps the creation time
// and deadline on Redis's clock (TIME). A corrupt key in the way is removed
// first, at the cost of a second round trip.
func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	var created any = ""
	key, p, ok := sessionkit.KeyPolicy(key)
	if ok {
		created = p.Created
	}
	argv, err := pairs(append(command(createScript, key, 3+2*len(fields)), ms(exp.Idle), ms(exp.Absolute), created), fields)
	if err != nil {
		return err
	}
	// A corrupt record under the key is removed by the first run; the
	// second creates. Only a key corrupted again in between gets a third.
	for range 3 {
		if _, err = s.statusOf(ctx, "create", createScript, argv); !errors.Is(err, errRetry) {
			return err
		}
	}
	return wrap(ctx, "create", errors.New("the key was corrupted again at every try"))
}

// Get is sessionkit.Store.Get: one script, names read in HMGET chunks.
func (s *Store) Get(ctx context.Context, key string, fields ...string) ([][]byte, error) {
	key, p, ok := sessionkit.KeyPolicy(key)
	if ok {
		if out, done, err := s.fastGet(ctx, key, p, fields); done {
			return out, err
		}
		ctx = context.WithoutCancel(ctx) // the script must put right what the commands did (see fast.go)
	}
	argv := command(getScript, key, len(fields))
	for _, f := range fields {
		argv = append(argv, f)
	}
	vals, err := s.listOf(ctx, "get", getScript, argv)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i] = []byte(str)
		}
	}
	return out, nil
}

// GetAll is sessionkit.Store.GetAll: one script (HGETALL), metadata left out.
func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	key = base(key)
	vals, err := s.list(ctx, "getall", getAllScript, key)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		k, _ := vals[i].(string)
		if strings.HasPrefix(k, sessionkit.ReservedPrefix) {
			continue
		}
		v, _ := vals[i+1].(string)
		out[k] = []byte(v)
	}
	return out, nil
}

// Keys is sessionkit.Store.Keys: one script (HKEYS), metadata left out.
func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	key = base(key)
	vals, err := s.list(ctx, "keys", keysScript, key)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if k, _ := v.(string); !strings.HasPrefix(k, sessionkit.ReservedPrefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Has is sessionkit.Store.Has: Get's fast path on a key with a policy,
// else one script.
func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	key, p, ok := sessionkit.KeyPolicy(key)
	if ok {
		if out, done, err := s.fastGet(ctx, key, p, []string{name}); done {
			return err == nil && out[0] != nil, err
		}
		ctx = context.WithoutCancel(ctx) // as in Get
	}
	n, err := s.status(ctx, "has", hasScript, key, name)
	return n == 1, err
}

// Len is sessionkit.Store.Len: one script (HLEN less the metadata).
func (s *Store) Len(ctx context.Context, key string) (int, error) {
	key = base(key)
	n, err := s.status(ctx, "len", lenScript, key)
	return int(n), err
}

// Set is sessionkit.Store.Set: one script whose first write is the HSET, so
// Redis refuses it whole when over maxmemory.
func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	key, p, ok := sessionkit.KeyPolicy(key)
	if ok && len(fields) > 0 {
		if err := checkFields(fields); err != nil {
			return err
		}
		return s.fastSet(ctx, key, p, fields, maxFields)
	}
	argv, err := pairs(append(command(setScript, key, 1+2*len(fields)), boxMaxFields(maxFields)), fields)
	if err != nil {
		return err
	}
	_, err = s.statusOf(ctx, "set", setScript, argv)
	return err
}

// Incr is sessionkit.Store.Incr: one script whose first write is HINCRBY
// (deny-oom), so Redis refuses it whole when over maxmemory.
func (s *Store) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	key, p, ok := sessionkit.KeyPolicy(key)
	if strings.HasPrefix(name, sessionkit.ReservedPrefix) {
		return 0, sessionkit.ErrInvalidKey
	}
	if ok {
		if n, done, err := s.fastIncr(ctx, key, p, name, delta, maxFields); done {
			return n, err
		}
		ctx = context.WithoutCancel(ctx) // as in Get
	}
	v, err := s.eval(ctx, "incr", incrScript, append(command(incrScript, key, 3), name, delta, boxMaxFields(maxFields)), 1)
	if err != nil {
		return 0, err
	}
	str, ok := v.(string)
	if !ok {
		return 0, wrap(ctx, "incr", fmt.Errorf("unexpected reply %T", v))
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return 0, wrap(ctx, "incr", err)
	}
	return n, nil
}

// Pop is sessionkit.Store.Pop: one script; it works when Redis is out of
// memory, as Delete does.
func (s *Store) Pop(ctx context.Context, key, name string) ([]byte, error) {
	key = base(key)
	if strings.HasPrefix(name, sessionkit.ReservedPrefix) {
		return nil, sessionkit.ErrInvalidKey
	}
	vals, err := s.list(ctx, "pop", popScript, key, name)
	if err != nil || len(vals) == 0 {
		return nil, err
	}
	str, ok := vals[0].(string)
	if !ok {
		return nil, wrap(ctx, "pop", fmt.Errorf("unexpected reply %T", vals[0]))
	}
	return []byte(str), nil
}

// Delete is sessionkit.Store.Delete: one script, names deleted in HDEL chunks.
func (s *Store) Delete(ctx context.Context, key string, fields ...string) error {
	key = base(key)
	if err := checkNames(fields); err != nil {
		return err
	}
	argv := command(deleteScript, key, len(fields))
	for _, f := range fields {
		argv = append(argv, f)
	}
	_, err := s.statusOf(ctx, "delete", deleteScript, argv)
	return err
}

// Clear is sessionkit.Store.Clear: one script that rewrites the hash with
// only its metadata, whatever the session's size.
func (s *Store) Clear(ctx context.Context, key string) error {
	key = base(key)
	_, err := s.status(ctx, "clear", clearScript, key)
	return err
}

// Touch is sessionkit.Store.Touch: one script; the time left is PTTL's.
func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	key = base(key)
	n, err := s.status(ctx, "touch", touchScript, key)
	return time.Duration(n) * time.Millisecond, err
}

// SetExpiry is sessionkit.Store.SetExpiry: one script; the new deadline
// counts from the creation time, on Redis's clock.
func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	key = base(key)
	_, err := s.status(ctx, "setexpiry", setExpiryScript, key, ms(exp.Idle), ms(exp.Absolute))
	return err
}

// Rename is one script on both keys, which the Manager gives the same hash
// tag: on Redis Cluster, keys in different slots fail with CROSSSLOT.
func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	oldKey, newKey = base(oldKey), base(newKey)
	_, err := s.run(ctx, "rename", renameScript, []string{oldKey, newKey}, sessionkit.RenewMarkerTTL.Milliseconds())
	return err
}

// Destroy removes the key and, while it finds markers, the keys they name:
// one round trip per key.
func (s *Store) Destroy(ctx context.Context, key string) error {
	key = base(key)
	followed := "0"
	for key != "" {
		next, err := destroyScript.Run(ctx, s.client, []string{key}, followed).Text()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return wrap(ctx, "destroy", err)
		}
		key, followed = next, "1"
	}
	return nil
}
