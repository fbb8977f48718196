package otelstore_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/otelstore"
	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// telemetry is an SDK meter and tracer provider that tests read back.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	opts   otelstore.Options
}

func newTelemetry(t testing.TB) *telemetry {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewInMemoryExporter()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return &telemetry{reader: reader, spans: spans, opts: otelstore.Options{MeterProvider: mp, TracerProvider: tp}}
}

// metrics collects the metrics, by name.
func (tm *telemetry) metrics(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tm.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, otelstore.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// durations returns the histogram's count per operation, checking that
// every point has exactly the operation and adapter attributes.
func (tm *telemetry) durations(t testing.TB, adapter string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	m, ok := tm.metrics(t)[otelstore.DurationMetric]
	if !ok {
		return out
	}
	require.Equal(t, "s", m.Unit)
	for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
		op, _ := p.Attributes.Value(otelstore.OperationKey)
		require.Equal(t, attribute.NewSet(otelstore.OperationKey.String(op.AsString()), otelstore.AdapterKey.String(adapter)), p.Attributes)
		out[op.AsString()] = p.Count
	}
	return out
}

// errorCounts returns the error counter per "operation error.type".
func (tm *telemetry) errorCounts(t testing.TB, adapter string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, ok := tm.metrics(t)[otelstore.ErrorsMetric]
	if !ok {
		return out
	}
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		op, _ := p.Attributes.Value(otelstore.OperationKey)
		kind, _ := p.Attributes.Value(otelstore.ErrorTypeKey)
		require.Equal(t, attribute.NewSet(
			otelstore.OperationKey.String(op.AsString()), otelstore.AdapterKey.String(adapter), otelstore.ErrorTypeKey.String(kind.AsString()),
		), p.Attributes)
		out[op.AsString()+" "+kind.AsString()] = p.Value
	}
	return out
}

var exp = sessionkit.Expiry{Idle: time.Hour, Absolute: 2 * time.Hour}

// secret marks every key, field name, value, user ID and other binding in
// the operations, for TestNoAttributeCarriesAKeyANameOrAValue.
const secret = "S3CR3T"

// binding binds the session under key to a user, with an index of its own.
func binding(key string) sessionkit.Binding {
	return sessionkit.Binding{
		Index: key + ":users", User: secret + "user", ID: secret + "id",
		Device: secret + "device", IP: secret + "ip", Expiry: exp,
	}
}

// bind moves the session under key to key+":bound", bound to the user of
// binding(key): what the Users operations but Bind find.
func bind(ctx context.Context, s sessionkit.Store, key string) error {
	return s.(sessionkit.Users).Bind(ctx, key, key+":bound", binding(key))
}

// operation is a call of one method, after an optional preparation.
type operation struct {
	name    string
	prepare func(ctx context.Context, s sessionkit.Store, key string) error
	call    func(ctx context.Context, s sessionkit.Store, key string) error
}

// operations calls every method of Store and of its optional interfaces
// on the session under key, which holds the fields "a" and "b", after
// prepare (if any) ran on the unwrapped store; each succeeds.
var operations = []operation{
	{"Create", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Create(ctx, key+":new", []sessionkit.Field{{Name: "a", Value: []byte("1")}}, exp)
	}},
	{"Get", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Get(ctx, key, "a", "b")
		return err
	}},
	{"GetAll", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.GetAll(ctx, key)
		return err
	}},
	{"Keys", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Keys(ctx, key)
		return err
	}},
	{"Has", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Has(ctx, key, "a")
		return err
	}},
	{"Len", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Len(ctx, key)
		return err
	}},
	{"Set", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Set(ctx, key, []sessionkit.Field{{Name: "a", Value: []byte("2")}}, 0)
	}},
	{"Delete", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Delete(ctx, key, "b")
	}},
	{"Incr", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Incr(ctx, key, "a", 1, 0)
		return err
	}},
	{"Pop", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Pop(ctx, key, "a")
		return err
	}},
	{"Clear", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Clear(ctx, key)
	}},
	{"Touch", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.Touch(ctx, key)
		return err
	}},
	{"SetExpiry", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.SetExpiry(ctx, key, sessionkit.Expiry{Idle: time.Minute, Absolute: time.Hour})
	}},
	{"Rename", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Rename(ctx, key, key+":renamed")
	}},
	{"Destroy", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return s.Destroy(ctx, key)
	}},
	{"Count", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.(sessionkit.Counter).Count(ctx, "")
		return err
	}},
	{"Bind", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		return bind(ctx, s, key)
	}},
	{"UserSessions", bind, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.(sessionkit.Users).UserSessions(ctx, binding(key).Index)
		return err
	}},
	{"Revoke", bind, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.(sessionkit.Users).Revoke(ctx, binding(key).Index, []string{binding(key).ID}, "")
		return err
	}},
	{"Info", bind, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.(sessionkit.Users).Info(ctx, key+":bound")
		return err
	}},
	{"Scan", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, _, err := s.(sessionkit.Scanner).Scan(ctx, key, "", 10)
		return err
	}},
	{"DestroyAll", nil, func(ctx context.Context, s sessionkit.Store, key string) error {
		_, err := s.(sessionkit.Scanner).DestroyAll(ctx, key)
		return err
	}},
}

// prepare runs op.prepare, if any, on the session under key in s.
func prepare(t testing.TB, s sessionkit.Store, key string, op func(context.Context, sessionkit.Store, string) error) {
	t.Helper()
	if op != nil {
		require.NoError(t, op(context.Background(), s, key))
	}
}

// newSession creates a session with the fields "a" and "b" in s directly.
func newSession(t testing.TB, s sessionkit.Store, key string, fields ...sessionkit.Field) {
	t.Helper()
	if fields == nil {
		fields = []sessionkit.Field{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}}
	}
	require.NoError(t, s.Create(context.Background(), key, fields, exp))
}

func TestEachOperationRecordsADurationAndASpan(t *testing.T) {
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			tm := newTelemetry(t)
			mem := memory.New(nil)
			newSession(t, mem, "k")
			prepare(t, mem, "k", op.prepare)
			s := otelstore.New(mem, &tm.opts)

			require.NoError(t, op.call(t.Context(), s, "k"))

			require.Equal(t, map[string]uint64{op.name: 1}, tm.durations(t, "memory"))
			require.Empty(t, tm.errorCounts(t, "memory"), "a success counts no error")
			spans := tm.spans.GetSpans()
			require.Len(t, spans, 1)
			require.Equal(t, "sessionkit."+op.name, spans[0].Name)
			require.ElementsMatch(t, []attribute.KeyValue{
				otelstore.OperationKey.String(op.name), otelstore.AdapterKey.String("memory"),
			}, spans[0].Attributes)
			require.Equal(t, codes.Unset, spans[0].Status.Code)
		})
	}
}

func TestTheStoreSeesTheSpanInItsContext(t *testing.T) {
	tm := newTelemetry(t)
	spy := &spyStore{Store: memory.New(nil)}
	require.NoError(t, otelstore.New(spy, &tm.opts).Destroy(t.Context(), "k"))
	spans := tm.spans.GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, spans[0].SpanContext, spy.span, "an adapter's own spans nest under the store span")
}

// spyStore remembers the span in the context of the last Destroy.
type spyStore struct {
	sessionkit.Store
	span trace.SpanContext
}

func (s *spyStore) Destroy(ctx context.Context, key string) error {
	s.span = trace.SpanContextFromContext(ctx)
	return s.Store.Destroy(ctx, key)
}

func TestTheAdapterNameDefaultsToTheStorePackage(t *testing.T) {
	tm := newTelemetry(t)
	s := otelstore.New(memory.New(nil), &tm.opts)
	require.NoError(t, s.Destroy(t.Context(), "k"))
	require.Equal(t, map[string]uint64{"Destroy": 1}, tm.durations(t, "memory"))

	tm = newTelemetry(t)
	tm.opts.Adapter = "cache"
	s = otelstore.New(memory.New(nil), &tm.opts)
	require.NoError(t, s.Destroy(t.Context(), "k"))
	require.Equal(t, map[string]uint64{"Destroy": 1}, tm.durations(t, "cache"))
}

// failingStore fails every Get with err.
type failingStore struct {
	sessionkit.Store
	err error
}

func (f failingStore) Get(context.Context, string, ...string) ([][]byte, error) { return nil, f.err }

func TestErrorsAreCountedByType(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel() // the caller's context, when the caller gave up
	for _, c := range []struct {
		err     error
		kind    string
		failure bool // the span's status is Error
	}{
		{sessionkit.ErrNotFound, "not_found", false},
		{fmt.Errorf("wrapped: %w", sessionkit.ErrNotFound), "not_found", false},
		{sessionkit.ErrRenewed, "renewed", false},
		{sessionkit.ErrExists, "exists", false},
		{sessionkit.ErrTooLarge, "too_large", false},
		{fmt.Errorf("x: %w: %w", sessionkit.ErrTooLarge, errors.New("SERVER_ERROR object too large")), "too_large", false},
		{sessionkit.ErrTooManyFields, "too_many_fields", false},
		{sessionkit.ErrTooManySessions, "too_many_sessions", false},
		{driver.Wrap(done, "x", context.Canceled), "canceled", false},
		{driver.Wrap(done, "x", context.DeadlineExceeded), "canceled", false},
		{driver.Wrap(context.Background(), "x", fmt.Errorf("connect: %w", context.DeadlineExceeded)), "unavailable", true}, // the client's own timeout
		{driver.Wrap(context.Background(), "x", errors.New("connection refused")), "unavailable", true},
		{errors.New("something else"), "other", true},
	} {
		t.Run(c.err.Error(), func(t *testing.T) {
			tm := newTelemetry(t)
			s := otelstore.New(failingStore{memory.New(nil), c.err}, &tm.opts)
			_, err := s.Get(t.Context(), "k", "a")
			require.Equal(t, c.err, err, "the error is returned as it is")
			_, _ = s.Get(t.Context(), "k", "a")

			require.Equal(t, map[string]int64{"Get " + c.kind: 2}, tm.errorCounts(t, "otelstore_test"))
			require.Equal(t, map[string]uint64{"Get": 2}, tm.durations(t, "otelstore_test"), "failures are timed too")
			span := tm.spans.GetSpans()[0]
			require.Contains(t, span.Attributes, otelstore.ErrorTypeKey.String(c.kind))
			if c.failure {
				require.Equal(t, sdktrace.Status{Code: codes.Error, Description: c.kind}, span.Status)
			} else {
				require.Equal(t, codes.Unset, span.Status.Code, "an expected outcome is no span error")
			}
			require.Empty(t, span.Events, "the error's text is not recorded")
		})
	}
}

func TestErrorsFromTheMemoryStoreAreCountedByType(t *testing.T) {
	tm := newTelemetry(t)
	s := otelstore.New(memory.New(nil), &tm.opts)
	ctx := t.Context()
	newSession(t, s, "k")
	require.ErrorIs(t, s.Create(ctx, "k", nil, exp), sessionkit.ErrExists)
	require.ErrorIs(t, s.Set(ctx, "k", []sessionkit.Field{{Name: "c", Value: []byte("3")}}, 2), sessionkit.ErrTooManyFields)
	require.NoError(t, s.Rename(ctx, "k", "k2"))
	_, err := s.Get(ctx, "k", "a")
	require.ErrorIs(t, err, sessionkit.ErrRenewed)
	_, err = s.Touch(ctx, "missing")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Len(cancelled, "k2")
	require.ErrorIs(t, err, context.Canceled)
	users := s.(sessionkit.Users)
	one := sessionkit.Binding{Index: "i", User: "u", ID: "1", Expiry: exp, Max: 1, Refuse: true}
	require.NoError(t, users.Bind(ctx, "", "b1", one))
	one.ID = "2"
	require.ErrorIs(t, users.Bind(ctx, "", "b2", one), sessionkit.ErrTooManySessions)
	_, err = users.Info(ctx, "missing")
	require.ErrorIs(t, err, sessionkit.ErrNotFound)

	require.Equal(t, map[string]int64{
		"Create exists":          1,
		"Set too_many_fields":    1,
		"Get renewed":            1,
		"Touch not_found":        1,
		"Len canceled":           1,
		"Bind too_many_sessions": 1,
		"Info not_found":         1,
	}, tm.errorCounts(t, "memory"))
	spans := tm.spans.GetSpans()
	require.Equal(t, "sessionkit.Bind", spans[len(spans)-2].Name)
	require.Equal(t, codes.Unset, spans[len(spans)-2].Status.Code, "a refusal by the cap is an expected outcome")
}

func TestNoAttributeCarriesAKeyANameOrAValue(t *testing.T) {
	tm := newTelemetry(t)
	mem := memory.New(nil)
	s := otelstore.New(mem, &tm.opts)
	ctx := t.Context()
	key := "session:{" + secret + "key}" + secret
	fields := []sessionkit.Field{{Name: secret + "name", Value: []byte(secret + "value")}}
	newSession(t, s, key, fields...)
	for _, op := range operations {
		newSession(t, mem, key+op.name, fields...)
		prepare(t, mem, key+op.name, op.prepare)
		require.NoError(t, op.call(ctx, s, key+op.name), op.name)
	}
	// A login refused by the user's cap, which names the user.
	over := binding(key + "UserSessions")
	over.ID, over.Max, over.Refuse = secret+"other", 1, true
	require.ErrorIs(t, s.(sessionkit.Users).Bind(ctx, "", key+":over", over), sessionkit.ErrTooManySessions)
	require.Error(t, s.Create(ctx, key, fields, exp))
	require.Error(t, s.Set(ctx, key, []sessionkit.Field{{Name: secret + "other", Value: []byte(secret)}}, 1))
	_, err := s.Get(ctx, key+"Rename", secret+"name")
	require.ErrorIs(t, err, sessionkit.ErrRenewed)
	// An adapter's error text may well name the key.
	failing := otelstore.New(failingStore{mem, fmt.Errorf("redis: key %s: %w", key, sessionkit.ErrUnavailable)}, &tm.opts)
	_, err = failing.Get(ctx, key, secret+"name")
	require.Error(t, err)

	var seen int
	check := func(where string, kvs ...attribute.KeyValue) {
		for _, kv := range kvs {
			seen++
			require.NotContains(t, string(kv.Key)+"="+kv.Value.Emit(), secret, where)
		}
	}
	for name, m := range tm.metrics(t) {
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				check(name, p.Attributes.ToSlice()...)
			}
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				check(name, p.Attributes.ToSlice()...)
			}
		case metricdata.Gauge[int64]:
			for _, p := range d.DataPoints {
				check(name, p.Attributes.ToSlice()...)
			}
		default:
			t.Fatalf("%s: unexpected %T", name, d)
		}
	}
	spans := tm.spans.GetSpans()
	require.Len(t, spans, 1+len(operations)+5)
	for _, span := range spans {
		require.NotContains(t, span.Name, secret)
		require.NotContains(t, span.Status.Description, secret)
		check(span.Name, span.Attributes...)
		for _, e := range span.Events {
			require.NotContains(t, e.Name, secret)
			check(span.Name+" event", e.Attributes...)
		}
	}
	require.Greater(t, seen, 2*len(spans), "the check saw the attributes")
}

func TestTheGaugeReportsLiveSessions(t *testing.T) {
	for _, prefix := range []string{"", "app:"} { // the default, Options.KeyPrefix
		t.Run("prefix="+prefix, func(t *testing.T) {
			tm := newTelemetry(t)
			tm.opts.KeyPrefix = prefix
			clock := adaptertest.NewClock()
			mem := memory.New(&memory.Options{Clock: clock.Now})
			s := otelstore.New(mem, &tm.opts)
			m, err := sessionkit.New(&sessionkit.Options{Store: s, KeyPrefix: prefix})
			require.NoError(t, err)
			ctx := t.Context()
			live := func() int64 {
				t.Helper()
				m, ok := tm.metrics(t)[otelstore.SessionsMetric]
				require.True(t, ok, "the gauge is reported")
				require.Equal(t, "{session}", m.Unit)
				points := m.Data.(metricdata.Gauge[int64]).DataPoints
				require.Len(t, points, 1)
				require.Equal(t, attribute.NewSet(otelstore.AdapterKey.String("memory")), points[0].Attributes)
				return points[0].Value
			}
			require.Equal(t, int64(0), live())
			var keys []string
			for range 3 { // the Manager's sessions, under its storage keys
				keys = append(keys, m.StorageKey(m.NewSession().Token()))
				newSession(t, s, keys[len(keys)-1])
			}
			// Not the Manager's: another Manager's, and a key outside the
			// Manager's hash-tagged keys.
			keyPrefix := prefix
			if keyPrefix == "" {
				keyPrefix = sessionkit.DefaultKeyPrefix
			}
			newSession(t, mem, "other:{x}y")
			newSession(t, mem, keyPrefix+"plain")
			require.Equal(t, int64(3), live())
			n, err := m.Count(ctx)
			require.NoError(t, err)
			require.Equal(t, 3, n, "the gauge counts what Manager.Count counts")
			require.NoError(t, s.Destroy(ctx, keys[0]))
			require.Equal(t, int64(2), live())
			require.NoError(t, s.Rename(ctx, keys[1], m.StorageKey(m.NewSession().Token())))
			require.Equal(t, int64(2), live(), "a Rename marker is not a session")
			clock.Advance(exp.Idle)
			require.Equal(t, int64(0), live(), "expired sessions are not live, swept or not")
		})
	}
}

func TestNoGaugeWithoutACounter(t *testing.T) {
	tm := newTelemetry(t)
	s := otelstore.New(storeOnly{memory.New(nil)}, &tm.opts)
	require.NoError(t, s.Destroy(t.Context(), "k"))
	require.NotContains(t, tm.metrics(t), otelstore.SessionsMetric)
}

// storeOnly hides every method of a store but the Store interface's.
type storeOnly struct{ sessionkit.Store }

// capabilities lists each optional interface of package sessionkit with a
// check for it and the operations of its methods. TestCapabilitiesArePreserved
// fails when sessionkit gains one that is not listed here: New must then be
// taught to keep it.
var capabilities = map[string]struct {
	has func(sessionkit.Store) bool
	ops []string
}{
	"Counter": {func(s sessionkit.Store) bool { _, ok := s.(sessionkit.Counter); return ok }, []string{"Count"}},
	"Users": {func(s sessionkit.Store) bool { _, ok := s.(sessionkit.Users); return ok },
		[]string{"Bind", "UserSessions", "Revoke", "Info"}},
	"Scanner": {func(s sessionkit.Store) bool { _, ok := s.(sessionkit.Scanner); return ok }, []string{"Scan", "DestroyAll"}},
}

// withCapabilities returns mem as a store with each combination of the
// optional interfaces.
func withCapabilities(mem *memory.Store) []sessionkit.Store {
	type (
		C = sessionkit.Counter
		U = sessionkit.Users
		S = sessionkit.Scanner
	)
	return []sessionkit.Store{
		storeOnly{mem},
		struct {
			sessionkit.Store
			C
		}{mem, mem},
		struct {
			sessionkit.Store
			U
		}{mem, mem},
		struct {
			sessionkit.Store
			S
		}{mem, mem},
		struct {
			sessionkit.Store
			C
			U
		}{mem, mem, mem},
		struct {
			sessionkit.Store
			C
			S
		}{mem, mem, mem},
		struct {
			sessionkit.Store
			U
			S
		}{mem, mem, mem},
		mem,
	}
}

func TestCapabilitiesArePreserved(t *testing.T) {
	require.ElementsMatch(t, keys(capabilities), optionalInterfaces(t),
		"every optional Store interface of package sessionkit is checked here")
	combinations := map[string]bool{}
	for _, inner := range withCapabilities(memory.New(nil)) {
		var has []string
		for name, c := range capabilities {
			if c.has(inner) {
				has = append(has, name)
			}
		}
		slices.Sort(has)
		combinations[strings.Join(has, "+")] = true
		for _, opts := range []otelstore.Options{
			{},
			{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()},
			newTelemetry(t).opts,
		} {
			wrapped := otelstore.New(inner, &opts)
			for name, c := range capabilities {
				require.Equal(t, c.has(inner), c.has(wrapped), "%s of %s", name, has)
			}
		}
	}
	require.Len(t, combinations, 1<<len(capabilities), "every combination is checked")
}

// TestEachCombinationForwardsItsMethods calls each method of each optional
// interface that the wrapped store has, for each combination: each reaches
// the store and is recorded.
func TestEachCombinationForwardsItsMethods(t *testing.T) {
	mem := memory.New(nil)
	for i, inner := range withCapabilities(mem) {
		tm := newTelemetry(t)
		tm.opts.Adapter = "memory"
		s := otelstore.New(inner, &tm.opts)
		want := map[string]uint64{}
		for _, c := range capabilities {
			if !c.has(inner) {
				continue
			}
			for _, name := range c.ops {
				op := operations[slices.IndexFunc(operations, func(op operation) bool { return op.name == name })]
				key := fmt.Sprint("k", i, name)
				newSession(t, mem, key)
				prepare(t, mem, key, op.prepare)
				require.NoError(t, op.call(t.Context(), s, key), name)
				want[name] = 1
			}
		}
		require.Equal(t, want, tm.durations(t, "memory"), "%T", inner)
	}
}

// optionalInterfaces returns the interfaces that package sessionkit (or a
// package under it) documents as optional for a Store, with the
// database/sql/driver template ("X is an optional interface that may be
// implemented by a Store").
func optionalInterfaces(t *testing.T) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir("../sessionkit", func(dir string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "testdata" {
			return filepath.SkipDir
		}
		pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments)
		for _, pkg := range pkgs {
			for _, f := range pkg.Files {
				ast.Inspect(f, func(n ast.Node) bool {
					gen, ok := n.(*ast.GenDecl)
					if !ok || gen.Tok != token.TYPE {
						return true
					}
					for _, spec := range gen.Specs {
						ts := spec.(*ast.TypeSpec)
						doc := ts.Doc
						if doc == nil {
							doc = gen.Doc
						}
						if _, isInterface := ts.Type.(*ast.InterfaceType); isInterface && doc != nil &&
							strings.Contains(strings.Join(strings.Fields(doc.Text()), " "), "optional interface that may be implemented by a Store") {
							out = append(out, ts.Name.Name)
						}
					}
					return false
				})
			}
		}
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, out, "the parse found sessionkit.Counter at least")
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T) *adaptertest.Harness {
		clock := adaptertest.NewClock()
		mem := memory.New(&memory.Options{Clock: clock.Now})
		hooks := testhook.Of(mem)
		return &adaptertest.Harness{
			Store:   otelstore.New(mem, &newTelemetry(t).opts),
			Now:     clock.Now,
			Advance: clock.Advance,
			TTL:     hooks.TTL,
			SetRaw:  hooks.SetRaw,
			IndexEntries: func(_ context.Context, index string) (int, error) {
				return hooks.(testhook.IndexHooks).IndexEntries(index), nil
			},
		}
	})
}

func TestNoOpProvidersAddNoAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	ctx := context.Background()
	for _, op := range operations {
		for _, key := range []string{"k", "missing"} {
			// A store of its own: an operation that changes what the next
			// run finds (Create, Rename, Bind, …) does so in the warm-up
			// run of AllocsPerRun, and every measured run finds the same.
			mem := memory.New(nil)
			newSession(t, mem, "k")
			prepare(t, mem, "k", op.prepare)
			s := otelstore.New(mem, &otelstore.Options{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
			plain := testing.AllocsPerRun(100, func() { _ = op.call(ctx, mem, key) })
			wrapped := testing.AllocsPerRun(100, func() { _ = op.call(ctx, s, key) })
			require.Equal(t, plain, wrapped, "%s of %s", op.name, key)
		}
	}
}

// TestSpansStartOnceAGlobalSDKIsInstalled installs global providers, which
// no test can take back, so it runs in a process of its own.
func TestSpansStartOnceAGlobalSDKIsInstalled(t *testing.T) {
	const env = "OTELSTORE_TEST_GLOBAL"
	if os.Getenv(env) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), env+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "PASS")
		return
	}
	s := otelstore.New(memory.New(nil), nil) // the globals, before any SDK
	require.NoError(t, s.Destroy(t.Context(), "k"))

	tm := newTelemetry(t)
	otel.SetMeterProvider(tm.opts.MeterProvider)
	otel.SetTracerProvider(tm.opts.TracerProvider)
	require.NoError(t, s.Destroy(t.Context(), "k"))
	require.Equal(t, map[string]uint64{"Destroy": 1}, tm.durations(t, "memory"), "only the call after the SDK is recorded")
	spans := tm.spans.GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, "sessionkit.Destroy", spans[0].Name)
}
