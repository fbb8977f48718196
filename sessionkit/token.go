package sessionkit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

const (
	tokenBytes = 32 // 256 bits from crypto/rand
	// TokenLength is the length of every token the Manager issues:
	// 32 random bytes in unpadded URL-safe base64.
	TokenLength = 43
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken returns a fresh token. crypto/rand.Read never fails (it panics
// instead on an unusable system generator), so there is no error.
func newToken() string {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:])
	return tokenEncoding.EncodeToString(b[:])
}

// validToken reports whether s has the exact shape of an issued token.
// It runs before any store call, so hostile input never reaches a backend.
func validToken(s string) bool {
	if len(s) != TokenLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// 43 characters carry 258 bits; Strict decoding rejects the two
	// spare bits set, so every token has exactly one spelling.
	var b [tokenBytes + 1]byte
	n, err := tokenEncoding.Decode(b[:], []byte(s))
	return err == nil && n == tokenBytes
}

// tokenHash is the one-way hash of a token that the store and the logs see.
func tokenHash(token string) [sha256.Size]byte {
	var b [TokenLength]byte // on the stack: a hash per request costs no allocation
	return sha256.Sum256(append(b[:0], token...))
}

// storageKey is prefix and the base64url hash of token, built in one allocation.
func storageKey(prefix, token string) string {
	h := tokenHash(token)
	var buf [128]byte
	return string(tokenEncoding.AppendEncode(append(buf[:0], prefix...), h[:]))
}

// LogID returns a short, non-reversible identifier of a token for logs:
// the first 8 bytes of its hash in hex. It is never the token.
func LogID(token string) string {
	h := tokenHash(token)
	return hex.EncodeToString(h[:8])
}
