package otelstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/otelstore"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// An application wraps its store once, at start-up, and hands the wrapper
// to the Manager. Here the SDK's in-memory reader and exporter stand in for
// Prometheus and a trace collector, to show what an operator sees after a
// login, a request that raced it, and a request with an unknown token.
func Example() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	store := otelstore.New(memory.New(nil), &otelstore.Options{
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)),
	})
	m, err := sessionkit.New(&sessionkit.Options{Store: store})
	if err != nil {
		panic(err)
	}

	s, _ := m.Create(ctx)
	_ = s.Set(ctx, "user", "ada")
	stale, _ := m.Load(s.Token())
	_ = s.Renew(ctx)              // at login
	_, _ = stale.Get(ctx, "user") // a request that raced the renewal: renewed
	gone, _ := m.Load(m.NewSession().Token())
	_, _ = gone.Get(ctx, "user") // an unknown or expired token: not_found

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	var lines []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} count=%d", m.Name, attrs(p.Attributes), p.Count))
			}
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, attrs(p.Attributes), p.Value))
			}
		case metricdata.Gauge[int64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, attrs(p.Attributes), p.Value))
			}
		}
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))
	for _, s := range spans.GetSpans() {
		fmt.Printf("span %s {%s} status=%s\n", s.Name, attrs(attribute.NewSet(s.Attributes...)), s.Status.Code)
	}
	// Output:
	// sessionkit.store.duration{sessionkit.adapter=memory,sessionkit.operation=Create} count=1
	// sessionkit.store.duration{sessionkit.adapter=memory,sessionkit.operation=Get} count=2
	// sessionkit.store.duration{sessionkit.adapter=memory,sessionkit.operation=Rename} count=1
	// sessionkit.store.duration{sessionkit.adapter=memory,sessionkit.operation=Set} count=1
	// sessionkit.store.errors{error.type=not_found,sessionkit.adapter=memory,sessionkit.operation=Get} 1
	// sessionkit.store.errors{error.type=renewed,sessionkit.adapter=memory,sessionkit.operation=Get} 1
	// sessionkit.store.sessions{sessionkit.adapter=memory} 1
	// span sessionkit.Create {sessionkit.adapter=memory,sessionkit.operation=Create} status=Unset
	// span sessionkit.Set {sessionkit.adapter=memory,sessionkit.operation=Set} status=Unset
	// span sessionkit.Rename {sessionkit.adapter=memory,sessionkit.operation=Rename} status=Unset
	// span sessionkit.Get {error.type=renewed,sessionkit.adapter=memory,sessionkit.operation=Get} status=Unset
	// span sessionkit.Get {error.type=not_found,sessionkit.adapter=memory,sessionkit.operation=Get} status=Unset
}

// attrs prints an attribute set as Prometheus-style labels, sorted by key.
func attrs(set attribute.Set) string {
	return set.Encoded(attribute.DefaultEncoder())
}
