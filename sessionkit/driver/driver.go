// Package driver is for the authors of sessionkit stores: the helpers that
// every adapter needs to keep the sessionkit.Store contract the same way.
// Application code uses package sessionkit; nothing here is needed to use
// a store, only to write one.
//
// # Errors
//
// Classify every error the backend's client returns with Wrap, in one
// place: it keeps the client's error reachable with errors.As, returns a
// done context as the context's own error, and marks everything else
// sessionkit.ErrUnavailable. Return the sentinels of package sessionkit
// (ErrNotFound, ErrRenewed, ErrExists, ErrTooManyFields, …) for the
// contract's own outcomes; WrapAs marks a backend error with one of them
// (a value the backend refuses as too large: sessionkit.ErrTooLarge).
package driver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Wrap classifies err, an error of the backend's client in operation op
// ("redishash: get") called with ctx: an error that already carries one of
// package sessionkit's sentinels is returned as it is; when ctx is done, the
// error is the caller's (the context's error); anything else, a client's
// own timeout included, is sessionkit.ErrUnavailable. The last two still
// wrap err. nil stays nil.
//
// It asks ctx, not err: a client may time out with its own internal
// context (pgx's connect_timeout does), and that is an outage, not the
// caller giving up.
func Wrap(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case classified(err):
		return err
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return fmt.Errorf("%s: %w", op, err)
	}
	return WrapAs(op, sessionkit.ErrUnavailable, err)
}

// outcomes are the sentinels a store returns as they are.
var outcomes = []error{
	sessionkit.ErrNotFound, sessionkit.ErrRenewed, sessionkit.ErrExists, sessionkit.ErrTooManyFields,
	sessionkit.ErrTooLarge, sessionkit.ErrInvalidKey, sessionkit.ErrClosed, sessionkit.ErrUnavailable,
	sessionkit.ErrDecode,          // Incr on a field that holds no integer
	sessionkit.ErrTooManySessions, // Bind over the cap, refused
}

func classified(err error) bool {
	for _, o := range outcomes {
		if errors.Is(err, o) {
			return true
		}
	}
	return false
}

// WrapAs marks err, an error of the backend's client in operation op, with
// the sentinel kind (one of package sessionkit's), keeping err reachable.
func WrapAs(op string, kind, err error) error {
	return fmt.Errorf("%s: %w: %w", op, kind, err)
}

// TTL returns how long a record created at created, under policy exp, may
// live from now on: the smaller of the idle timeout and what is left of the
// absolute lifetime. A result <= 0 means the record has expired.
func TTL(exp sessionkit.Expiry, created, now time.Time) time.Duration {
	return min(exp.Idle, created.Add(exp.Absolute).Sub(now))
}

// TooManyFields reports whether writing fields to a record that holds
// current fields, has telling which names it holds, would leave more than
// maxFields (maxFields <= 0: no limit). Call it to enforce Store.Set's limit
// before writing anything.
func TooManyFields(current int, fields []sessionkit.Field, maxFields int, has func(name string) bool) bool {
	if maxFields <= 0 {
		return false
	}
	n := current
	for _, f := range fields {
		if !has(f.Name) {
			n++
		}
	}
	return n > maxFields
}

// AddInt returns the integer in value (nil counts as 0) plus delta, for
// Store.Incr: an error matching sessionkit.ErrDecode when value is not the
// decimal text of an integer or the sum leaves int64.
func AddInt(value []byte, delta int64) (int64, error) {
	var n int64
	if value != nil {
		var err error
		if n, err = strconv.ParseInt(string(value), 10, 64); err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", sessionkit.ErrDecode, value)
		}
	}
	if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
		return 0, fmt.Errorf("%w: %d + %d overflows int64", sessionkit.ErrDecode, n, delta)
	}
	return n + delta, nil
}
