package sessionkit

import (
	"context"
	"errors"
	"testing"
)

// TestKeyReadsHandEditsLeniently checks what the Key doc promises for a
// value edited by hand with redis-cli.
func TestKeyReadsHandEditsLeniently(t *testing.T) {
	ctx := context.Background()
	read := func(value string) *Session {
		m, err := New(&Options{Store: valueStore{value: []byte(value)}})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := m.Load(newToken())
		return s
	}
	for value, want := range map[string]int{`7`: 7, `"7"`: 7, `7.0`: 7, `7e0`: 7, `"-3"`: -3} {
		got, found, err := NewKey[int]("k").Get(ctx, read(value))
		if err != nil || !found || got != want {
			t.Errorf("Key[int] on %s = %d, %v, %v; want %d", value, got, found, err, want)
		}
	}
	for _, value := range []string{`7.5`, `"x"`, `null`, `true`, `1e300`} {
		if _, _, err := NewKey[int]("k").Get(ctx, read(value)); !errors.Is(err, ErrDecode) {
			t.Errorf("Key[int] on %s: %v, want ErrDecode", value, err)
		}
	}
	for value, want := range map[string]string{`"ana"`: "ana", `ana`: "ana", `7`: "7", `true`: "true"} {
		if got, _, err := NewKey[string]("k").Get(ctx, read(value)); err != nil || got != want {
			t.Errorf("Key[string] on %s = %q, %v; want %q", value, got, err, want)
		}
	}
	type prefs struct {
		Theme string
		Size  int
	}
	got, found, err := NewKey[prefs]("k").Get(ctx, read(`{"Theme":"light","Size":"big"}`))
	if !errors.Is(err, ErrDecode) || !found || got != (prefs{}) {
		t.Errorf("a struct that does not decode: %+v, %v, %v; want the zero value and ErrDecode", got, found, err)
	}
}
