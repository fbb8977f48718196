// Package testhook reaches inside the in-process stores (memory, bbolt) for
// tests, in one shape: read a record's expiry without refreshing it,
// hand-edit a field as an operator would, count the records held. The
// stores register their hooks here; nothing of it is in their public API.
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
