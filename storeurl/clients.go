package storeurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client settings for the parameters a URL leaves out. With go-redis's own
// (a 5 s read timeout, retries, 5 dial attempts per connection) a request
// waited 10 s on a frozen Redis and 1.7 s on a dead one; with these, 0.3 s
// and a few ms (docs/operations.md).
const (
	defaultDialTimeout   = 200 * time.Millisecond
	defaultReadTimeout   = 300 * time.Millisecond // and write timeout
	defaultPoolTimeout   = 300 * time.Millisecond
	defaultMaxRetries    = -1 // none: a retry repeats the whole timeout, and a timed-out script may have run
	defaultDialerRetries = 1  // one dial attempt per command: a dead server fails at once
	defaultMaxRedirects  = 1  // Cluster: a command is tried 1+max_redirects times, timeouts included
	defaultMemcacheWait  = 300 * time.Millisecond
)

// redisDefaults fills in, for each parameter q does not name, the setting
// above. A parameter in the URL always wins, even an empty one (go-redis's
// own default).
func redisDefaults(q url.Values, dial, read, write, pool *time.Duration, maxRetries, dialerRetries *int) {
	for _, d := range []struct {
		param string
		to    *time.Duration
		value time.Duration
	}{
		{"dial_timeout", dial, defaultDialTimeout},
		{"read_timeout", read, defaultReadTimeout},
		{"write_timeout", write, defaultReadTimeout},
		{"pool_timeout", pool, defaultPoolTimeout},
	} {
		if !q.Has(d.param) {
			*d.to = d.value
		}
	}
	if !q.Has("max_retries") {
		*maxRetries = defaultMaxRetries
	}
	if !q.Has("dialer_retries") {
		*dialerRetries = defaultDialerRetries
	}
}

// redisOptions is redis.ParseURL with the defaults above. ParseURL does not
// know dialer_retries and dialer_retry_timeout (go-redis's cluster and
// Sentinel URLs do), so they are taken out of the URL first.
func redisOptions(rawURL string, u *url.URL) (*redis.Options, error) {
	q := u.Query()
	dialer := url.Values{}
	for _, p := range []string{"dialer_retries", "dialer_retry_timeout"} {
		if q.Has(p) {
			dialer[p] = q[p]
			q.Del(p)
		}
	}
	if len(dialer) > 0 {
		stripped := *u
		stripped.RawQuery = q.Encode()
		rawURL = stripped.String()
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if v := last(dialer, "dialer_retries"); v != "" {
		if o.DialerRetries, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("invalid dialer_retries number: %q", v)
		}
	}
	if v := last(dialer, "dialer_retry_timeout"); v != "" {
		if o.DialerRetryTimeout, err = duration(v); err != nil {
			return nil, fmt.Errorf("invalid dialer_retry_timeout duration: %w", err)
		}
	}
	q = u.Query()
	redisDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries)
	return o, nil
}

// clusterOptions is redis.ParseClusterURL with the defaults above, on a
// redis+cluster:// URL. The cluster client tries a command again after a
// timeout (or a MOVED or ASK) up to max_redirects times, whatever
// max_retries says: one more try still follows a redirect, and keeps a
// frozen master to two read timeouts.
func clusterOptions(rawURL string, u *url.URL) (*redis.ClusterOptions, error) {
	o, err := redis.ParseClusterURL("redis" + rawURL[len("redis+cluster"):])
	if err != nil {
		return nil, err
	}
	q := u.Query()
	redisDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries)
	if !q.Has("max_redirects") {
		o.MaxRedirects = defaultMaxRedirects
	}
	return o, nil
}

// memcachedURL splits memcached://h1:p1,h2:p2[?timeout=d] (which net/url
// cannot parse: it takes "p1,h2:p2" for a port). timeout bounds each dial,
// read and write (gomemcache's Client.Timeout).
func memcachedURL(rawURL string) (servers []string, timeout time.Duration, err error) {
	rest := rawURL[strings.Index(rawURL, "://")+3:]
	rest, query, _ := strings.Cut(rest, "?")
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, 0, errors.New("no server: memcached://host:port[,host:port][?timeout=300ms]")
	}
	if strings.Contains(rest, "@") {
		return nil, 0, errors.New("memcached:// takes no user or password") // and must not echo one
	}
	servers = strings.Split(rest, ",")
	for _, srv := range servers {
		host, port, err := net.SplitHostPort(srv)
		if err != nil || host == "" || port == "" {
			return nil, 0, fmt.Errorf("server %q is not host:port", srv)
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, 0, err
	}
	timeout = defaultMemcacheWait
	if v := last(q, "timeout"); v != "" {
		if timeout, err = duration(v); err != nil || timeout <= 0 {
			return nil, 0, fmt.Errorf("invalid timeout %q: a positive duration such as 300ms", v)
		}
	}
	q.Del("timeout")
	for p := range q {
		return nil, 0, fmt.Errorf("unexpected option %q (memcached:// takes timeout)", p)
	}
	return servers, timeout, nil
}

// last is the value of a parameter given more than once, as go-redis reads
// it.
func last(q url.Values, name string) string {
	if vs := q[name]; len(vs) > 0 {
		return vs[len(vs)-1]
	}
	return ""
}

// duration reads a duration as go-redis's URL parameters do: "300ms", or
// a whole number of seconds; zero or less means none (-1).
func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, err
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		d = -1
	}
	return d, nil
}
