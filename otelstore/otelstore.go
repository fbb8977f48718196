package otelstore

import (
	"context"
	"errors"
	"path"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/sessionkit/sessionkit/otelstore"

// The instruments' names, in OpenTelemetry semantic-convention style.
const (
	DurationMetric = "sessionkit.store.duration" // histogram, s: every operation
	ErrorsMetric   = "sessionkit.store.errors"   // counter: failed operations, by error.type
	SessionsMetric = "sessionkit.store.sessions" // gauge: live sessions (stores that implement sessionkit.Counter)
)

// The attribute keys. No other attribute is ever recorded.
const (
	OperationKey = attribute.Key("sessionkit.operation") // "Get", "Set", … (the Store method)
	AdapterKey   = attribute.Key("sessionkit.adapter")   // Options.Adapter
	ErrorTypeKey = attribute.Key("error.type")           // "not_found", "unavailable", … (see the package doc)
)

// durationBuckets suit a store operation: from an in-process store's
// microseconds to a network backend's timeouts.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Options configures New. The zero value means defaults.
type Options struct {
	// MeterProvider records the metrics. Default otel.GetMeterProvider(),
	// the global, which forwards to the SDK that otel.SetMeterProvider
	// installs, before or after New.
	MeterProvider metric.MeterProvider
	// TracerProvider records the spans. Default otel.GetTracerProvider(),
	// the global, which forwards likewise.
	TracerProvider trace.TracerProvider
	// Adapter is the value of the sessionkit.adapter attribute, e.g.
	// "redis". Default: the last element of the store's package path
	// ("redishash" for a *redishash.Store).
	Adapter string
	// KeyPrefix is the Manager's key prefix (Options.KeyPrefix): the
	// sessions gauge counts that Manager's sessions, as Manager.Count does.
	// Default sessionkit.DefaultKeyPrefix.
	KeyPrefix string
}

// operation is a method of Store or of one of its optional interfaces.
type operation int

const (
	opCreate operation = iota
	opGet
	opGetAll
	opKeys
	opHas
	opLen
	opSet
	opDelete
	opIncr
	opPop
	opClear
	opTouch
	opSetExpiry
	opRename
	opDestroy
	opCount        // Counter
	opBind         // Users
	opUserSessions // Users
	opRevoke       // Users
	opInfo         // Users
	opScan         // Scanner
	opDestroyAll   // Scanner
	numOperations
)

var operationNames = [numOperations]string{
	"Create", "Get", "GetAll", "Keys", "Has", "Len", "Set", "Delete", "Incr", "Pop", "Clear",
	"Touch", "SetExpiry", "Rename", "Destroy", "Count",
	"Bind", "UserSessions", "Revoke", "Info", "Scan", "DestroyAll",
}

// opInstruments holds what New precomputes for one operation, so a call
// builds no attribute set and no option slice.
type opInstruments struct {
	spanName string
	spanOpts []trace.SpanStartOption
	record   []metric.RecordOption
	errors   [numErrorTypes][]metric.AddOption
}

// instrumented is the Store New returns for a store that implements none
// of the optional interfaces; it records the Store methods.
type instrumented struct {
	store  sessionkit.Store
	tracer trace.Tracer // nil: the no-op TracerProvider, no span to start
	// unsetTracer and unsetMeter are the otel global providers while no
	// SDK is installed, when the instruments come from them: until
	// otel.SetTracerProvider and otel.SetMeterProvider replace them, they
	// record nothing, and the wrapper skips them.
	unsetTracer trace.TracerProvider
	unsetMeter  metric.MeterProvider
	noMetrics   bool // the no-op MeterProvider
	duration    metric.Float64Histogram
	errors      metric.Int64Counter
	ops         [numOperations]opInstruments
}

// counterOps, usersOps and scannerOps record the methods of an optional
// interface, passing each call to the wrapped store's implementation.
type (
	counterOps struct {
		w       *instrumented
		counter sessionkit.Counter
	}
	usersOps struct {
		w     *instrumented
		users sessionkit.Users
	}
	scannerOps struct {
		w       *instrumented
		scanner sessionkit.Scanner
	}
)

// The Stores New returns for a store with optional interfaces: one type for
// each combination, which embeds the ops of each interface the store
// implements and no others (C Counter, U Users, S Scanner).
type (
	storeC struct {
		*instrumented
		counterOps
	}
	storeU struct {
		*instrumented
		usersOps
	}
	storeS struct {
		*instrumented
		scannerOps
	}
	storeCU struct {
		*instrumented
		counterOps
		usersOps
	}
	storeCS struct {
		*instrumented
		counterOps
		scannerOps
	}
	storeUS struct {
		*instrumented
		usersOps
		scannerOps
	}
	storeCUS struct {
		*instrumented
		counterOps
		usersOps
		scannerOps
	}
)

var (
	_ sessionkit.Store   = (*instrumented)(nil)
	_ sessionkit.Counter = counterOps{}
	_ sessionkit.Users   = usersOps{}
	_ sessionkit.Scanner = scannerOps{}
	_ interface {
		sessionkit.Counter
		sessionkit.Users
		sessionkit.Scanner
	} = storeCUS{}
)

// withCapabilities returns w with the methods of each optional interface
// that store implements, so that the Manager finds the same capabilities
// in the wrapper as in the store.
func withCapabilities(w *instrumented, store sessionkit.Store) sessionkit.Store {
	counter, isCounter := store.(sessionkit.Counter)
	users, isUsers := store.(sessionkit.Users)
	scanner, isScanner := store.(sessionkit.Scanner)
	c, u, s := counterOps{w, counter}, usersOps{w, users}, scannerOps{w, scanner}
	switch {
	case isCounter && isUsers && isScanner:
		return storeCUS{w, c, u, s}
	case isCounter && isUsers:
		return storeCU{w, c, u}
	case isCounter && isScanner:
		return storeCS{w, c, s}
	case isUsers && isScanner:
		return storeUS{w, u, s}
	case isCounter:
		return storeC{w, c}
	case isUsers:
		return storeU{w, u}
	case isScanner:
		return storeS{w, s}
	default:
		return w
	}
}

// New returns a Store that passes every call to store and records its
// duration, its error type and a span (see the package doc). It
// implements each of sessionkit.Counter, sessionkit.Users and
// sessionkit.Scanner exactly when store does, and reports the live
// sessions as a gauge when store is a Counter.
//
// opts may be nil for the defaults.
//
// New never fails: an error from a provider (there is none with the
// OpenTelemetry SDK, whose name rules the instruments follow) goes to
// otel.Handle.
func New(store sessionkit.Store, opts *Options) sessionkit.Store {
	if opts == nil {
		opts = &Options{}
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	adapter := opts.Adapter
	if adapter == "" {
		adapter = adapterName(store)
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = sessionkit.DefaultKeyPrefix
	}
	prefix += "{" // the keys of the Manager's sessions, as Manager.Count counts them
	meter := mp.Meter(ScopeName)
	w := &instrumented{store: store}
	// A span that records nothing still costs a context and a span value
	// per call: skip those of the no-op provider and of the unset global.
	if _, noop := tp.(tracenoop.TracerProvider); !noop {
		w.tracer = tp.Tracer(ScopeName)
	}
	if isUnsetGlobal(tp) {
		w.unsetTracer = tp
	}
	_, w.noMetrics = mp.(metricnoop.MeterProvider)
	if isUnsetGlobal(mp) {
		w.unsetMeter = mp
	}
	var err error
	w.duration, err = meter.Float64Histogram(DurationMetric,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of sessionkit store operations."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	handle(err)
	w.errors, err = meter.Int64Counter(ErrorsMetric,
		metric.WithUnit("{error}"),
		metric.WithDescription("Failed sessionkit store operations, by error type."))
	handle(err)

	adapterKV := AdapterKey.String(adapter)
	for op := range numOperations {
		opKV := OperationKey.String(operationNames[op])
		in := &w.ops[op]
		in.spanName = "sessionkit." + operationNames[op]
		in.spanOpts = []trace.SpanStartOption{trace.WithAttributes(opKV, adapterKV)}
		in.record = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(opKV, adapterKV))}
		for t := range numErrorTypes {
			set := attribute.NewSet(opKV, adapterKV, t.attribute()[0])
			in.errors[t] = []metric.AddOption{metric.WithAttributeSet(set)}
		}
	}

	if counter, ok := store.(sessionkit.Counter); ok {
		registerGauge(meter, counter, prefix, adapterKV)
	}
	return withCapabilities(w, store)
}

// registerGauge reports, at each collection, the live sessions whose key
// starts with prefix, as the counter counts them.
func registerGauge(meter metric.Meter, counter sessionkit.Counter, prefix string, adapterKV attribute.KeyValue) {
	gauge, err := meter.Int64ObservableGauge(SessionsMetric,
		metric.WithUnit("{session}"),
		metric.WithDescription("Live sessions in the store, counted at collection time."))
	handle(err)
	if err == nil {
		gaugeOpts := []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(adapterKV))}
		_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
			n, err := counter.Count(ctx, prefix)
			if err != nil {
				return err
			}
			o.ObserveInt64(gauge, int64(n), gaugeOpts...)
			return nil
		}, gauge)
		handle(err)
	}
}

// isUnsetGlobal reports whether provider is one of the delegating
// providers that otel.GetTracerProvider and otel.GetMeterProvider return
// until an SDK is installed. Should a new OpenTelemetry release move them,
// the check fails safe: the wrapper records to them.
func isUnsetGlobal(provider any) bool {
	t := reflect.TypeOf(provider)
	return t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global"
}

// handle passes an error creating an instrument to the OpenTelemetry error
// handler; the instrument a provider returns with it still works.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// adapterName names a store by its package: "memory" for *memory.Store,
// "redis" for a type of example.com/redis/v2.
func adapterName(store any) string {
	t := reflect.TypeOf(store)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() == "" {
		return t.String()
	}
	dir, name := path.Split(t.PkgPath())
	if isMajorVersion(name) && dir != "" {
		name = path.Base(dir)
	}
	return name
}

// isMajorVersion reports whether a path element is a module's major
// version suffix, such as "v2".
func isMajorVersion(elem string) bool {
	if len(elem) < 2 || elem[0] != 'v' {
		return false
	}
	for _, r := range elem[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// call is one operation in progress. It lives on the caller's stack.
type call struct {
	w     *instrumented
	op    operation
	span  trace.Span // nil when there is no tracer
	start time.Time  // zero when the duration is not recorded
}

// idle reports whether nothing would record a call: the providers are
// the no-op ones, or the globals before an SDK is installed. The call then
// goes straight to the store.
func (w *instrumented) idle() bool {
	return (w.tracer == nil || w.unsetTracer != nil && otel.GetTracerProvider() == w.unsetTracer) &&
		(w.noMetrics || w.unsetMeter != nil && otel.GetMeterProvider() == w.unsetMeter)
}

// begin starts the span and the clock of an operation and returns the
// context to pass to the store, which carries the span.
func (w *instrumented) begin(ctx context.Context, op operation) (context.Context, call) {
	c := call{w: w, op: op}
	if w.tracer != nil && (w.unsetTracer == nil || otel.GetTracerProvider() != w.unsetTracer) {
		ctx, c.span = w.tracer.Start(ctx, w.ops[op].spanName, w.ops[op].spanOpts...)
	}
	if w.duration.Enabled(ctx) {
		c.start = time.Now()
	}
	return ctx, c
}

// end records the operation's outcome and ends its span.
func (c call) end(ctx context.Context, err error) {
	in := &c.w.ops[c.op]
	if !c.start.IsZero() {
		c.w.duration.Record(ctx, time.Since(c.start).Seconds(), in.record...)
	}
	if err != nil {
		t := classify(err)
		if c.w.errors.Enabled(ctx) {
			c.w.errors.Add(ctx, 1, in.errors[t]...)
		}
		if c.span != nil && c.span.IsRecording() {
			// The error's text may name a key: only its type is recorded.
			c.span.SetAttributes(t.attribute()...)
			if t.isFailure() {
				c.span.SetStatus(codes.Error, t.String())
			}
		}
	}
	if c.span != nil {
		c.span.End()
	}
}

func (w *instrumented) Create(ctx context.Context, key string, fields []sessionkit.Field, exp sessionkit.Expiry) error {
	if w.idle() {
		return w.store.Create(ctx, key, fields, exp)
	}
	ctx, c := w.begin(ctx, opCreate)
	err := w.store.Create(ctx, key, fields, exp)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Get(ctx context.Context, key string, names ...string) ([][]byte, error) {
	if w.idle() {
		return w.store.Get(ctx, key, names...)
	}
	ctx, c := w.begin(ctx, opGet)
	values, err := w.store.Get(ctx, key, names...)
	c.end(ctx, err)
	return values, err
}

func (w *instrumented) GetAll(ctx context.Context, key string) (map[string][]byte, error) {
	if w.idle() {
		return w.store.GetAll(ctx, key)
	}
	ctx, c := w.begin(ctx, opGetAll)
	fields, err := w.store.GetAll(ctx, key)
	c.end(ctx, err)
	return fields, err
}

func (w *instrumented) Keys(ctx context.Context, key string) ([]string, error) {
	if w.idle() {
		return w.store.Keys(ctx, key)
	}
	ctx, c := w.begin(ctx, opKeys)
	names, err := w.store.Keys(ctx, key)
	c.end(ctx, err)
	return names, err
}

func (w *instrumented) Has(ctx context.Context, key, name string) (bool, error) {
	if w.idle() {
		return w.store.Has(ctx, key, name)
	}
	ctx, c := w.begin(ctx, opHas)
	ok, err := w.store.Has(ctx, key, name)
	c.end(ctx, err)
	return ok, err
}

func (w *instrumented) Len(ctx context.Context, key string) (int, error) {
	if w.idle() {
		return w.store.Len(ctx, key)
	}
	ctx, c := w.begin(ctx, opLen)
	n, err := w.store.Len(ctx, key)
	c.end(ctx, err)
	return n, err
}

func (w *instrumented) Set(ctx context.Context, key string, fields []sessionkit.Field, maxFields int) error {
	if w.idle() {
		return w.store.Set(ctx, key, fields, maxFields)
	}
	ctx, c := w.begin(ctx, opSet)
	err := w.store.Set(ctx, key, fields, maxFields)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Delete(ctx context.Context, key string, names ...string) error {
	if w.idle() {
		return w.store.Delete(ctx, key, names...)
	}
	ctx, c := w.begin(ctx, opDelete)
	err := w.store.Delete(ctx, key, names...)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Incr(ctx context.Context, key, name string, delta int64, maxFields int) (int64, error) {
	if w.idle() {
		return w.store.Incr(ctx, key, name, delta, maxFields)
	}
	ctx, c := w.begin(ctx, opIncr)
	n, err := w.store.Incr(ctx, key, name, delta, maxFields)
	c.end(ctx, err)
	return n, err
}

func (w *instrumented) Pop(ctx context.Context, key, name string) ([]byte, error) {
	if w.idle() {
		return w.store.Pop(ctx, key, name)
	}
	ctx, c := w.begin(ctx, opPop)
	v, err := w.store.Pop(ctx, key, name)
	c.end(ctx, err)
	return v, err
}

func (w *instrumented) Clear(ctx context.Context, key string) error {
	if w.idle() {
		return w.store.Clear(ctx, key)
	}
	ctx, c := w.begin(ctx, opClear)
	err := w.store.Clear(ctx, key)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Touch(ctx context.Context, key string) (time.Duration, error) {
	if w.idle() {
		return w.store.Touch(ctx, key)
	}
	ctx, c := w.begin(ctx, opTouch)
	ttl, err := w.store.Touch(ctx, key)
	c.end(ctx, err)
	return ttl, err
}

func (w *instrumented) SetExpiry(ctx context.Context, key string, exp sessionkit.Expiry) error {
	if w.idle() {
		return w.store.SetExpiry(ctx, key, exp)
	}
	ctx, c := w.begin(ctx, opSetExpiry)
	err := w.store.SetExpiry(ctx, key, exp)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Rename(ctx context.Context, oldKey, newKey string) error {
	if w.idle() {
		return w.store.Rename(ctx, oldKey, newKey)
	}
	ctx, c := w.begin(ctx, opRename)
	err := w.store.Rename(ctx, oldKey, newKey)
	c.end(ctx, err)
	return err
}

func (w *instrumented) Destroy(ctx context.Context, key string) error {
	if w.idle() {
		return w.store.Destroy(ctx, key)
	}
	ctx, c := w.begin(ctx, opDestroy)
	err := w.store.Destroy(ctx, key)
	c.end(ctx, err)
	return err
}

// The optional interfaces' methods pass each call to the wrapped store,
// recorded like every other operation.

func (o counterOps) Count(ctx context.Context, prefix string) (int, error) {
	if o.w.idle() {
		return o.counter.Count(ctx, prefix)
	}
	ctx, c := o.w.begin(ctx, opCount)
	n, err := o.counter.Count(ctx, prefix)
	c.end(ctx, err)
	return n, err
}

func (o usersOps) Bind(ctx context.Context, oldKey, newKey string, b sessionkit.Binding) error {
	if o.w.idle() {
		return o.users.Bind(ctx, oldKey, newKey, b)
	}
	ctx, c := o.w.begin(ctx, opBind)
	err := o.users.Bind(ctx, oldKey, newKey, b)
	c.end(ctx, err)
	return err
}

func (o usersOps) UserSessions(ctx context.Context, index string) ([]sessionkit.SessionInfo, error) {
	if o.w.idle() {
		return o.users.UserSessions(ctx, index)
	}
	ctx, c := o.w.begin(ctx, opUserSessions)
	infos, err := o.users.UserSessions(ctx, index)
	c.end(ctx, err)
	return infos, err
}

func (o usersOps) Revoke(ctx context.Context, index string, ids []string, except string) (int, error) {
	if o.w.idle() {
		return o.users.Revoke(ctx, index, ids, except)
	}
	ctx, c := o.w.begin(ctx, opRevoke)
	n, err := o.users.Revoke(ctx, index, ids, except)
	c.end(ctx, err)
	return n, err
}

func (o usersOps) Info(ctx context.Context, key string) (sessionkit.SessionInfo, error) {
	if o.w.idle() {
		return o.users.Info(ctx, key)
	}
	ctx, c := o.w.begin(ctx, opInfo)
	info, err := o.users.Info(ctx, key)
	c.end(ctx, err)
	return info, err
}

func (o scannerOps) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	if o.w.idle() {
		return o.scanner.Scan(ctx, prefix, cursor, limit)
	}
	ctx, c := o.w.begin(ctx, opScan)
	page, next, err := o.scanner.Scan(ctx, prefix, cursor, limit)
	c.end(ctx, err)
	return page, next, err
}

func (o scannerOps) DestroyAll(ctx context.Context, prefix string) (int, error) {
	if o.w.idle() {
		return o.scanner.DestroyAll(ctx, prefix)
	}
	ctx, c := o.w.begin(ctx, opDestroyAll)
	n, err := o.scanner.DestroyAll(ctx, prefix)
	c.end(ctx, err)
	return n, err
}

// errorType is the kind of a store error, the value of the error.type
// attribute.
type errorType int

// The error types, by the sentinel the error matches.
const (
	notFound        errorType = iota // sessionkit.ErrNotFound: an expected outcome (no such session)
	renewed                          // sessionkit.ErrRenewed: an expected outcome (a stale token)
	exists                           // sessionkit.ErrExists
	tooLarge                         // sessionkit.ErrTooLarge
	tooManyFields                    // sessionkit.ErrTooManyFields
	tooManySessions                  // sessionkit.ErrTooManySessions: a Bind refused by the user's cap
	canceled                         // context.Canceled or context.DeadlineExceeded
	unavailable                      // sessionkit.ErrUnavailable: the backend failed
	other                            // none of the above
	numErrorTypes
)

var errorTypeNames = [numErrorTypes]string{
	"not_found", "renewed", "exists", "too_large", "too_many_fields", "too_many_sessions", "canceled", "unavailable", "other",
}

// errorTypeAttrs are the span attributes, built once so that setting one
// allocates nothing.
var errorTypeAttrs = func() (a [numErrorTypes][]attribute.KeyValue) {
	for t := range numErrorTypes {
		a[t] = []attribute.KeyValue{ErrorTypeKey.String(errorTypeNames[t])}
	}
	return a
}()

func (t errorType) String() string { return errorTypeNames[t] }

func (t errorType) attribute() []attribute.KeyValue { return errorTypeAttrs[t] }

// isFailure reports whether the error is the store's failure, one that
// sets a span's status to Error. The others are outcomes the caller
// expects (not_found, renewed) or caused.
func (t errorType) isFailure() bool { return t == unavailable || t == other }

// classify returns the type of a non-nil error from a Store. The context's
// errors come first: an adapter returns them, not ErrUnavailable, when the
// caller gave up. The specific sentinels come before ErrUnavailable, which a
// backend's own refusal (a value too large for it) may wrap as well.
func classify(err error) errorType {
	switch {
	case errors.Is(err, sessionkit.ErrUnavailable):
		// First: a client's own timeout wraps a context error too, and it
		// is an outage, not the caller giving up (see driver.Wrap).
		return unavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return canceled
	case errors.Is(err, sessionkit.ErrNotFound):
		return notFound
	case errors.Is(err, sessionkit.ErrRenewed):
		return renewed
	case errors.Is(err, sessionkit.ErrExists):
		return exists
	case errors.Is(err, sessionkit.ErrTooLarge):
		return tooLarge
	case errors.Is(err, sessionkit.ErrTooManyFields):
		return tooManyFields
	case errors.Is(err, sessionkit.ErrTooManySessions):
		return tooManySessions
	default:
		return other
	}
}
