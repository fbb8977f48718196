package driver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

func TestWrapClassifiesOnce(t *testing.T) {
	ctx := t.Context()
	require.NoError(t, driver.Wrap(ctx, "op", nil))

	netErr := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	err := driver.Wrap(ctx, "redishash: get", netErr)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var got *net.OpError
	require.ErrorAs(t, err, &got, "the client's error stays reachable")

	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
		done, cancel := context.WithCancel(ctx)
		cancel()
		err := driver.Wrap(done, "op", fmt.Errorf("client: %w", ctxErr))
		require.ErrorIs(t, err, ctxErr)
		require.NotErrorIs(t, err, sessionkit.ErrUnavailable, "the caller's done context is not an outage")

		// The same error from a client's own timeout (pgx's connect_timeout
		// runs on an internal context) while the caller's context is live.
		err = driver.Wrap(ctx, "postgres: get", fmt.Errorf("failed to connect: timeout: %w", ctxErr))
		require.ErrorIs(t, err, sessionkit.ErrUnavailable, "a client's own timeout is an outage")
	}

	for _, outcome := range []error{sessionkit.ErrNotFound, sessionkit.ErrRenewed, sessionkit.ErrTooLarge, sessionkit.ErrDecode, sessionkit.ErrTooManySessions} {
		require.Equal(t, outcome, driver.Wrap(ctx, "op", outcome), "a contract outcome passes through unchanged")
	}

	err = driver.WrapAs("memcached: set", sessionkit.ErrTooLarge, netErr)
	require.ErrorIs(t, err, sessionkit.ErrTooLarge)
	require.ErrorAs(t, err, &got)
}
