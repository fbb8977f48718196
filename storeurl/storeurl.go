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
	sp, err := parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case sp.redis != nil:
		c := redis.NewClient(sp.redis)
		return redishash.New(c, nil), c, nil
	case sp.cluster != nil:
		c := redis.NewClusterClient(sp.cluster)
		return redishash.New(c, nil), c, nil
	case sp.memcached != nil:
		c := memcache.New(sp.memcached...)
		return memcached.New(c, nil), c, nil
	case sp.bboltPath != "":
		s, err := bbolt.Open(sp.bboltPath, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
	default:
		return memory.New(nil), nopCloser{}, nil
	}
}

// spec is a parsed store URL: exactly one field is set, or none for memory://.
type spec struct {
	redis     *redis.Options
	cluster   *redis.ClusterOptions
	memcached []string
	bboltPath string
}

// parse checks rawURL and says what Open would open, touching nothing.
func parse(rawURL string) (spec, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return spec{}, badURL(rawURL, reason(err))
	}
	var sp spec
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
		sp.redis, err = redis.ParseURL(rawURL)
	case "redis+cluster":
		sp.cluster, err = redis.ParseClusterURL("redis" + rawURL[len("redis+cluster"):])
	case "memcached":
		sp.memcached, err = memcachedServers(rawURL)
	case "bbolt":
		sp.bboltPath, err = bboltPath(u)
	case "memory":
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
			err = errors.New("memory:// takes no host or path")
		}
	case "":
		err = errors.New("no scheme")
	default:
		err = fmt.Errorf("unknown scheme %q", u.Scheme)
	}
	if err != nil {
		return spec{}, badURL(rawURL, reason(err))
	}
	return sp, nil
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
