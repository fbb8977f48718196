// Package storeurl opens a sessionkit.Store from a URL, so a program picks
// its backend in configuration. It lives outside the core so that the core
// imports no adapter.
//
//	redis://[user:pass@]host:port[/db][?options]    one Redis server (go-redis ParseURL)
//	rediss://…                                      the same over TLS
//	redis+cluster://host:port[?addr=host:port&…]    Redis Cluster (go-redis ParseClusterURL)
//	memory://                                       in-process, lost on exit
package storeurl

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// Schemes lists the accepted URL schemes.
var Schemes = []string{"redis", "rediss", "redis+cluster", "memory"}

// ErrBadURL is returned, wrapped with the reason, for a URL that names no
// store this package can open.
var ErrBadURL = errors.New("storeurl: bad store URL")

// Open returns the store rawURL names and a Closer that releases its client
// or file. It does not contact the backend: the first operation does.
func Open(rawURL string) (sessionkit.Store, io.Closer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, badURL(rawURL, err.Error())
	}
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, nil, badURL(rawURL, err.Error())
		}
		c := redis.NewClient(opts)
		return redishash.New(c), c, nil
	case "redis+cluster":
		opts, err := redis.ParseClusterURL("redis" + rawURL[len("redis+cluster"):])
		if err != nil {
			return nil, nil, badURL(rawURL, err.Error())
		}
		c := redis.NewClusterClient(opts)
		return redishash.New(c), c, nil
	case "memory":
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
			return nil, nil, badURL(rawURL, "memory:// takes no host or path")
		}
		return memory.New(nil), nopCloser{}, nil
	case "":
		return nil, nil, badURL(rawURL, "no scheme")
	default:
		return nil, nil, badURL(rawURL, fmt.Sprintf("unknown scheme %q", u.Scheme))
	}
}

// badURL names the accepted schemes, and never echoes a password.
func badURL(rawURL, reason string) error {
	return fmt.Errorf("%w %s: %s; accepted schemes: %s://", ErrBadURL, Redact(rawURL), reason, strings.Join(Schemes, "://, "))
}

// Redact returns rawURL with any password replaced by "xxxxx", for logs.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, has := u.User.Password(); !has {
		return rawURL
	}
	return u.Redacted()
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
