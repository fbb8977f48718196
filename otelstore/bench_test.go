package otelstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/otelstore"
	"github.com/sessionkit/sessionkit/sessionkit"
)

var one = []sessionkit.Field{{Name: "a", Value: []byte(`"value"`)}}

// benchmarks are the operations measured. Each leaves the store of
// benchStore as it found it: an operation that changes which records exist
// runs in a cycle (Create+Destroy, Create+Rename+Destroy), so the store
// stays small however many iterations run.
var benchmarks = []struct {
	name string
	op   func(ctx context.Context, s sessionkit.Store) error
}{
	{"Get", func(ctx context.Context, s sessionkit.Store) error { _, err := s.Get(ctx, "k", "a"); return err }},
	{"GetMissing", func(ctx context.Context, s sessionkit.Store) error {
		if _, err := s.Get(ctx, "missing", "a"); !errors.Is(err, sessionkit.ErrNotFound) {
			return err
		}
		return nil
	}},
	{"GetAll", func(ctx context.Context, s sessionkit.Store) error { _, err := s.GetAll(ctx, "k"); return err }},
	{"Keys", func(ctx context.Context, s sessionkit.Store) error { _, err := s.Keys(ctx, "k"); return err }},
	{"Has", func(ctx context.Context, s sessionkit.Store) error { _, err := s.Has(ctx, "k", "a"); return err }},
	{"Len", func(ctx context.Context, s sessionkit.Store) error { _, err := s.Len(ctx, "k"); return err }},
	{"Set", func(ctx context.Context, s sessionkit.Store) error { return s.Set(ctx, "k", one, 0) }},
	{"Delete", func(ctx context.Context, s sessionkit.Store) error { return s.Delete(ctx, "k", "missing") }},
	{"Clear", func(ctx context.Context, s sessionkit.Store) error { return s.Clear(ctx, "empty") }},
	{"Touch", func(ctx context.Context, s sessionkit.Store) error { _, err := s.Touch(ctx, "k"); return err }},
	{"SetExpiry", func(ctx context.Context, s sessionkit.Store) error { return s.SetExpiry(ctx, "k", exp) }},
	{"Count", func(ctx context.Context, s sessionkit.Store) error {
		_, err := s.(sessionkit.Counter).Count(ctx, "")
		return err
	}},
	{"Create+Destroy", func(ctx context.Context, s sessionkit.Store) error {
		if err := s.Create(ctx, "new", one, exp); err != nil {
			return err
		}
		return s.Destroy(ctx, "new")
	}},
	{"Create+Rename+Destroy", func(ctx context.Context, s sessionkit.Store) error {
		if err := s.Create(ctx, "old", one, exp); err != nil {
			return err
		}
		if err := s.Rename(ctx, "old", "new"); err != nil {
			return err
		}
		return s.Destroy(ctx, "old") // follows the marker to "new"
	}},
}

// benchStore returns memory.New(nil) with a session "k" of two fields and
// an empty session "empty".
func benchStore(b *testing.B) *memory.Store {
	mem := memory.New(nil)
	newSession(b, mem, "k", one[0], sessionkit.Field{Name: "b", Value: []byte("2")})
	if err := mem.Create(b.Context(), "empty", nil, exp); err != nil {
		b.Fatal(err)
	}
	return mem
}

// wrappers are the ways a store is measured: plain; noop, wrapped with the
// API's no-op providers; global, wrapped with the default otel globals
// while no SDK is installed (what an application that never sets one up
// pays); metrics, wrapped with an SDK MeterProvider and the global
// TracerProvider left unset (metrics only, as for a Prometheus endpoint);
// sdk, wrapped with SDK providers that record every measurement and sample
// every span (into an exporter that drops it).
var wrappers = []struct {
	name string
	wrap func(b *testing.B, s sessionkit.Store) sessionkit.Store
}{
	{"plain", func(_ *testing.B, s sessionkit.Store) sessionkit.Store { return s }},
	{"noop", func(_ *testing.B, s sessionkit.Store) sessionkit.Store {
		return otelstore.New(s, &otelstore.Options{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	}},
	{"global", func(_ *testing.B, s sessionkit.Store) sessionkit.Store { return otelstore.New(s, &otelstore.Options{}) }},
	{"metrics", func(b *testing.B, s sessionkit.Store) sessionkit.Store {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		return otelstore.New(s, &otelstore.Options{MeterProvider: mp})
	}},
	{"sdk", func(b *testing.B, s sessionkit.Store) sessionkit.Store {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
		b.Cleanup(func() {
			_ = mp.Shutdown(context.Background())
			_ = tp.Shutdown(context.Background())
		})
		return otelstore.New(s, &otelstore.Options{MeterProvider: mp, TracerProvider: tp})
	}},
}

// BenchmarkStore runs each operation on each of the wrappers, for a table
// of time and allocations per operation:
//
//	go test -run '^$' -bench Store -benchmem -count 6 ./otelstore > bench.txt
//	benchstat -col /store bench.txt
func BenchmarkStore(b *testing.B) {
	for _, bm := range benchmarks {
		for _, w := range wrappers {
			b.Run("op="+bm.name+"/store="+w.name, func(b *testing.B) {
				s := w.wrap(b, benchStore(b))
				ctx := b.Context()
				b.ReportAllocs()
				for b.Loop() {
					if err := bm.op(ctx, s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOverhead measures each wrapper against the plain store in
// alternating blocks of calls, so that the load of a shared machine falls
// on both alike, and reports the medians: the time per call of the plain
// store, of the wrapped one, and the overhead in percent (the median of
// the blocks' ratios). Its ns/op is the time of one pair of blocks.
func BenchmarkOverhead(b *testing.B) {
	const block = 64 // calls: long enough to time, short enough to dodge most preemptions
	for _, bm := range benchmarks {
		for _, w := range wrappers[1:] {
			b.Run("op="+bm.name+"/store="+w.name, func(b *testing.B) {
				plain := benchStore(b)
				wrapped := w.wrap(b, benchStore(b))
				ctx := b.Context()
				run := func(s sessionkit.Store) time.Duration {
					start := time.Now()
					for range block {
						if err := bm.op(ctx, s); err != nil {
							b.Fatal(err)
						}
					}
					return time.Since(start)
				}
				var plainTimes, wrappedTimes, ratios []float64
				for i := 0; b.Loop(); i++ {
					var p, w time.Duration
					if i%2 == 0 {
						p, w = run(plain), run(wrapped)
					} else {
						w, p = run(wrapped), run(plain)
					}
					plainTimes = append(plainTimes, float64(p)/block)
					wrappedTimes = append(wrappedTimes, float64(w)/block)
					ratios = append(ratios, float64(w)/float64(p))
				}
				b.ReportMetric(median(plainTimes), "plain-ns/call")
				b.ReportMetric(median(wrappedTimes), "wrapped-ns/call")
				b.ReportMetric(100*(median(ratios)-1), "overhead-%")
			})
		}
	}
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
