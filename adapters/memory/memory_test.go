package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func harness(t *testing.T) *adaptertest.Harness {
	clock := adaptertest.NewClock()
	s := memory.New(&memory.Options{Clock: clock.Now})
	h := testhook.Of(s)
	return &adaptertest.Harness{
		Store:   s,
		Now:     clock.Now,
		Advance: clock.Advance,
		TTL:     h.TTL,
		SetRaw:  h.SetRaw,
		IndexEntries: func(_ context.Context, index string) (int, error) {
			return h.(testhook.IndexHooks).IndexEntries(index), nil
		},
	}
}

func TestConformance(t *testing.T) { adaptertest.Run(t, harness) }

func TestExpiredSessionsAreSweptFromMemory(t *testing.T) {
	ctx := t.Context()
	clock := adaptertest.NewClock()
	s := memory.New(&memory.Options{Clock: clock.Now, SweepInterval: time.Minute})
	exp := sessionkit.Expiry{Idle: 10 * time.Minute, Absolute: time.Hour}
	for i := range 1000 {
		require.NoError(t, s.Create(ctx, fmt.Sprint("old", i), nil, exp))
	}
	require.Equal(t, 1000, testhook.Of(s).Records())
	clock.Advance(11 * time.Minute)
	require.NoError(t, s.Create(ctx, "new", nil, exp))
	require.Equal(t, 1, testhook.Of(s).Records(), "the write after the sweep interval removed every expired session")
	n, err := s.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func BenchmarkStore(b *testing.B) { adaptertest.Benchmark(b, memory.New(nil)) }
