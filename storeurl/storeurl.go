// Package storeurl opens a sessionkit.Store from a URL, so a program picks
// its backend in configuration. It lives outside the core so that the core
// imports no adapter.
//
//	redis://[user:pass@]host:port[/db][?options]    one Redis server (go-redis ParseURL)
//	rediss://…                                      the same over TLS
//	redis+cluster://host:port[?addr=host:port&…]    Redis Cluster (go-redis ParseClusterURL)
//	memcached://host:port[,host:port…]              memcached servers
//	bbolt:///abs/path/file.db                       a bbolt file (one process only)
//	bbolt://./relative/file.db                      the same, relative to the working directory
//	memory://                                       in-process, lost on exit
package storeurl

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adapters/memcached"
	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// Schemes lists the accepted URL schemes.
var Schemes = []string{"redis", "rediss", "redis+cluster", "memcached", "bbolt", "memory"}

// ErrBadURL is returned, wrapped with the reason, for a URL that names no
// store this package can open.
var ErrBadURL = errors.New("storeurl: bad store URL")

// Open returns the store rawURL names and a Closer that releases its client
// or file. It does not contact the backend: the first operation does.
func Open(rawURL string) (sessionkit.Store, io.Closer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, badURL(rawURL, reason(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, nil, badURL(rawURL, reason(err))
		}
		c := redis.NewClient(opts)
		return redishash.New(c, nil), c, nil
	case "redis+cluster":
		opts, err := redis.ParseClusterURL("redis" + rawURL[len("redis+cluster"):])
		if err != nil {
			return nil, nil, badURL(rawURL, reason(err))
		}
		c := redis.NewClusterClient(opts)
		return redishash.New(c, nil), c, nil
	case "memcached":
		servers, err := memcachedServers(rawURL)
		if err != nil {
			return nil, nil, badURL(rawURL, err.Error())
		}
		c := memcache.New(servers...)
		return memcached.New(c, nil), c, nil
	case "bbolt":
		path, err := bboltPath(u)
		if err != nil {
			return nil, nil, badURL(rawURL, err.Error())
		}
		s, err := bbolt.Open(path, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
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

// memcachedServers splits memcached://h1:p1,h2:p2 (which net/url cannot
// parse: it takes "p1,h2:p2" for a port).
func memcachedServers(rawURL string) ([]string, error) {
	rest := rawURL[strings.Index(rawURL, "://")+3:]
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, errors.New("no server: memcached://host:port[,host:port]")
	}
	servers := strings.Split(rest, ",")
	for _, srv := range servers {
		host, port, err := net.SplitHostPort(srv)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("server %q is not host:port", srv)
		}
	}
	return servers, nil
}

// bboltPath accepts bbolt:///abs/file.db and bbolt://./rel/file.db (or
// bbolt://../rel/file.db).
func bboltPath(u *url.URL) (string, error) {
	switch {
	case u.Host == "" && u.Path != "" && u.Path != "/":
		return u.Path, nil
	case (u.Host == "." || u.Host == "..") && len(u.Path) > 1:
		return u.Host + u.Path, nil
	}
	return "", errors.New("a bbolt URL names a file: bbolt:///abs/path.db or bbolt://./relative.db")
}

// reason is a parse error without the URL it quotes (which may hold a
// password).
func reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
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
