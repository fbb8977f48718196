// Package testhook reaches inside the stores for tests and benchmarks, so
// that nothing of it is in their public API: the in-process stores (memory,
// bbolt) register hooks of one shape (read a record's expiry without
// refreshing it, hand-edit a field as an operator would, count the records
// held), and redishash registers its scripts for the raw floor of bench/.
package testhook

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"
)

// Hooks are a store's test hooks.
type Hooks interface {
	// TTL returns the time left to the record under key without
	// refreshing it; ok is false when there is no live record (a Rename
	// marker is a record).
	TTL(ctx context.Context, key string) (ttl time.Duration, ok bool, err error)
	// SetRaw overwrites one field of a live record, as a hand edit would,
	// without refreshing its expiry.
	SetRaw(ctx context.Context, key, field string, value []byte) error
	// Records returns the number of records held, expired or not: what
	// the store has not swept yet.
	Records() int
}

// IndexHooks are the hooks of a store that keeps user indexes in process.
type IndexHooks interface {
	// IndexEntries returns the number of entries held in the index,
	// live or not.
	IndexEntries(index string) int
}

var (
	mu    sync.RWMutex
	hooks = map[reflect.Type]func(any) Hooks{}
)

// Register makes Of answer for stores of type S. Stores call it from init.
func Register[S any](fn func(S) Hooks) {
	mu.Lock()
	defer mu.Unlock()
	hooks[reflect.TypeFor[S]()] = func(s any) Hooks { return fn(s.(S)) }
}

// Of returns the hooks of store. It panics for a store that registered
// none: a test asked for something that cannot be had.
func Of(store any) Hooks {
	mu.RLock()
	fn := hooks[reflect.TypeOf(store)]
	mu.RUnlock()
	if fn == nil {
		panic(fmt.Sprintf("testhook: %T registered no hooks", store))
	}
	return fn(store)
}

var redisScripts map[string]any

// RegisterRedisScripts records the redishash scripts (*redis.Script) by
// operation; the redishash package calls it from init. They are kept as
// any so that the in-process stores, which import this package too, do not
// link a Redis client.
func RegisterRedisScripts(scripts map[string]any) { redisScripts = scripts }

// RedisScript returns the script redishash runs for op ("get", "set", …),
// a *redis.Script, or nil for an unknown op. Import redishash first.
func RedisScript(op string) any { return redisScripts[op] }
