package redishash

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
// no session, and lives strayTTL (a minute) whatever the key's policy,
// which is the client's, says. The deadline of a live
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
	boxed atomic.Int64
	pipes sync.Pool
	txs   sync.Pool
}

func (s *Store) boxIdle(n int64) any {
	if v, ok := s.fast.idle.Load(n); ok {
		return v
	}
	// The idle timeout comes from the client's token: keep a few, not
	// whatever a forged token names.
	if s.fast.boxed.Add(1) > maxBoxedIdle {
		return n
	}
	v, _ := s.fast.idle.LoadOrStore(n, any(n))
	return v
}

// maxBoxedIdle bounds the idle timeouts boxed once: a Manager has one,
// SetExpiry adds a few.
const maxBoxedIdle = 16

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

// fastGet is Get's fast path, one pipeline: PEXPIRE, PEXPIREAT … LT, then
// HMGET of the metadata and the names. done is false when Get must run
// its script.
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

// What a fast write's MULTI saw in the record's metadata.
type seen int

const (
	seenPolicy seen = iota // a live record of the key's policy: the write is done
	seenOther              // a live record of another policy (SetExpiry through another token): the write landed
	seenNone               // no live record (nothing, a marker, a corrupt record): the write is no session's
)

// classify reads the HMGET of the deadline, the idle timeout, the
// creation and n names.
func classify(vals []any, p sessionkit.Policy, n int) seen {
	if policyOf(vals, p, n) {
		return seenPolicy
	}
	if len(vals) == 3+n && validMeta(vals[0]) && validMeta(vals[1]) && validMeta(vals[2]) {
		return seenOther
	}
	return seenNone
}

// validMeta is the scripts' test of one metadata value: a positive
// integer below 10^15.
func validMeta(v any) bool {
	str, ok := v.(string)
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(str, 10, 64)
	return err == nil && n > 0 && n < 1e15
}

// execError sorts out a failed MULTI: Redis's OOM (the queued commands
// carry it; EXEC only says EXECABORT), a command's own error (the key is
// not a hash, or HINCRBY refused the value), or a failure to reach Redis,
// after which the MULTI may have run or not.
func execError(err error, cmds ...redis.Cmder) (oom, command error) {
	for _, c := range cmds {
		if isOOM(c.Err()) {
			return c.Err(), nil
		}
	}
	for _, c := range cmds {
		if commandError(c.Err()) && !redis.HasErrorPrefix(c.Err(), "EXECABORT") {
			return nil, c.Err()
		}
	}
	return nil, nil
}

// fastSet is Set's fast path, one MULTI: HMGET of the metadata and the
// fields' old values, HLEN, PEXPIRE, PEXPIREAT … LT, HSET, PEXPIRE … NX.
// The refresh comes before the write, so where no key was the HSET makes
// a hash without TTL, which the last PEXPIRE (NX: only a key without one)
// gives strayTTL, whatever policy the key names (a forged one may name
// centuries). A MULTI runs whole or not at all (under OOM Redis refuses
// the HSET as it is queued, and EXEC then runs nothing). When it saw
// anything but a live record of the key's policy, or the write may have
// crossed the limit, fixScript answers from what it saw and puts right
// what it did.
func (s *Store) fastSet(ctx context.Context, key string, p sessionkit.Policy, fields []sessionkit.Field, maxFields int) error {
	n := len(fields)
	args := make([]any, 5+n+2+2*n+13) // the commands' arguments, in one allocation
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
	exp[9], exp[10], exp[11], exp[12] = "pexpire", get[1], boxedStrayTTL, "nx"
	hm := redis.NewSliceCmd(ctx, get...)
	hl := redis.NewIntCmd(ctx, exp[7:9]...)
	pe := redis.NewIntCmd(ctx, exp[:3]...)
	pa := redis.NewIntCmd(ctx, exp[3:7]...)
	hs := redis.NewIntCmd(ctx, set...)
	nx := redis.NewIntCmd(ctx, exp[9:]...)
	tx := s.txPipeline()
	_ = tx.BatchProcess(ctx, hm, hl, pe, pa, hs, nx)
	_, err := tx.Exec(ctx)
	s.fast.txs.Put(tx)
	if err != nil {
		oom, cmdErr := execError(err, hm, hl, pe, pa, hs, nx)
		switch {
		case oom != nil:
			return wrap(ctx, "set", oom) // nothing ran
		case cmdErr != nil: // not a hash (WRONGTYPE): the script removes it
			return s.fix(ctx, "set", key, fixNone, 0, 0, setFixArgs(fields, nil))
		}
		// Redis was not reached, or its reply was lost: the MULTI may have
		// run. Take back what it may have put where no record is, and
		// report the failure.
		_ = s.fix(ctx, "set", key, fixNone, 0, 0, setFixArgs(fields, nil))
		return wrap(ctx, "set", err)
	}
	old := hm.Val()
	lenAfter := hl.Val() + hs.Val()
	switch classify(old, p, n) {
	case seenPolicy:
		if maxFields <= 0 || hs.Val() == 0 || lenAfter-3 <= int64(maxFields) {
			return nil
		}
		return s.fix(ctx, "set", key, fixLanded, maxFields, lenAfter, setFixArgs(fields, old))
	case seenOther:
		return s.fix(ctx, "set", key, fixLanded, maxFields, lenAfter, setFixArgs(fields, old))
	}
	return s.fix(ctx, "set", key, fixNone, 0, 0, setFixArgs(fields, nil))
}

// setFixArgs are fixScript's arguments for a Set of fields: name, value
// written, '1' if new, old value (” if new). old is the MULTI's HMGET
// (nil when unknown: then no field is taken back, only removed where no
// record is).
func setFixArgs(fields []sessionkit.Field, old []any) []any {
	args := make([]any, 0, 4*len(fields))
	for j, f := range fields {
		isNew, was := "1", any("")
		if len(old) == 3+len(fields) && old[3+j] != nil {
			isNew, was = "0", old[3+j]
		}
		args = append(args, f.Name, f.Value, isNew, was)
	}
	return args
}

// strayTTL is the TTL of a hash that a fast write made where no key was
// (see fastSet): the fix-up removes it at once, and this bounds its life
// when the fix-up cannot run.
const strayTTL = sessionkit.RenewMarkerTTL

var boxedStrayTTL any = strayTTL.Milliseconds()

// The modes of fixScript.
const (
	fixNone     = "n" // the MULTI saw no live record
	fixLanded   = "l" // the MULTI wrote into a live record
	fixFollowed = "f" // as 'l', on the key a marker named
)

// fix runs fixScript on key (and, while it answers a key, on the key a
// marker names: the record moved after the write landed in it), on a
// context that the caller's end does not cancel: what the plain commands
// did must not stay. It returns the answer for the write: nil, or
// ErrRenewed, ErrNotFound, ErrTooManyFields.
func (s *Store) fix(ctx context.Context, op, key, mode string, maxFields int, lenAfter int64, rest []any) error {
	ctx = context.WithoutCancel(ctx)
	hops, waits := 0, 0
	for {
		argv := append(command(fixScript, key, 3+len(rest)), mode, boxMaxFields(maxFields), lenAfter)
		v, err := s.eval(ctx, op, fixScript, append(argv, rest...), 1)
		switch {
		case errors.Is(err, errInFlight):
			// A login is carrying the record (and the write) to key: wait
			// for it to land there, then take the write back.
			if waits++; waits > inFlightWaits {
				return nil // it has not landed: the write goes with it, past the limit
			}
			time.Sleep(inFlightPause)
			continue
		case err != nil:
			return err
		}
		next, ok := v.(string)
		if !ok {
			return nil
		}
		if hops++; hops > 4 {
			return nil // a record that keeps moving: the write moves with it
		}
		key, mode = next, fixFollowed
	}
}

// errInFlight is fixScript's INFLIGHT; how long fix waits for a login's
// second step (one round trip after its first, normally well under a
// millisecond).
var errInFlight = errors.New("redishash: a login is moving the record")

const (
	inFlightWaits = 50
	inFlightPause = 2 * time.Millisecond
)

// fastIncr is Incr's fast path, one MULTI: HMGET of the metadata and the
// field's old value, HLEN, PEXPIRE, PEXPIREAT … LT, HINCRBY, PEXPIRE … NX
// (as in fastSet). Redis refuses
// a value that is not an integer and an overflow without writing; Incr's
// script then runs and answers as it always did (and evens out the values
// strconv.ParseInt accepts and Redis does not). done is false when it
// must. Anything else unusual goes to fixScript, as for Set.
func (s *Store) fastIncr(ctx context.Context, key string, p sessionkit.Policy, name string, delta int64, maxFields int) (n int64, done bool, err error) {
	args := make([]any, 23)
	args[0], args[1], args[2], args[3], args[4], args[5] = "hmget", key, fieldDeadline, fieldIdle, fieldCreated, name
	args[6], args[7], args[8], args[9] = "hincrby", args[1], args[5], delta
	args[10], args[11], args[12] = "pexpire", args[1], s.boxIdle(p.Idle)
	args[13], args[14], args[15], args[16] = "pexpireat", args[1], p.Deadline(), "lt"
	args[17], args[18] = "hlen", args[1]
	args[19], args[20], args[21], args[22] = "pexpire", args[1], boxedStrayTTL, "nx"
	hm := redis.NewSliceCmd(ctx, args[:6]...)
	hl := redis.NewIntCmd(ctx, args[17:19]...)
	pe := redis.NewIntCmd(ctx, args[10:13]...)
	pa := redis.NewIntCmd(ctx, args[13:17]...)
	in := redis.NewIntCmd(ctx, args[6:10]...)
	nx := redis.NewIntCmd(ctx, args[19:]...)
	tx := s.txPipeline()
	_ = tx.BatchProcess(ctx, hm, hl, pe, pa, in, nx)
	_, err = tx.Exec(ctx)
	s.fast.txs.Put(tx)
	if err != nil {
		oom, cmdErr := execError(err, hm, hl, pe, pa, in, nx)
		switch {
		case oom != nil:
			return 0, true, wrap(ctx, "incr", oom)
		case cmdErr != nil:
			return 0, false, nil // not a hash, not an integer, an overflow: the script answers; nothing was written
		}
		_ = s.fix(ctx, "incr", key, fixNone, 0, 0, []any{name, "", "1", ""})
		return 0, true, wrap(ctx, "incr", err)
	}
	vals := hm.Val()
	n = in.Val()
	written := strconv.FormatInt(n, 10)
	isNew, was := "1", any("")
	if len(vals) == 4 && vals[3] != nil {
		isNew, was = "0", vals[3]
	}
	lenAfter := hl.Val()
	if isNew == "1" {
		lenAfter++
	}
	rest := []any{name, written, isNew, was}
	switch classify(vals, p, 1) {
	case seenNone:
		return 0, true, s.fix(ctx, "incr", key, fixNone, 0, 0, rest)
	case seenOther:
		return n, true, s.fix(ctx, "incr", key, fixLanded, maxFields, lenAfter, rest)
	}
	if maxFields > 0 && isNew == "1" && lenAfter-3 > int64(maxFields) {
		return n, true, s.fix(ctx, "incr", key, fixLanded, maxFields, lenAfter, rest)
	}
	if old, ok := was.(string); ok && isNew == "0" {
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
