package storeurl

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary store URLs to the parser Open uses: it must
// never panic, must refuse with ErrBadURL, and must never echo a password.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:pw@h:6380/1?dial_timeout=1s", "redis+cluster://h:1?addr=h:2&addr=h:3",
		"memcached://a:1,b:2", "bbolt:///tmp/x.db", "bbolt://./x.db", "memory://", "", "::", "redis://%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := parse(raw)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrBadURL) {
			t.Fatalf("parse(%q) = %v, not ErrBadURL", raw, err)
		}
		// A password that appears once in the URL must not appear in the error.
		if u, perr := url.Parse(raw); perr == nil {
			if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Count(raw, pw) == 1 && strings.Contains(err.Error(), pw) {
				t.Fatalf("parse(%q) echoed the password: %v", raw, err)
			}
		}
	})
}
