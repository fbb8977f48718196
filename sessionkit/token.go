package sessionkit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// A token is "<tag>.<secret>": a 4-character tag and 32 random bytes, both
// unpadded URL-safe base64.
//
// The tag is not secret. A session keeps it for life: Renew issues a new
// secret under the same tag, and the storage key carries it as a Redis
// Cluster hash tag ("session:{tag}…"), so every generation of a session
// lives in one Cluster slot and a store can move it in one atomic step. It
// has 24 random bits, which spreads sessions evenly over the 16,384 slots.
//
// A token stored by the Manager also carries the session's expiry policy
// after the secret: ".<created>.<idle>.<absolute>", Unix ms and ms in
// lowercase base 36 (see Policy). The storage key ends with the same
// policy in clear, after the hash of the whole token, so a store can
// refresh the expiry with plain commands (redishash does) without reading
// the policy first, and a client that alters the policy in its token
// names another key, which holds nothing.
const (
	tagLength   = 4
	secretBytes = 32 // 256 bits from crypto/rand
	secretChars = 43
	// TokenLength is the length of a token without its policy, as the
	// Manager issues for a session not stored yet (and did before tokens
	// carried the policy).
	TokenLength = tagLength + 1 + secretChars
	// MaxTokenLength bounds every token the Manager issues.
	MaxTokenLength = TokenLength + 3*(1+maxBase36)
	maxBase36      = 10 // digits of a policy value: every value is below 1e15
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken returns a fresh token under a fresh tag. crypto/rand.Read never
// fails (it panics instead on an unusable system generator).
func newToken() string {
	var tag [tagLength * 3 / 4]byte
	_, _ = rand.Read(tag[:])
	var buf [tagLength]byte
	return makeToken(tokenEncoding.AppendEncode(buf[:0], tag[:]), "")
}

// renewToken returns a fresh secret under the tag of token (a valid
// token), with the policy token carries, if any.
func renewToken(token string) string {
	return makeToken([]byte(token[:tagLength]), token[TokenLength:])
}

// tokenUnder returns a fresh secret under tag with the policy of token (a
// valid token, or "" for none).
func tokenUnder(tag, token string) string {
	if token == "" {
		return makeToken([]byte(tag), "")
	}
	return makeToken([]byte(tag), token[TokenLength:])
}

// makeToken returns tag, a dot, a fresh secret and policy (a token's
// policy suffix, or ""), built on the stack and copied once into the
// string.
func makeToken(tag []byte, policy string) string {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:])
	var buf [MaxTokenLength]byte
	t := append(append(buf[:0], tag...), '.')
	return string(append(tokenEncoding.AppendEncode(t, b[:]), policy...))
}

// withPolicy returns token (a valid token) carrying p in place of the
// policy it carries, if any.
func withPolicy(token string, p Policy) string {
	var buf [MaxTokenLength]byte
	return string(p.append(append(buf[:0], token[:TokenLength]...)))
}

// tokenTag returns the tag of a valid token.
func tokenTag(token string) string { return token[:tagLength] }

// validToken reports whether s has the exact shape of an issued token.
// It runs before any store call, so hostile input never reaches a backend.
func validToken(s string) bool {
	if len(s) < TokenLength || len(s) > MaxTokenLength || s[tagLength] != '.' {
		return false
	}
	if len(s) > TokenLength {
		if _, ok := parsePolicy(s[TokenLength:]); !ok {
			return false
		}
	}
	s = s[:TokenLength]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') && i != tagLength {
			return false
		}
	}
	// 43 characters carry 258 bits; Strict decoding rejects the two spare
	// bits set, so every secret has exactly one spelling (a 4-character
	// tag has no spare bits).
	var b [secretBytes + 1]byte
	n, err := tokenEncoding.Decode(b[:], []byte(s[tagLength+1:]))
	return err == nil && n == secretBytes
}

// tokenHash is the one-way hash of a token that the store and the logs see.
func tokenHash(token string) [sha256.Size]byte {
	var b [MaxTokenLength]byte // on the stack: a hash per request costs no allocation
	return sha256.Sum256(append(b[:0], token...))
}

// storageKey is prefix, the token's tag as a hash tag, the base64url hash
// of the token and the policy the token carries (if any), built in one
// allocation. A string that is not shaped like a token gets no hash tag.
//
// The hash covers the policy, so a store that keeps the record under the
// key without its policy (redishash does, see KeyPolicy) still gives a
// token whose policy was altered another record: none.
func storageKey(prefix, token string) string {
	h := tokenHash(token)
	var buf [160]byte
	b := append(buf[:0], prefix...)
	if len(token) > tagLength && token[tagLength] == '.' {
		b = append(append(append(b, '{'), tokenTag(token)...), '}')
	}
	b = tokenEncoding.AppendEncode(b, h[:])
	if len(token) > TokenLength && token[tagLength] == '.' {
		if _, ok := parsePolicy(token[TokenLength:]); ok {
			b = append(b, token[TokenLength:]...)
		}
	}
	return string(b)
}

// Policy is the expiry policy a token and its storage key carry: the
// session's creation (Unix ms, the application server's clock when it was
// stored) and its idle and absolute timeouts (ms). The deadline is Created
// + Absolute. A store that uses it checks Created against its own clock
// when it creates the record (redishash accepts 1 s of skew, else
// ErrClockSkew), keeps the policy it names, and reads a key whose policy
// no longer matches the record's (after SetExpiry, through a token issued
// before) as it would without one.
type Policy struct {
	Created, Idle, Absolute int64
}

// Deadline is Created + Absolute, Unix ms.
func (p Policy) Deadline() int64 { return p.Created + p.Absolute }

func newPolicy(now time.Time, exp Expiry) Policy {
	return Policy{Created: now.UnixMilli(), Idle: max(exp.Idle.Milliseconds(), 1), Absolute: max(exp.Absolute.Milliseconds(), 1)}
}

// append appends ".created.idle.absolute" in base 36.
func (p Policy) append(b []byte) []byte {
	for _, v := range [3]int64{p.Created, p.Idle, p.Absolute} {
		b = strconv.AppendInt(append(b, '.'), v, 36)
	}
	return b
}

// parsePolicy parses ".created.idle.absolute": each value in lowercase
// base 36 without leading zeros (one spelling), positive and below 1e15.
func parsePolicy(s string) (Policy, bool) {
	var v [3]int64
	for j := range v {
		if len(s) < 2 || s[0] != '.' {
			return Policy{}, false
		}
		s = s[1:]
		n := 0
		for n < len(s) && n <= maxBase36 && ('0' <= s[n] && s[n] <= '9' || 'a' <= s[n] && s[n] <= 'z') {
			d := int64(s[n] - '0')
			if s[n] >= 'a' {
				d = int64(s[n]-'a') + 10
			}
			v[j] = v[j]*36 + d
			n++
		}
		if n == 0 || n > maxBase36 || s[0] == '0' || v[j] >= 1e15 {
			return Policy{}, false
		}
		s = s[n:]
	}
	if s != "" {
		return Policy{}, false
	}
	return Policy{Created: v[0], Idle: v[1], Absolute: v[2]}, true
}

// KeyPolicy splits a storage key of the Manager into the key without its
// policy (base) and the policy: after the last "}" come the 43-character
// hash of the token, then the policy. A key without one (the token of a
// session stored before tokens carried it, a key a test chose) returns
// itself and false. A store may keep the record under base: the hash in it
// covers the policy.
func KeyPolicy(key string) (base string, p Policy, ok bool) {
	j := strings.LastIndexByte(key, '}')
	if j < 0 || len(key)-j-1 <= secretChars {
		return key, Policy{}, false
	}
	n := j + 1 + secretChars
	if p, ok = parsePolicy(key[n:]); !ok {
		return key, Policy{}, false
	}
	return key[:n], p, true
}

// LogID returns a short, non-reversible identifier of a token for logs:
// the first 8 bytes of its hash in hex. It is never the token.
func LogID(token string) string {
	h := tokenHash(token)
	return hex.EncodeToString(h[:8])
}
