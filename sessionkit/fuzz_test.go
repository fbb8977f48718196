package sessionkit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// valueStore is a Store whose every field holds value; the fuzz targets
// need nothing else from it.
type valueStore struct {
	Store
	value []byte
}

func (s valueStore) Get(_ context.Context, _ string, names ...string) ([][]byte, error) {
	out := make([][]byte, len(names))
	for i := range out {
		out[i] = s.value
	}
	return out, nil
}

// FuzzRequestToken feeds arbitrary Cookie headers and token headers to the
// middleware's token parser: it must never panic, and must return at most
// maxCandidates distinct well-formed tokens that the request really carried.
func FuzzRequestToken(f *testing.F) {
	tok := newToken()
	stored := withPolicy(newToken(), newPolicy(time.Now(), Expiry{Idle: time.Hour, Absolute: 24 * time.Hour}))
	for _, seed := range []string{"session=" + tok, "session=" + stored, "session=" + stored + ".1", "session=" + stored[:len(stored)-1] + "A", "a=b; session=" + tok + "; c=d", "session=", "session=" + tok + "x", ";;;", "session=\"" + tok + "\"", tok,
		"session=" + newToken() + "; session=" + tok + "; session=" + newToken() + "; session=" + newToken()} {
		f.Add(seed, tok)
	}
	cookieM, _ := New(&Options{Store: valueStore{}})
	headerM, _ := New(&Options{Store: valueStore{}, Header: "X-Session"})
	f.Fuzz(func(t *testing.T, cookie, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Cookie"] = []string{cookie}
		r.Header["X-Session"] = []string{header}
		for _, m := range []*Manager{cookieM, headerM} {
			var got [maxCandidates]string
			n, _ := m.requestTokens(r, &got)
			for i, tok := range got[:n] {
				if !validToken(tok) {
					t.Fatalf("accepted a malformed token %q", tok)
				}
				if !strings.Contains(cookie, tok) && header != tok {
					t.Fatalf("returned %q, which the request did not carry", tok)
				}
				if slices.Contains(got[:i], tok) {
					t.Fatalf("returned %q twice", tok)
				}
			}
		}
	})
}

// FuzzStoredValue reads arbitrary stored bytes, as a hand edit could leave
// them, through every getter: no panic, failures are ErrDecode, and bytes
// that are not JSON read back as the string they spell.
func FuzzStoredValue(f *testing.F) {
	for _, seed := range []string{`"ana"`, `42`, `-7`, `2.5`, `true`, `"2026-11-26T16:17:18Z"`, `{"name":"ana"}`, `bob`, ``, `"unterminated`, `"\u00e9\n"`, "\xff", `1e400`, `[1,2]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		m, err := New(&Options{Store: valueStore{value: value}})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := m.Load(newToken())
		ctx := context.Background()
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, ErrDecode) {
				t.Fatalf("%s(%q): %v is not ErrDecode", what, value, err)
			}
		}
		str, _, err := NewKey[string]("k").Get(ctx, s)
		check("Key[string]", err)
		if !json.Valid(value) && str != string(value) {
			t.Fatalf("Key[string].Get(%q) = %q: a non-JSON value reads back as itself", value, str)
		}
		_, err = s.Get(ctx, "k")
		check("Get", err)
		_, _, err = NewKey[int]("k").Get(ctx, s)
		check("Key[int]", err)
		_, _, err = NewKey[int64]("k").Get(ctx, s)
		check("Key[int64]", err)
		_, _, err = NewKey[float64]("k").Get(ctx, s)
		check("Key[float64]", err)
		_, _, err = NewKey[bool]("k").Get(ctx, s)
		check("Key[bool]", err)
		_, _, err = NewKey[time.Time]("k").Get(ctx, s)
		check("Key[time.Time]", err)
		var into struct{ Name string }
		_, err = s.Decode(ctx, "k", &into)
		check("Decode", err)
	})
}
