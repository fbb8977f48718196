package adaptertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Benchmark measures a store's Get (one field), Set (one field) and GetAll
// on sessions of 10 and 1,000 fields of 64 bytes, with allocations, so a
// regression shows in `go test -bench . -benchmem`. s must start empty.
func Benchmark(b *testing.B, s sessionkit.Store) {
	ctx := context.Background()
	exp := sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}
	value := []byte(`"` + strings.Repeat("v", 62) + `"`)
	for _, n := range []int{10, 1000} {
		key := fmt.Sprintf("adaptertest:bench:%d", n)
		fields := make([]sessionkit.Field, n)
		for i := range fields {
			fields[i] = sessionkit.Field{Name: fmt.Sprintf("attr%04d", i), Value: value}
		}
		if err := s.Create(ctx, key, fields, exp); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("Get/fields=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, key, "attr0001"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Set/fields=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			one := []sessionkit.Field{{Name: "attr0001", Value: value}}
			for b.Loop() {
				if err := s.Set(ctx, key, one, sessionkit.DefaultMaxFields); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("GetAll/fields=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.GetAll(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
