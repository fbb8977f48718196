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
	require.NoError(t, driver.Wrap("op", nil))

	netErr := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	err := driver.Wrap("redishash: get", netErr)
	require.ErrorIs(t, err, sessionkit.ErrUnavailable)
	var got *net.OpError
	require.ErrorAs(t, err, &got, "the client's error stays reachable")

	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
		err := driver.Wrap("op", fmt.Errorf("client: %w", ctxErr))
		require.ErrorIs(t, err, ctxErr)
		require.NotErrorIs(t, err, sessionkit.ErrUnavailable, "a done context is not an outage")
	}

	for _, outcome := range []error{sessionkit.ErrNotFound, sessionkit.ErrRenewed, sessionkit.ErrTooLarge} {
		require.Equal(t, outcome, driver.Wrap("op", outcome), "a contract outcome passes through unchanged")
	}

	err = driver.WrapAs("memcached: set", sessionkit.ErrTooLarge, netErr)
	require.ErrorIs(t, err, sessionkit.ErrTooLarge)
	require.ErrorAs(t, err, &got)
}
