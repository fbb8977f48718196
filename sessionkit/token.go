package sessionkit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
// Anything after the secret is reserved: a later version may bind more to
// the token, with the storage key still a hash of the whole token.
const (
	tagLength   = 4
	secretBytes = 32 // 256 bits from crypto/rand
	// TokenLength is the length of every token the Manager issues.
	TokenLength = tagLength + 1 + 43
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken returns a fresh token under a fresh tag. crypto/rand.Read never
// fails (it panics instead on an unusable system generator).
func newToken() string {
	var tag [tagLength * 3 / 4]byte
	_, _ = rand.Read(tag[:])
	var buf [tagLength]byte
	return makeToken(tokenEncoding.AppendEncode(buf[:0], tag[:]))
}

// renewToken returns a fresh token under tag (the tag of a valid token).
func renewToken(tag string) string { return makeToken([]byte(tag)) }

// makeToken returns tag, a dot and a fresh secret, built on the stack and
// copied once into the string.
func makeToken(tag []byte) string {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:])
	var buf [TokenLength]byte
	t := append(append(buf[:0], tag...), '.')
	return string(tokenEncoding.AppendEncode(t, b[:]))
}

// tokenTag returns the tag of a valid token.
func tokenTag(token string) string { return token[:tagLength] }

// validToken reports whether s has the exact shape of an issued token.
// It runs before any store call, so hostile input never reaches a backend.
func validToken(s string) bool {
	if len(s) != TokenLength || s[tagLength] != '.' {
		return false
	}
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
	var b [TokenLength]byte // on the stack: a hash per request costs no allocation
	return sha256.Sum256(append(b[:0], token...))
}

// storageKey is prefix, the token's tag as a hash tag, and the base64url
// hash of the token, built in one allocation. A string that is not shaped
// like a token gets no hash tag.
func storageKey(prefix, token string) string {
	h := tokenHash(token)
	var buf [128]byte
	b := append(buf[:0], prefix...)
	if len(token) > tagLength && token[tagLength] == '.' {
		b = append(append(append(b, '{'), tokenTag(token)...), '}')
	}
	return string(tokenEncoding.AppendEncode(b, h[:]))
}

// LogID returns a short, non-reversible identifier of a token for logs:
// the first 8 bytes of its hash in hex. It is never the token.
func LogID(token string) string {
	h := tokenHash(token)
	return hex.EncodeToString(h[:8])
}
