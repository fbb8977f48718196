package redishash

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// The fast path. A key that carries its policy (sessionkit.KeyPolicy: the
// Manager's keys do, since tokens carry it) tells the client the record's
// idle timeout and deadline, so an operation can refresh the expiry with
// plain commands, PEXPIRE key idle then PEXPIREAT key deadline LT, in the
// same round trip as its own commands, instead of running a script: a
// script costs Redis about 6 µs more per call than the plain commands it
// runs (INFO commandstats, redis-server 7.0: EVALSHA 7.9 µs per call
// against 1.1 µs for HMGET, 0.6 for PEXPIRE, 0.3 for PEXPIREAT), and Redis
// CPU is what bounds the sessions one node serves.
//
// The commands cannot check before they act, so each reads the record's
// deadline and idle timeout with them and the client checks after: when
// they are the key's, the record was live and the operation is done.
// Anything else (no record, a marker, a corrupt record, a policy that
// SetExpiry changed since the token was issued) runs the operation's
// script, which answers as it always did and puts right what the plain
// commands did to the key:
//
//   - its expiry: the script refreshes it from the record's own metadata;
//     a Rename marker keeps its own expiry time in a field (__sk_x), which
//     the script restores (PEXPIRE stretched it);
//   - a write's fields: on a key without a record, the plain HSET made a
//     hash without metadata, which no operation reads as a session and
//     the script removes; on a marker, the script removes the fields.
//
// The script runs even when the caller's context ends in between (an HTTP
// client that hangs up): what the commands did must not stay. Only a
// process that dies between the two round trips, or a second round trip
// that fails (Redis stalled past the client's timeouts), leaves: a marker
// that lives up to the idle timeout instead of RenewMarkerTTL, perhaps
// with the fields a write added (it still only answers ErrRenewed and
// leads Destroy to the session); a hash without metadata, which reads as
// no session, with the TTL the key's policy gives (its idle timeout,
// capped by its deadline). The key's policy is the client's: a forged
// one names no record, but does set that TTL. The deadline of a live
// record is never passed: PEXPIREAT … LT with the deadline of the key's
// policy, which is the record's whenever the check passes.

// base is the key a record lives under: the storage key without the
// policy it may carry (sessionkit.KeyPolicy). The hash in the key covers
// the policy, so a token whose policy was altered names another record.
func base(key string) string {
	k, _, _ := sessionkit.KeyPolicy(key)
	return k
}

// fastState is what the fast path reuses: idle timeouts boxed once (most
// sessions share the Manager's default, and an int64 over 255 put in an
// interface costs an allocation), and pipelines.
type fastState struct {
	idle  sync.Map // int64 -> any
	pipes sync.Pool
	txs   sync.Pool
}

func (s *Store) boxIdle(n int64) any {
	if v, ok := s.fast.idle.Load(n); ok {
		return v
	}
	v, _ := s.fast.idle.LoadOrStore(n, any(n))
	return v
}

func (s *Store) pipeline() redis.Pipeliner {
	if p, ok := s.fast.pipes.Get().(redis.Pipeliner); ok {
		return p
	}
	return s.client.Pipeline()
}

// isInt reports whether v, a reply value, is the decimal text of n.
func isInt(v any, n int64) bool {
	str, ok := v.(string)
	if !ok {
		return false
	}
	x, err := strconv.ParseInt(str, 10, 64)
	return err == nil && x == n
}

// policyOf reports whether vals, an HMGET of the deadline, the idle
// timeout, the creation and n names, shows a live record of policy p:
// metadata that is exactly the policy's (a hand-edited creation too, so
// that a corrupt record is never served: the script removes it).
func policyOf(vals []any, p sessionkit.Policy, n int) bool {
	return len(vals) == 3+n && isInt(vals[0], p.Deadline()) && isInt(vals[1], p.Idle) && isInt(vals[2], p.Created)
}

// commandError reports whether err is Redis's answer to a command (such as
// WRONGTYPE), not a failure to reach it.
func commandError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// fastGet is Get's fast path: HMGET of the deadline, the idle timeout and
// the names, PEXPIRE and PEXPIREAT … LT, in one pipeline. done is false
// when Get must run its script.
func (s *Store) fastGet(ctx context.Context, key string, p sessionkit.Policy, names []string) (out [][]byte, done bool, err error) {
	args := make([]any, 5+len(names)+7) // the three commands' arguments, in one allocation
	get, exp := args[:5+len(names)], args[5+len(names):]
	get[0], get[1], get[2], get[3], get[4] = "hmget", key, fieldDeadline, fieldIdle, fieldCreated
	for j, n := range names {
		get[5+j] = n
	}
	exp[0], exp[1], exp[2] = "pexpire", get[1], s.boxIdle(p.Idle)
	exp[3], exp[4], exp[5], exp[6] = "pexpireat", get[1], p.Deadline(), "lt"
	hm := redis.NewSliceCmd(ctx, get...)
	pe := redis.NewIntCmd(ctx, exp[:3]...)
	pa := redis.NewIntCmd(ctx, exp[3:]...)
	pipe := s.pipeline()
	// The HMGET comes last: a pipeline is not atomic, and what it reads
	// must be what the refresh acted on. Metadata that is still the
	// policy's after the refresh was the policy's before it (a SetExpiry
	// or Rename in between shows in it, and the script then puts the
	// expiry right).
	_ = pipe.BatchProcess(ctx, pe, pa, hm)
	_, err = pipe.Exec(ctx)
	s.fast.pipes.Put(pipe)
	if err != nil {
		if commandError(err) {
			return nil, false, nil
		}
		return nil, true, wrap(ctx, "get", err)
	}
	vals := hm.Val()
	if !policyOf(vals, p, len(names)) {
		if len(vals) == 3+len(names) && vals[0] == nil && vals[1] == nil && vals[2] == nil && pe.Val() == 0 {
			return nil, true, sessionkit.ErrNotFound // no key at all: nothing to put right
		}
		return nil, false, nil
	}
	out = make([][]byte, len(names))
	for j, v := range vals[3:] {
		if str, ok := v.(string); ok {
			out[j] = []byte(str)
		}
	}
	return out, true, nil
}

func (s *Store) txPipeline() redis.Pipeliner {
	if p, ok := s.fast.txs.Get().(redis.Pipeliner); ok {
		return p
	}
	return s.client.TxPipeline()
}

// fastSet is Set's fast path, one MULTI: HMGET of the deadline, the idle
// timeout and the fields' old values, HSET, PEXPIRE, PEXPIREAT … LT, and
// with a limit HLEN. A MULTI runs whole or not at all (under OOM Redis
// refuses the HSET as it is queued, and EXEC then runs nothing). done is
// false when Set must run setFixScript, which answers for what the MULTI
// found and puts right what it did.
func (s *Store) fastSet(ctx context.Context, key string, p sessionkit.Policy, fields []sessionkit.Field, maxFields int) (old []any, done bool, err error) {
	n := len(fields)
	args := make([]any, 5+n+2+2*n+9) // the commands' arguments, in one allocation
	get, set, exp := args[:5+n], args[5+n:7+3*n], args[7+3*n:]
	get[0], get[1], get[2], get[3], get[4] = "hmget", key, fieldDeadline, fieldIdle, fieldCreated
	set[0], set[1] = "hset", get[1]
	for j, f := range fields {
		name := any(f.Name)
		get[5+j], set[2+2*j], set[3+2*j] = name, name, f.Value
	}
	exp[0], exp[1], exp[2] = "pexpire", get[1], s.boxIdle(p.Idle)
	exp[3], exp[4], exp[5], exp[6] = "pexpireat", get[1], p.Deadline(), "lt"
	exp[7], exp[8] = "hlen", get[1]
	hm := redis.NewSliceCmd(ctx, get...)
	hs := redis.NewIntCmd(ctx, set...)
	pe := redis.NewIntCmd(ctx, exp[:3]...)
	pa := redis.NewIntCmd(ctx, exp[3:7]...)
	var hl *redis.IntCmd
	tx := s.txPipeline()
	if maxFields > 0 {
		hl = redis.NewIntCmd(ctx, exp[7:]...)
		_ = tx.BatchProcess(ctx, hm, hs, pe, pa, hl)
	} else {
		_ = tx.BatchProcess(ctx, hm, hs, pe, pa)
	}
	_, err = tx.Exec(ctx)
	s.fast.txs.Put(tx)
	if err != nil {
		if redis.HasErrorPrefix(hm.Err(), "WRONGTYPE") {
			return nil, false, nil // not a hash: the script removes it
		}
		return nil, true, wrap(ctx, "set", err)
	}
	old = hm.Val()
	if !policyOf(old, p, len(fields)) {
		return old, false, nil
	}
	if hl != nil && hs.Val() > 0 && hl.Val()-3 > int64(maxFields) {
		return old, false, nil // perhaps over the limit: the script counts exactly
	}
	return old, true, nil
}

// setFix runs setFixScript after fastSet found what it could not answer
// for: fields are the ones written, old the HMGET reply of the MULTI (nil
// if it failed), whose values say which fields were new.
func (s *Store) setFix(ctx context.Context, key string, fields []sessionkit.Field, old []any, maxFields int) error {
	argv := append(command(setFixScript, key, 1+4*len(fields)), boxMaxFields(maxFields))
	for j, f := range fields {
		isNew, was := "1", any("")
		if len(old) == 3+len(fields) && old[3+j] != nil {
			isNew, was = "0", old[3+j]
		}
		argv = append(argv, f.Name, f.Value, isNew, was)
	}
	_, err := s.statusOf(ctx, "set", setFixScript, argv)
	return err
}

// fastIncr is Incr's fast path, one MULTI: HMGET of the deadline, the idle
// timeout and the field's old value, HINCRBY, PEXPIRE, PEXPIREAT … LT, and
// with a limit HLEN. Redis refuses a value that is not an integer and an
// overflow without writing; Incr's script then runs and answers as it
// always did (and evens out the values strconv.ParseInt accepts and
// Redis does not). done is false when Incr must run a script: incrFix when
// HINCRBY ran, its own when it was refused.
func (s *Store) fastIncr(ctx context.Context, key string, p sessionkit.Policy, name string, delta int64, maxFields int) (n int64, done bool, err error) {
	args := make([]any, 19)
	args[0], args[1], args[2], args[3], args[4], args[5] = "hmget", key, fieldDeadline, fieldIdle, fieldCreated, name
	args[6], args[7], args[8], args[9] = "hincrby", args[1], args[5], delta
	args[10], args[11], args[12] = "pexpire", args[1], s.boxIdle(p.Idle)
	args[13], args[14], args[15], args[16] = "pexpireat", args[1], p.Deadline(), "lt"
	args[17], args[18] = "hlen", args[1]
	hm := redis.NewSliceCmd(ctx, args[:6]...)
	in := redis.NewIntCmd(ctx, args[6:10]...)
	pe := redis.NewIntCmd(ctx, args[10:13]...)
	pa := redis.NewIntCmd(ctx, args[13:17]...)
	var hl *redis.IntCmd
	tx := s.txPipeline()
	if maxFields > 0 {
		hl = redis.NewIntCmd(ctx, args[17:]...)
		_ = tx.BatchProcess(ctx, hm, in, pe, pa, hl)
	} else {
		_ = tx.BatchProcess(ctx, hm, in, pe, pa)
	}
	_, err = tx.Exec(ctx)
	s.fast.txs.Put(tx)
	if err != nil {
		if isOOM(err) || redis.HasErrorPrefix(err, "EXECABORT") || !commandError(hm.Err()) && !commandError(in.Err()) {
			return 0, true, wrap(ctx, "incr", err)
		}
		return 0, false, nil // not a hash, not an integer, an overflow: the script answers, nothing was written
	}
	vals := hm.Val()
	n = in.Val()
	if !policyOf(vals, p, 1) || hl != nil && vals[3] == nil && hl.Val()-3 > int64(maxFields) {
		return s.incrFix(context.WithoutCancel(ctx), key, name, delta, n, vals, maxFields)
	}
	if old, ok := vals[3].(string); ok {
		if o, err := strconv.ParseInt(old, 10, 64); err == nil && (delta > 0 && o > math.MaxInt64-delta || delta < 0 && o < math.MinInt64-delta) {
			// Only a server that wraps around (miniredis) gets here: Redis
			// refuses the overflow. Put the old value back.
			_, err := s.status(context.WithoutCancel(ctx), "incr", incrUndoScript, key, name, n, old)
			if err != nil {
				return 0, true, err
			}
			return 0, true, errOverflow
		}
	}
	return n, true, nil
}

// incrFix runs incrFixScript after a fast Incr whose HINCRBY ran where the
// MULTI found no live record of the key's policy, or perhaps over the limit.
func (s *Store) incrFix(ctx context.Context, key, name string, delta, n int64, old []any, maxFields int) (int64, bool, error) {
	isNew := "0"
	if len(old) == 4 && old[3] == nil {
		isNew = "1"
	}
	v, err := s.eval(ctx, "incr", incrFixScript, append(command(incrFixScript, key, 4), name, delta, boxMaxFields(maxFields), isNew), 1)
	if err != nil {
		return 0, true, err
	}
	if _, ok := v.(int64); !ok {
		return 0, true, wrap(ctx, "incr", fmt.Errorf("unexpected reply %T", v))
	}
	return n, true, nil
}
