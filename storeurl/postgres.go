package storeurl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// postgresSpec is a parsed postgres:// or postgresql:// URL.
type postgresSpec struct {
	pool *pgxpool.Config
	opts postgres.Options
}

// Client settings for a postgres:// URL that leaves them out: a frozen
// server fails a request in about a second (TestFrozenPostgresFailsWithinAboutASecond),
// where pgx's own defaults would wait for ever.
const (
	defaultPostgresTimeout        = time.Second // each operation (postgres.Options.Timeout)
	defaultPostgresConnectTimeout = time.Second // each connection attempt (pgx's connect_timeout)
)

// postgresURL parses a PostgreSQL URL: pgx's own connection string (every
// parameter pgx takes: sslmode, search_path, pool_max_conns, any server
// setting, …) plus three of ours, taken out before pgx sees the rest:
//
//	table_prefix=p   the tables' prefix (postgres.Options.TablePrefix)
//	migrate=false    do not create the tables on first use; by default they
//	                 are created if missing (postgres.Options.AutoMigrate),
//	                 which needs the CREATE privilege on the schema
//	timeout=d        bounds each operation, the wait for a connection
//	                 included (postgres.Options.Timeout): "300ms", or whole
//	                 seconds; default 1s, 0 for none
//
// Unless the URL (or PGCONNECT_TIMEOUT) sets connect_timeout, each
// connection attempt is bounded to 1 s: the pool connects in the
// background, and a connection to a frozen server would otherwise hold its
// place in the pool for ever.
//
// Unless the URL sets synchronous_commit, the pool's connections run with
// synchronous_commit=off. Every operation writes (it refreshes the expiry),
// so with the server's default every read would wait for a WAL flush: 2.7-3.7
// ms a Get instead of 0.2-0.3 ms, measured on a disk whose fsync takes 3-4 ms.
// Off, a crash of the database server can lose the last moments of
// ordinary writes (wal_writer_delay, 200 ms by default, times three at
// most), never consistency; Redis's default persistence makes the same
// trade. Create, Renew and Destroy commit durably whatever this says (the
// adapter turns synchronous_commit on for their own transactions), so a
// crash never undoes an acknowledged login or logout.
func postgresURL(u *url.URL) (*postgresSpec, error) {
	v := *u
	q, err := url.ParseQuery(v.RawQuery)
	if err != nil {
		return nil, err
	}
	sp := &postgresSpec{opts: postgres.Options{TablePrefix: q.Get("table_prefix"), AutoMigrate: true}}
	if m := q.Get("migrate"); m != "" {
		on, err := strconv.ParseBool(m)
		if err != nil {
			return nil, fmt.Errorf("migrate=%q: want true or false", m)
		}
		sp.opts.AutoMigrate = on
	}
	sp.opts.Timeout = defaultPostgresTimeout
	if t := last(q, "timeout"); t != "" {
		d, err := duration(t)
		if err != nil {
			return nil, fmt.Errorf("invalid timeout %q: a duration such as 1s, or 0 for none", t)
		}
		sp.opts.Timeout = max(d, 0)
	}
	q.Del("table_prefix")
	q.Del("migrate")
	q.Del("timeout")
	v.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(v.String())
	if err != nil {
		// pgx's message quotes the connection string, with the password
		// masked on a best-effort basis: mask it for sure.
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return nil, errors.New(msg)
	}
	if !q.Has("connect_timeout") && cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultPostgresConnectTimeout
	}
	if !q.Has("synchronous_commit") {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	sp.pool = cfg
	return sp, nil
}

// openPostgres makes the pool (it connects on first use) and the store. A
// table prefix the store refuses is a bad URL.
func openPostgres(rawURL string, sp *postgresSpec) (sessionkit.Store, io.Closer, error) {
	pool, err := pgxpool.NewWithConfig(context.Background(), sp.pool)
	if err != nil {
		return nil, nil, badURL(rawURL, err.Error())
	}
	s, err := postgres.New(pool, &sp.opts)
	if err != nil {
		pool.Close()
		return nil, nil, badURL(rawURL, err.Error())
	}
	return s, &postgresCloser{s, pool}, nil
}

// postgresCloser stops the store's sweeper, then closes the pool.
type postgresCloser struct {
	store *postgres.Store
	pool  *pgxpool.Pool
}

func (c *postgresCloser) Close() error {
	err := c.store.Close()
	c.pool.Close()
	return err
}
