// Package storeurl opens a sessionkit.Store from a URL, so a program picks
// its backend in configuration. It lives outside the core so that the core
// imports no adapter.
//
//	redis://[user:pass@]host:port[/db][?options]    one Redis server (go-redis ParseURL)
//	rediss://…                                      the same over TLS
//	redis+cluster://host:port[?addr=host:port&…]    Redis Cluster (go-redis ParseClusterURL)
//	memcached://host:port[,host:port…][?timeout=d]  memcached servers
//	postgres://[user:pass@]host:port/db[?options]   PostgreSQL: a pgx connection string, plus table_prefix=p and
//	                                                migrate=false (tables made on first use otherwise); postgresql:// too
//	bbolt:///abs/path/file.db                       a bbolt file (one process only)
//	bbolt://./relative/file.db                      the same, relative to the working directory
//	memory://                                       in-process, lost on exit
//
// # Timeouts
//
// A Redis or memcached client opened here answers a request to a frozen or
// dead server with an error in under a second (go-redis's defaults took
// 10 s). For each parameter that a redis:// or redis+cluster:// URL leaves
// out, Open sets:
//
//	dial_timeout=200ms        each connection attempt
//	read_timeout=300ms        each reply (write_timeout=300ms: each request)
//	pool_timeout=300ms        the wait for a free connection when all are busy
//	max_retries=-1            no retry: it would repeat the wait, and a
//	                          script that timed out may have run
//	dialer_retries=1          one connection attempt per command
//	max_redirects=1           redis+cluster:// only: one more try, after a
//	                          MOVED, an ASK or a timeout
//
// Any of them in the URL wins, with go-redis's meaning (dialer_retries and
// dialer_retry_timeout are accepted on redis:// too). memcached:// takes
// timeout (default 300ms), which bounds each dial, read and write.
// postgres:// takes timeout (default 1s, 0 for none), which bounds each
// operation, its wait for a connection included, and sets pgx's
// connect_timeout to 1 s unless the URL or PGCONNECT_TIMEOUT sets it.
// docs/operations.md has the figures measured with these settings.
package storeurl

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/adapters/bbolt"
	"github.com/sessionkit/sessionkit/adapters/memcached"
	"github.com/sessionkit/sessionkit/adapters/memory"
	"github.com/sessionkit/sessionkit/adapters/redishash"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// schemes are the accepted URL schemes.
var schemes = []string{"redis", "rediss", "redis+cluster", "memcached", "postgres", "postgresql", "bbolt", "memory"}

// Schemes returns the accepted URL schemes.
func Schemes() []string { return slices.Clone(schemes) }

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
		c.Timeout = sp.memcachedTimeout
		// The server list lets the store list its sessions (Count, Scan).
		return memcached.New(c, &memcached.Options{Servers: sp.memcached}), c, nil
	case sp.postgres != nil:
		return openPostgres(rawURL, sp.postgres)
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
	postgres  *postgresSpec

	// memcachedTimeout bounds each memcached dial, read and write.
	memcachedTimeout time.Duration
}

// parse checks rawURL and says what Open would open, touching nothing.
func parse(rawURL string) (spec, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return spec{}, badURL(rawURL, reason(err))
	}
	var sp spec
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss", "redis+cluster", "memcached":
		if u.Opaque != "" || u.Host == "" {
			// go-redis would read "redis:secret@host" as no host at all, and
			// quietly connect to localhost:6379.
			return spec{}, badURL(rawURL, "want "+strings.ToLower(u.Scheme)+"://host:port")
		}
	}
	switch strings.ToLower(u.Scheme) {
	case "redis", "rediss":
		sp.redis, err = redisOptions(rawURL, u)
	case "redis+cluster":
		sp.cluster, err = clusterOptions(rawURL, u)
	case "memcached":
		sp.memcached, sp.memcachedTimeout, err = memcachedURL(rawURL)
	case "postgres", "postgresql":
		sp.postgres, err = postgresURL(u)
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
	return fmt.Errorf("%w %s: %s; accepted schemes: %s://", ErrBadURL, Redact(rawURL), reason, strings.Join(schemes, "://, "))
}

// Redact returns rawURL with any password replaced by "xxxxx", for logs:
// the URL's own, a password= parameter (pgx's keyword form too), and, in a
// string whose user part url.Parse did not recognise (a mistyped scheme
// separator, say), everything before its last "@".
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		rawURL = u.Redacted()
	} else if i := strings.LastIndex(rawURL, "@"); i >= 0 && u.User == nil {
		rawURL = "xxxxx" + rawURL[i:]
	}
	return passwordParam.ReplaceAllString(rawURL, "${1}xxxxx")
}

var passwordParam = regexp.MustCompile(`(?i)(password=)[^&\s]*`)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
