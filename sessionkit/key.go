package sessionkit

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Key is a session key whose values have the Go type T. Declare each key
// once, next to the code that owns it:
//
//	var visits = sessionkit.NewKey[int]("visits")
//
//	n, found, err := visits.Get(ctx, s) // found is false when the key is not set
//	err = visits.Set(ctx, s, n+1)
//
// Each call is one store operation, through the Manager's codec. With the
// default JSONCodec, keys of type string, int, int64, float64 and bool are
// lenient about hand edits: they read a value edited with redis-cli as the
// other kinds of scalar where it has one meaning (the number 7 as the string
// "7", the string "7" or the number 7.0 as the int 7), and a string key
// reads bytes that are not JSON as the string they spell. Every other T
// decodes through the codec as it is. A value that does not fit T is
// ErrDecode, and Get then returns T's zero value, never a part-filled one.
type Key[T any] struct{ name string }

// NewKey returns the key of that name. It panics if the name is not a
// valid session key (empty, over MaxKeyLength bytes, not UTF-8, or starting
// with ReservedPrefix), as regexp.MustCompile does for a bad pattern: keys
// are declared once, by the program.
func NewKey[T any](name string) Key[T] {
	if err := checkKey(name); err != nil {
		panic(err)
	}
	return Key[T]{name: name}
}

// Name returns the key's name.
func (k Key[T]) Name() string { return k.name }

// Get returns the value of the key in s, and whether it was set. When it
// was not, the value is T's zero value and found is false.
func (k Key[T]) Get(ctx context.Context, s *Session) (v T, found bool, err error) {
	b, err := s.getRaw(ctx, k.name)
	if err != nil || b == nil {
		return v, false, err
	}
	v, err = decodeAs[T](s.m, k.name, b)
	return v, true, err
}

// Set stores v under the key in s: see Session.Set.
func (k Key[T]) Set(ctx context.Context, s *Session, v T) error {
	if s.m.jsonCodec && checkKey(k.name) == nil {
		s.mu.Lock()
		// Stores do not keep the bytes passed in, so the handle's scratch
		// holds them.
		if b, ok := appendJSON(s.scratch[:0], v); ok && (s.m.maxValueSize <= 0 || len(b) <= s.m.maxValueSize) {
			defer s.mu.Unlock()
			s.used = true
			s.one[0] = Field{Name: k.name, Value: b}
			defer func() { s.one[0] = Field{} }()
			return s.writeLocked(ctx, s.one[:])
		}
		s.mu.Unlock()
	}
	return s.Set(ctx, k.name, v) // the codec, and every error, as Session.Set has them
}

// Delete removes the key from s.
func (k Key[T]) Delete(ctx context.Context, s *Session) error {
	return s.Delete(ctx, k.name)
}

// Pop returns the value of the key in s and removes the key, in one atomic
// store operation: see [Session.Pop].
func (k Key[T]) Pop(ctx context.Context, s *Session) (v T, found bool, err error) {
	b, err := s.popRaw(ctx, k.name)
	if err != nil || b == nil {
		return v, false, err
	}
	v, err = decodeAs[T](s.m, k.name, b)
	return v, true, err
}

// Into binds the key to p, for [Session.GetMany]: the key's value is
// decoded into *p, which is left alone when the key is not set.
func (k Key[T]) Into(p *T) Target { return target[T]{k: k, p: p} }

// Target is a key bound to where its value goes: see [Key.Into].
type Target interface {
	keyName() string
	decode(m *Manager, b []byte) error
}

type target[T any] struct {
	k Key[T]
	p *T
}

func (t target[T]) keyName() string { return t.k.name }

func (t target[T]) decode(m *Manager, b []byte) (err error) {
	*t.p, err = decodeAs[T](m, t.k.name, b)
	return err
}

// GetMany reads several keys in one store operation, each decoded into the
// place its Target names, and reports which were set, in order:
//
//	var name, role string
//	found, err := s.GetMany(ctx, user.Into(&name), roleKey.Into(&role))
//
// found[i] is false when the i-th key is not set (its place is left
// alone). A value that does not decode stops nothing: the others are still
// decoded, and the error (ErrDecode) names the first that failed.
func (s *Session) GetMany(ctx context.Context, targets ...Target) (found []bool, err error) {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.keyName()
		if err := checkKey(names[i]); err != nil {
			return nil, err
		}
	}
	found = make([]bool, len(targets))
	vals, err := s.getRaws(ctx, names)
	if err != nil || vals == nil {
		return found, err
	}
	var first error
	for i, b := range vals {
		if b == nil {
			continue
		}
		found[i] = true
		if err := targets[i].decode(s.m, b); err != nil && first == nil {
			first = err
		}
	}
	return found, first
}

// decodeAs decodes stored bytes into a T. The scalar kinds read the default
// codec's JSON directly (no decoder, no allocation for the common cases)
// and accept the other scalar spellings a hand edit may leave.
func decodeAs[T any](m *Manager, key string, b []byte) (T, error) {
	var v T
	var err error
	switch p := any(&v).(type) { // v stays on the stack: only the default case needs the heap
	case *string:
		*p, err = decodeString(m, key, b)
	case *int:
		var n int64
		n, err = decodeInt(m, key, b, strconv.IntSize)
		*p = int(n)
	case *int64:
		*p, err = decodeInt(m, key, b, 64)
	case *float64:
		*p, err = decodeFloat(m, key, b)
	case *bool:
		*p, err = decodeBool(m, key, b)
	default:
		heap := new(T)
		if err := m.unmarshal(key, b, heap); err != nil {
			return v, err
		}
		return *heap, nil
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// appendJSON appends to b the default codec's bytes for the scalar kinds
// whose JSON it can write directly (no boxing of v, no encoder), byte for
// byte what json.Marshal writes; ok is false for everything else, which
// goes through the codec.
func appendJSON[T any](b []byte, v T) (_ []byte, ok bool) {
	switch p := any(&v).(type) { // v stays on the stack
	case *int:
		return strconv.AppendInt(b, int64(*p), 10), true
	case *int64:
		return strconv.AppendInt(b, *p, 10), true
	case *bool:
		return strconv.AppendBool(b, *p), true
	case *string:
		// json.Marshal escapes <, > and &, and everything outside
		// printable ASCII: only the rest is written here.
		for i := 0; i < len(*p); i++ {
			if c := (*p)[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return nil, false
			}
		}
		return append(append(append(b, '"'), *p...), '"'), true
	}
	return nil, false
}

func (m *Manager) unmarshal(key string, b []byte, v any) error {
	if err := m.codec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: key %q: %w", ErrDecode, key, err)
	}
	return nil
}

// scalar decodes b into an any, for the lenient paths.
func scalar(m *Manager, key string, b []byte) (any, error) {
	var v any
	return v, m.unmarshal(key, b, &v)
}

func decodeString(m *Manager, key string, b []byte) (string, error) {
	if m.jsonCodec && plainJSONString(b) {
		return string(b[1 : len(b)-1]), nil
	}
	v, err := scalar(m, key, b)
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	}
	return "", typeError(key, "a string", v)
}

func decodeInt(m *Manager, key string, b []byte, bits int) (int64, error) {
	if m.jsonCodec {
		if n, err := strconv.ParseInt(string(b), 10, bits); err == nil {
			return n, nil
		}
	}
	v, err := scalar(m, key, b)
	if err != nil {
		return 0, err
	}
	var text string
	switch x := v.(type) {
	case json.Number:
		text = x.String()
	case string:
		text = x
	default:
		return 0, typeError(key, "an integer", v)
	}
	if n, err := strconv.ParseInt(text, 10, bits); err == nil {
		return n, nil
	}
	// 7.0 or 7e0, as a hand edit may leave it: an integer all the same.
	if f, err := strconv.ParseFloat(text, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < math.Ldexp(1, bits-1) {
		return int64(f), nil
	}
	return 0, typeError(key, "an integer", v)
}

func decodeFloat(m *Manager, key string, b []byte) (float64, error) {
	v, err := scalar(m, key, b)
	if err != nil {
		return 0, err
	}
	var text string
	switch x := v.(type) {
	case float64:
		return x, nil
	case json.Number:
		text = x.String()
	case string:
		text = x
	default:
		return 0, typeError(key, "a float", v)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, typeError(key, "a float", v)
	}
	return f, nil
}

func decodeBool(m *Manager, key string, b []byte) (bool, error) {
	if m.jsonCodec {
		switch string(b) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	v, err := scalar(m, key, b)
	if err != nil {
		return false, err
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b, nil
		}
	}
	return false, typeError(key, "a bool", v)
}

// plainJSONString reports whether b is a JSON string whose content needs no
// unescaping: quotes around printable ASCII with no backslash or quote.
func plainJSONString(b []byte) bool {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return false
	}
	for _, c := range b[1 : len(b)-1] {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func typeError(key, want string, got any) error {
	if got == nil {
		return fmt.Errorf("%w: key %q holds null, not %s", ErrDecode, key, want)
	}
	return fmt.Errorf("%w: key %q holds %T %#v, not %s", ErrDecode, key, got, got, want)
}
