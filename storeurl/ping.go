package storeurl

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// pinger is an optional interface that a sessionkit.Store may implement to
// check its backend more cheaply than a read. If a Store does not implement
// it, Ping falls back to reading one field of a key no session has.
type pinger interface {
	Ping(ctx context.Context) error
}

// pingKey is read by Ping: the hash tag keeps it on one Redis Cluster slot,
// and no token hashes to it.
const pingKey = sessionkit.DefaultKeyPrefix + "{storeurl}ping"

// Ping reports whether store's backend answers, within ctx and the
// client's timeouts: call it at start-up so that a wrong address or
// password fails the program at once, rather than every request later.
// The error wraps the store's own (sessionkit.ErrUnavailable and the
// client's error, for the stores Open returns).
//
// A store with a method Ping(context.Context) error is asked through it.
// Any other store is asked for one field of a session that does not exist:
// the same path a request takes (for Redis: the script, the connection and
// its AUTH), writing no session. A postgres:// store that creates its tables
// on first use creates them then, so a role without the right fails at
// start-up too.
func Ping(ctx context.Context, store sessionkit.Store) error {
	var err error
	if p, ok := store.(pinger); ok {
		err = p.Ping(ctx)
	} else if _, err = store.Get(ctx, pingKey, "ping"); errors.Is(err, sessionkit.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("storeurl: ping: %w", err)
	}
	return nil
}
