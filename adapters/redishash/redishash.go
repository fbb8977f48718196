// Package redishash is the primary sessionkit.Store: each session is one
// Redis hash with one field per session key. A read fetches only the fields
// asked for and a write touches only the fields written, so the cost of a
// request does not grow with the session, and requests that change
// different keys of one session never overwrite each other.
//
// It takes a redis.UniversalClient, so one server, Sentinel and Cluster run
// the same code. Redis 6.2+ and Valkey are supported.
//
// # Key layout
//
// A session lives under the storage key the Manager chooses (a prefix and a
// hash of the token, e.g. "session:3q2-…"), as a hash:
//
//	HGETALL session:3q2-…
//	__sk_d  1764260238123   deadline: creation + lifetime, Unix ms
//	__sk_i  1800000         idle timeout, ms
//	__sk_c  1764173838123   creation, Unix ms
//	cart    {"items":3}     one field per session key, the codec's bytes
//	user    "ana"
//
// The three __sk_ fields are the metadata; session keys cannot start with
// that prefix (sessionkit.ReservedPrefix). The key's TTL is always
// min(idle, deadline - now): every operation sets it again in the same
// script, so a key never lives without a TTL and never past its deadline.
// Times come from the Store's clock (Options.Clock, the application
// servers' clocks, kept in step by NTP), not from Redis's TIME, which
// measured as costly as the rest of a script. Values are the codec's bytes
// (JSON by default), so `HSET session:3q2-… user '"bob"'` (or plain `bob`)
// edits a session by hand.
//
// Small sessions stay in Redis's compact listpack encoding: up to
// hash-max-listpack-entries fields (128 by default, metadata included) of
// values up to hash-max-listpack-value bytes (64 by default; a JSON string
// of 62 characters already reaches it). docs/backends.md has the measured
// memory per session.
//
// # Round trips
//
// Every operation is one EVALSHA of a script that touches only the
// session's key (an EVAL once per script and server, when Redis answers
// NOSCRIPT), and Destroy is one DEL. Rename, used by Session.Renew, is the
// exception: three round trips (read the hash, write it under the new key,
// DEL the old), because the two keys are in different Cluster slots. A write
// to the old key that lands between the first and the last step is lost;
// Renew runs at login, when that does not matter.
//
// # Errors
//
// A missing or expired session is sessionkit.ErrNotFound. Every error of the
// client wraps sessionkit.ErrUnavailable and the client's error (a
// redis.Error, a net.Error, …); a done context wraps the context's error.
package redishash

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// The metadata fields of every session hash.
const (
	fieldDeadline = sessionkit.ReservedPrefix + "d" // creation + lifetime, Unix ms
	fieldIdle     = sessionkit.ReservedPrefix + "i" // idle timeout, ms
	fieldCreated  = sessionkit.ReservedPrefix + "c" // creation, Unix ms
	metaCount     = "3"
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Clock returns the current time. Default time.Now. The absolute
	// lifetime is measured on this clock (the application servers', kept
	// in step by NTP); the idle timeout is a Redis TTL.
	Clock func() time.Time
}

// Store is a sessionkit.Store on Redis hashes.
type Store struct {
	client redis.UniversalClient
	now    func() time.Time
}

var _ sessionkit.Store = (*Store)(nil)

// New returns a Store on client; opts may be nil. The Store does not own the
// client: closing it is the caller's job.
func New(client redis.UniversalClient, opts *Options) *Store {
	s := &Store{client: client, now: time.Now}
	if opts != nil && opts.Clock != nil {
		s.now = opts.Clock
	}
	return s
}

// args starts a script's ARGV with the clock, with room for n more.
func (s *Store) args(n int) []any {
	return append(make([]any, 0, 1+n), s.now().UnixMilli())
}

func wrap(op string, err error) error {
	return sessionkit.BackendError("redishash: "+op, err)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// checkNames refuses field names that would overwrite the metadata.
func checkNames(names []string) error {
	for _, n := range names {
		if strings.HasPrefix(n, sessionkit.ReservedPrefix) {
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

// status runs a script that answers an integer, where -1 means no live record.
func (s *Store) status(ctx context.Context, op string, sc *redis.Script, key string, args ...any) (int64, error) {
	n, err := sc.Run(ctx, s.client, []string{key}, args...).Int64()
	if err != nil {
		return 0, wrap(op, err)
	}
	if n == replyNotFound {
		return 0, sessionkit.ErrNotFound
	}
	return n, nil
}

// list runs a script that answers an array, or nil when there is no live record.
func (s *Store) list(ctx context.Context, op string, sc *redis.Script, key string, args ...any) ([]any, error) {
	vals, err := sc.Run(ctx, s.client, []string{key}, args...).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, sessionkit.ErrNotFound
	}
	if err != nil {
		return nil, wrap(op, err)
	}
	return vals, nil
}

func (s *Store) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	args, err := pairs(append(s.args(2+2*len(fields)), ms(exp.Idle), ms(exp.Absolute)), fields)
	if err != nil {
		return err
	}
	n, err := createScript.Run(ctx, s.client, []string{key}, args...).Int64()
	if err != nil {
		return wrap("create", err)
	}
	if n == replyExists {
		return sessionkit.ErrExists
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	args := s.args(len(names))
	for _, n := range names {
		args = append(args, n)
	}
	vals, err := s.list(ctx, "get", getScript, key, args...)
	if err != nil {
		return nil, err
	}
	vals = vals[2:] // the deadline and idle timeout came first
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i] = []byte(str)
		}
	}
	return out, nil
}

func (s *Store) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	vals, err := s.list(ctx, "getall", getAllScript, key, s.args(0)...)
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

func (s *Store) Keys(ctx context.Context, key string) ([]string, error) {
	vals, err := s.list(ctx, "keys", keysScript, key, s.args(0)...)
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

func (s *Store) Has(ctx context.Context, key, name string) (bool, error) {
	n, err := s.status(ctx, "has", hasScript, key, append(s.args(1), name)...)
	return n == 1, err
}

func (s *Store) Len(ctx context.Context, key string) (int, error) {
	n, err := s.status(ctx, "len", lenScript, key, s.args(0)...)
	return int(n), err
}

func (s *Store) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	args, err := pairs(append(s.args(1+2*len(fields)), maxFields), fields)
	if err != nil {
		return err
	}
	n, err := s.status(ctx, "set", setScript, key, args...)
	if err == nil && n == replyTooMany {
		return sessionkit.ErrTooManyFields
	}
	return err
}

func (s *Store) Delete(ctx context.Context, key string, names ...string) error {
	if err := checkNames(names); err != nil {
		return err
	}
	if len(names) == 0 {
		_, err := s.Touch(ctx, key)
		return err
	}
	args := s.args(len(names))
	for _, n := range names {
		args = append(args, n)
	}
	_, err := s.status(ctx, "delete", deleteScript, key, args...)
	return err
}

func (s *Store) Clear(ctx context.Context, key string) error {
	_, err := s.status(ctx, "clear", clearScript, key, s.args(0)...)
	return err
}

func (s *Store) Touch(ctx context.Context, key string) (time.Duration, error) {
	n, err := s.status(ctx, "touch", touchScript, key, s.args(0)...)
	return time.Duration(n) * time.Millisecond, err
}

func (s *Store) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	_, err := s.status(ctx, "setexpiry", setExpiryScript, key, append(s.args(2), ms(exp.Idle), ms(exp.Absolute))...)
	return err
}

func (s *Store) Rename(ctx context.Context, oldKey, newKey string) error {
	vals, err := s.list(ctx, "rename", getAllScript, oldKey, s.args(0)...)
	if err != nil {
		return err
	}
	n, err := restoreScript.Run(ctx, s.client, []string{newKey}, append(s.args(len(vals)), vals...)...).Int64()
	switch {
	case err != nil:
		return wrap("rename", err)
	case n == replyExists:
		return sessionkit.ErrExists
	case n == replyNotFound: // the lifetime ran out between the two steps
		return sessionkit.ErrNotFound
	}
	return wrap("rename", s.client.Del(ctx, oldKey).Err())
}

func (s *Store) Destroy(ctx context.Context, key string) error {
	return wrap("destroy", s.client.Del(ctx, key).Err())
}
