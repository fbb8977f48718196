package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// locked runs query after userLock (the advisory lock of the user index,
// and of the user whose session is under key, if key is not nil) in one
// transaction and one round trip, and scans the row it answers, whose
// first column is a status. See userStatements in schema.go.
func (s *Store) locked(ctx context.Context, op, index string, key any, query string, args []any, dest ...any) error {
	return s.do(ctx, op, func(ctx context.Context) (err error) {
		b := &pgx.Batch{}
		b.Queue(s.q.userLock, index, key)
		b.Queue(query, args...)
		br := s.pool.SendBatch(ctx, b)
		defer func() {
			// The implicit transaction commits at the batch's end: its
			// error (or a failed commit) comes from Close.
			if cerr := br.Close(); err == nil {
				err = cerr
			}
		}()
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.QueryRow().Scan(dest...)
	})
}

// Bind is sessionkit.Users.Bind, one round trip: a transaction of two
// statements sent together, the user's advisory lock (and that of the
// user the session was bound to, if another), then the move, the binding
// and the cap in one statement. Over the cap it deletes the user's oldest
// sessions in that statement, or refuses (ErrTooManySessions) and changes
// nothing.
func (s *Store) Bind(ctx context.Context, oldKey, newKey string, b sessionkit.Binding) error {
	var st int
	var err error
	if oldKey == "" {
		err = s.locked(ctx, "bind", b.Index, nil, s.q.bindNew,
			[]any{newKey, b.Index, b.ID, b.User, b.Device, b.IP, b.Max, b.Refuse, b.Expiry.Idle, b.Expiry.Absolute}, &st)
	} else {
		err = s.locked(ctx, "bind", b.Index, oldKey, s.q.bind,
			[]any{oldKey, newKey, b.Index, b.ID, b.User, b.Device, b.IP, b.Max, b.Refuse}, &st)
	}
	if err != nil {
		return err
	}
	return statusError("bind", st)
}

// UserSessions is sessionkit.Users.UserSessions, one statement that reads
// the user's live sessions (sessions_user) and writes nothing. The rows of
// expired sessions are invisible to it, and the sweeper deletes them.
func (s *Store) UserSessions(ctx context.Context, index string) ([]sessionkit.SessionInfo, error) {
	var out []sessionkit.SessionInfo
	err := s.do(ctx, "usersessions", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, s.q.userSessions, index)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (sessionkit.SessionInfo, error) {
			var i sessionkit.SessionInfo
			err := row.Scan(&i.Key, &i.ID, &i.User, &i.Device, &i.IP, &i.Created, &i.Expires, &i.Idle)
			return i, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke is sessionkit.Users.Revoke, one round trip: the user's advisory
// lock, then one statement that deletes the sessions, so that every Bind
// of the user is wholly before it or after it.
func (s *Store) Revoke(ctx context.Context, index string, ids []string, except string) (int, error) {
	if ids != nil && len(ids) == 0 {
		return 0, nil
	}
	var n int
	if err := s.locked(ctx, "revoke", index, nil, s.q.revoke, []any{index, ids, except}, &n); err != nil {
		return 0, err
	}
	return n, nil
}

// Info is sessionkit.Users.Info, one statement that writes nothing.
func (s *Store) Info(ctx context.Context, key string) (sessionkit.SessionInfo, error) {
	var i sessionkit.SessionInfo
	err := s.do(ctx, "info", func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, s.q.info, key).Scan(&i.Key, &i.ID, &i.User, &i.Device, &i.IP, &i.Created, &i.Expires, &i.Idle)
		if errors.Is(err, pgx.ErrNoRows) {
			return sessionkit.ErrNotFound
		}
		return err
	})
	if err != nil {
		return sessionkit.SessionInfo{}, err
	}
	return i, nil
}

// Scan is sessionkit.Scanner.Scan, one statement a page. It walks the rows
// in the order of their ids, which Rename and Bind keep, so a session that
// lives through the walk is returned exactly once. A page reads limit rows
// (sessions under other prefixes, markers and expired rows included) and
// returns the live sessions under prefix among them, so a page may hold
// fewer than limit, or none, before the walk ends. The cursor is the last
// id read, in decimal.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	after := int64(0)
	if cursor != "" {
		var err error
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return nil, "", errors.New("postgres: scan: malformed cursor " + strconv.Quote(cursor))
		}
	}
	limit = max(limit, 1)
	var page []sessionkit.SessionInfo
	var next string
	err := s.do(ctx, "scan", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, s.q.scan, prefix, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		var last *int64
		var read int
		for rows.Next() {
			var id *int64
			var key, pid, user, device, ip *string
			var created, expires *time.Time
			var idle *time.Duration
			if err := rows.Scan(&last, &read, &id, &key, &pid, &user, &device, &ip, &created, &expires, &idle); err != nil {
				return err
			}
			if id != nil {
				page = append(page, sessionkit.SessionInfo{Key: *key, ID: *pid, User: *user, Device: *device, IP: *ip,
					Created: *created, Expires: *expires, Idle: *idle})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if read == limit && last != nil {
			next = strconv.FormatInt(*last, 10)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

// DestroyAll is sessionkit.Scanner.DestroyAll: it deletes the rows under
// prefix in batches of Options.SweepBatch, one statement (one round trip
// and one transaction) a batch, in the order of their ids; each statement
// has its own Options.Timeout, as Sweep's do. The user indexes go with the
// sessions' rows. On an error, n counts the batches that were deleted.
func (s *Store) DestroyAll(ctx context.Context, prefix string) (n int, err error) {
	// Not do's context: each statement has a Timeout of its own.
	err = s.do(ctx, "destroyall", func(context.Context) error {
		after := int64(0)
		for {
			var read, live int
			c, cancel := s.bounded(ctx)
			err := s.pool.QueryRow(c, s.q.destroyAll, prefix, after, s.batch).Scan(&after, &read, &live)
			cancel()
			if err != nil {
				return err
			}
			n += live
			if read < s.batch {
				return nil
			}
		}
	})
	return n, err
}
