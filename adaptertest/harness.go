// Package adaptertest is the conformance suite for sessionkit.Store
// adapters. An adapter's test calls Run with a Maker; Run checks every
// promise of the store contract, on the raw store and through a
// sessionkit.Manager, each as a subtest named after the promise it checks.
//
//	func TestConformance(t *testing.T) {
//		adaptertest.Run(t, func(t *testing.T) *adaptertest.Harness {
//			clock := adaptertest.NewClock()
//			return &adaptertest.Harness{
//				Store:   memory.New(&memory.Options{Clock: clock.Now}),
//				Now:     clock.Now,
//				Advance: clock.Advance,
//				TTL:     …,
//			}
//		})
//	}
//
// Third-party adapters can use it too.
package adaptertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Harness is what the suite needs from an adapter for one subtest. The
// Maker builds a fresh one (an empty store) for every subtest.
type Harness struct {
	// Store is a fresh store with no sessions. Required.
	Store sessionkit.Store

	// Now and Advance give the suite control of the store's clock: Advance
	// moves it forward by d, and every expiry in the backend with it. Leave
	// both nil for a backend on the wall clock (a real server): the suite
	// then uses sub-second timeouts and polls the backend, which makes those
	// cases take a few seconds.
	Now     func() time.Time
	Advance func(d time.Duration)

	// TTL reads the backend's own remaining expiry of the record under key,
	// without refreshing it. ok is false when there is no record. A record
	// without any expiry must be reported with ok true and a negative ttl
	// (0 is a record in its last millisecond). Required.
	TTL func(ctx context.Context, key string) (ttl time.Duration, ok bool, err error)

	// SetRaw writes value into one field of the record under key directly
	// in the backend, as a person with redis-cli would. Nil skips the
	// hand-edit cases.
	SetRaw func(ctx context.Context, key, field string, value []byte) error

	// Corrupt damages the record under key directly in the backend, in the
	// way kind says, as a hand edit, a bug or a bad restore would. It returns
	// errors.ErrUnsupported for a kind that cannot happen on this backend;
	// the cases for that kind are then skipped by name. Nil skips them all.
	Corrupt func(ctx context.Context, key string, kind Corruption) error

	// IndexEntries returns the number of entries the backend holds in the
	// user index under key, live or not, without cleaning it: what the
	// index costs in memory. A backend whose expired rows are deleted by a
	// background sweeper on its own schedule (PostgreSQL) may count only
	// the entries not yet expired, and must test the sweeper's removal
	// itself. Nil skips the checks that the index shrinks.
	IndexEntries func(ctx context.Context, index string) (int, error)

	// Close, if not nil, is called when the subtest ends.
	Close func()
}

// Corruption is a way a record can be damaged from outside the adapter.
type Corruption int

const (
	// MetadataRemoved: the adapter's own metadata is gone and the record
	// no longer expires, as after `HDEL k __sk_d __sk_i __sk_c` and
	// `PERSIST k` on Redis. The session fields stay.
	MetadataRemoved Corruption = iota + 1
	// MetadataMalformed: a metadata value is not one the adapter writes,
	// as after `HSET k __sk_i 1.5` on Redis.
	MetadataMalformed
	// WrongType: the key holds another kind of value, with no expiry, as
	// after `SET k x` over a Redis hash.
	WrongType
	// Garbage: the record's bytes cannot be decoded (a blob-shaped
	// backend's item overwritten with junk, with no expiry where the
	// backend allows it).
	Garbage
)

func (c Corruption) String() string {
	switch c {
	case MetadataRemoved:
		return "MetadataRemoved"
	case MetadataMalformed:
		return "MetadataMalformed"
	case WrongType:
		return "WrongType"
	case Garbage:
		return "Garbage"
	}
	return "Corruption(?)"
}

// Maker returns a fresh Harness for one subtest. It may call t.Skip or
// t.Fatal, and may register cleanups with t.Cleanup.
type Maker func(t *testing.T) *Harness

// Clock is a fake clock for harnesses whose store takes a clock function.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to the current wall time, truncated to the
// millisecond like the stores' expiries.
func NewClock() *Clock { return &Clock{now: time.Now().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
