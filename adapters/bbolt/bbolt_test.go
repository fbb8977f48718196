package bbolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
)

func open(t *testing.T, path string, clock *adaptertest.Clock) *bbolt.Store {
	t.Helper()
	s, err := bbolt.Open(path, &bbolt.Options{Clock: clock.Now, NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func harness(t *testing.T) *adaptertest.Harness {
	clock := adaptertest.NewClock()
	s := open(t, filepath.Join(t.TempDir(), "sessions.db"), clock)
	return &adaptertest.Harness{
		Store:   s,
		Now:     clock.Now,
		Advance: clock.Advance,
		TTL:     testhook.Of(s).TTL,
		SetRaw:  testhook.Of(s).SetRaw,
		Corrupt: func(_ context.Context, key string, kind adaptertest.Corruption) error {
			return s.Corrupt(key, kind)
		},
		IndexEntries: func(_ context.Context, index string) (int, error) {
			return testhook.Of(s).(testhook.IndexHooks).IndexEntries(index), nil
		},
	}
}

func TestConformance(t *testing.T) { adaptertest.Run(t, harness) }

func TestSweepRemovesOnlyWhatExpired(t *testing.T) {
	ctx := t.Context()
	clock := adaptertest.NewClock()
	s := open(t, filepath.Join(t.TempDir(), "s.db"), clock)
	short := sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour}
	long := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	for i := range 2500 { // more than one sweep batch
		require.NoError(t, s.Create(ctx, fmt.Sprint("short", i), []sessionkit.Field{{Name: "a", Value: []byte("1")}}, short))
	}
	require.NoError(t, s.Create(ctx, "long", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, long))
	n, err := s.Sweep()
	require.NoError(t, err)
	require.Zero(t, n, "nothing has expired yet")
	require.Equal(t, 2501, testhook.Of(s).Records())

	clock.Advance(2 * time.Minute)
	n, err = s.Sweep()
	require.NoError(t, err)
	require.Equal(t, 2500, n)
	require.Equal(t, 1, testhook.Of(s).Records(), "the expired sessions are gone from the file")
	count, err := s.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, count)
	vals, err := s.Get(ctx, "long", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
}

func TestSweepRemovesExpiredMarkersAndCountSkipsThem(t *testing.T) {
	ctx := t.Context()
	clock := adaptertest.NewClock()
	s := open(t, filepath.Join(t.TempDir(), "s.db"), clock)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	require.NoError(t, s.Create(ctx, "old", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	require.NoError(t, s.Rename(ctx, "old", "new"))
	count, err := s.Count(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 1, count, "a marker is not a session")

	clock.Advance(sessionkit.RenewMarkerTTL)
	n, err := s.Sweep()
	require.NoError(t, err)
	require.Equal(t, 1, n, "the marker's index entry came due")
	_, ok, err := testhook.Of(s).TTL(t.Context(), "old")
	require.NoError(t, err)
	require.False(t, ok, "the sweeper removed the marker")
	n, err = s.Sweep()
	require.NoError(t, err)
	require.Zero(t, n, "nothing of the marker is left in the index")
	vals, err := s.Get(ctx, "new", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
}

func TestSweepDropsTheIndexEntryOfADamagedRecord(t *testing.T) {
	ctx := t.Context()
	clock := adaptertest.NewClock()
	s := open(t, filepath.Join(t.TempDir(), "s.db"), clock)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	for _, k := range []string{"read", "unread"} {
		require.NoError(t, s.Create(ctx, k, []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
		require.NoError(t, s.Corrupt(k, adaptertest.MetadataMalformed))
	}
	_, err := s.Get(ctx, "read", "a")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	ttl, ok, err := testhook.Of(s).TTL(t.Context(), "unread")
	require.NoError(t, err)
	require.True(t, ok)
	require.Negative(t, ttl, "a record whose metadata is damaged has no expiry of its own")

	clock.Advance(exp.Idle)
	n, err := s.Sweep()
	require.NoError(t, err)
	require.Equal(t, 2, n, "both index entries came due, the stale one and the damaged record's")
	_, ok, err = testhook.Of(s).TTL(t.Context(), "unread")
	require.NoError(t, err)
	require.False(t, ok, "the sweeper removed the damaged record nobody read")
	n, err = s.Sweep()
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestSessionsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	clock := adaptertest.NewClock()
	s := open(t, path, clock)
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	require.NoError(t, s.Create(ctx, "k", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp))
	require.NoError(t, s.Close())
	_, err := s.Get(ctx, "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrClosed)

	s = open(t, path, clock)
	vals, err := s.Get(ctx, "k", "a")
	require.NoError(t, err)
	require.Equal(t, []byte("1"), vals[0])
}

func TestASecondOpenOfTheFileFailsClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	open(t, path, adaptertest.NewClock())
	_, err := bbolt.Open(path, &bbolt.Options{LockTimeout: 50 * time.Millisecond})
	require.ErrorContains(t, err, "belongs to one process")
}

func BenchmarkStore(b *testing.B) {
	s, err := bbolt.Open(filepath.Join(b.TempDir(), "bench.db"), &bbolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	adaptertest.Benchmark(b, s)
}
