package redishash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/sessionkit"
)

var (
	_ sessionkit.Users   = (*Store)(nil)
	_ sessionkit.Scanner = (*Store)(nil)
	_ sessionkit.Counter = (*Store)(nil)
)

// errNewline refuses a binding the __sk_b field could not keep apart. The
// Manager never makes one: user IDs have no control characters, and it
// cleans device labels.
var errNewline = fmt.Errorf("%w: redishash: a binding holds a newline", sessionkit.ErrInvalidUser)

// bindingValue is the __sk_b field of a record bound by b.
func bindingValue(b sessionkit.Binding) (string, error) {
	v := b.Index + "\n" + b.ID + "\n" + b.User + "\n" + b.Device + "\n" + b.IP
	if strings.Count(v, "\n") != 4 {
		return "", errNewline
	}
	return v, nil
}

// Bind is sessionkit.Users.Bind.
//
// When oldKey already carries the hash tag of newKey and the index (the
// session is bound to the user, or to another of the same tag: a login
// again), it is one script on that slot, as atomic as Rename.
//
// Otherwise it costs two round trips, one script on each slot: step 1 (on
// oldKey) turns the record into a marker naming newKey and returns its
// fields; step 2 (on newKey and the user's index, which share a hash tag)
// enforces the cap and writes the record, bound, with its index entry.
// Step 2 is idempotent (a client retry after a lost reply finds its own
// record), and a Destroy that followed the marker meanwhile leaves a
// tombstone at newKey that step 2 refuses: the session stays ended, and
// Bind returns ErrNotFound. When step 2 refuses for the cap under Refuse or
// out of memory, a third puts the record back under oldKey, if its
// marker is still there. A crash between the steps loses the session (its
// marker leads nowhere), never duplicates it. With oldKey "" it is step 2
// alone, one round trip.
func (s *Store) Bind(ctx context.Context, oldKey, newKey string, b sessionkit.Binding) error {
	oldKey = base(oldKey)
	newKey, p, hinted := sessionkit.KeyPolicy(newKey)
	bound, err := bindingValue(b)
	if err != nil {
		return err
	}
	refuse := 0
	if b.Refuse {
		refuse = 1
	}
	keys := []string{newKey, b.Index}
	if oldKey == "" {
		created := ""
		if hinted {
			created = "~" + strconv.FormatInt(p.Created, 10)
		}
		_, err := s.run(ctx, "bind", bindInScript, keys, ms(b.Expiry.Idle), created, ms(b.Expiry.Absolute), b.Max, refuse, bound)
		return err
	}
	if tag := hashTag(newKey); tag != "" && hashTag(oldKey) == tag && hashTag(b.Index) == tag {
		_, err := s.run(ctx, "bind", bindSameScript, []string{oldKey, newKey, b.Index}, b.Max, refuse, bound, sessionkit.RenewMarkerTTL.Milliseconds())
		return err
	}
	vals, err := s.list(ctx, "bind", bindOutScript, oldKey, newKey, sessionkit.RenewMarkerTTL.Milliseconds())
	if err != nil {
		return err
	}
	var created, deadline, idle, old string
	fields := make([]any, 0, len(vals))
	for j := 0; j+1 < len(vals); j += 2 {
		name, _ := vals[j].(string)
		switch name {
		case fieldCreated:
			created, _ = vals[j+1].(string)
		case fieldDeadline:
			deadline, _ = vals[j+1].(string)
		case fieldIdle:
			idle, _ = vals[j+1].(string)
		case fieldBinding:
			old, _ = vals[j+1].(string)
		default:
			fields = append(fields, name, vals[j+1])
		}
	}
	// The record is now only in this call's hands: finish even if ctx ends
	// (the client's own timeouts still bound each step).
	ctx2 := context.WithoutCancel(ctx)
	_, err = s.run(ctx2, "bind", bindInScript, keys, append([]any{idle, created, deadline, b.Max, refuse, bound}, fields...)...)
	switch {
	case errors.Is(err, sessionkit.ErrExists):
		// Not this call's record (step 2 recognises its own): a tombstone
		// that a Destroy through the marker left. The session was ended
		// while it moved, and stays ended.
		return fmt.Errorf("%w: the session was destroyed during the login", sessionkit.ErrNotFound)
	case errors.Is(err, sessionkit.ErrTooManySessions) || isOOM(err):
		// Step 2 wrote nothing: put the record back where it was.
		back := append([]any{newKey, created, deadline, idle, old, b.Max}, fields...)
		if _, berr := s.run(ctx2, "bind", bindBackScript, []string{oldKey}, back...); berr != nil {
			return errors.Join(err, berr)
		}
	}
	return err
}

// hashTag returns the Redis Cluster hash tag of key: what lies between its
// first "{" and the first "}" after it, if that is not empty; else "".
func hashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return ""
	}
	return tag
}

// isOOM reports whether err is Redis refusing a write for memory.
func isOOM(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "OOM ")
}

// UserSessions is sessionkit.Users.UserSessions: one script on the index,
// which reads every entry's record and removes the dead entries.
func (s *Store) UserSessions(ctx context.Context, index string) ([]sessionkit.SessionInfo, error) {
	vals, err := s.list(ctx, "usersessions", listScript, index)
	if err != nil {
		return nil, err
	}
	out := make([]sessionkit.SessionInfo, 0, len(vals))
	for _, v := range vals {
		row, ok := v.([]any)
		if !ok || len(row) != 5 {
			return nil, wrap(ctx, "usersessions", fmt.Errorf("unexpected reply %v", v))
		}
		key, _ := row[0].(string)
		info, err := parseInfo(key, row[1:])
		if err != nil {
			return nil, wrap(ctx, "usersessions", err)
		}
		out = append(out, info)
	}
	return out, nil
}

// Revoke is sessionkit.Users.Revoke: one script on the index, so that no
// Bind or Rename of the user's sessions runs half-way through it.
func (s *Store) Revoke(ctx context.Context, index string, ids []string, except string) (int, error) {
	all := 0
	if ids == nil {
		all = 1
	}
	args := make([]any, 0, 2+len(ids))
	args = append(args, except, all)
	for _, id := range ids {
		args = append(args, id)
	}
	n, err := s.status(ctx, "revoke", revokeScript, index, args...)
	return int(n), err
}

// Info is sessionkit.Users.Info: one script that reads the record without
// refreshing it.
func (s *Store) Info(ctx context.Context, key string) (sessionkit.SessionInfo, error) {
	key = base(key)
	vals, err := s.list(ctx, "info", infoScript, key)
	if errors.Is(err, sessionkit.ErrRenewed) {
		return sessionkit.SessionInfo{}, sessionkit.ErrNotFound
	}
	if err != nil {
		return sessionkit.SessionInfo{}, err
	}
	info, err := parseInfo(key, vals)
	if err != nil {
		return sessionkit.SessionInfo{}, wrap(ctx, "info", err)
	}
	return info, nil
}

// parseInfo reads the info reply of the scripts: binding (nil if unbound),
// creation and expiry (Unix ms) and idle timeout (ms).
func parseInfo(key string, v []any) (sessionkit.SessionInfo, error) {
	if len(v) != 4 {
		return sessionkit.SessionInfo{}, fmt.Errorf("unexpected reply %v", v)
	}
	info := sessionkit.SessionInfo{Key: key}
	if b, ok := v[0].(string); ok {
		parts := strings.SplitN(b, "\n", 5)
		if len(parts) == 5 {
			info.ID, info.User, info.Device, info.IP = parts[1], parts[2], parts[3], parts[4]
		}
	}
	created, err1 := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
	expires, ok := v[2].(int64)
	idle, err2 := strconv.ParseInt(fmt.Sprint(v[3]), 10, 64)
	if err1 != nil || err2 != nil || !ok {
		return sessionkit.SessionInfo{}, fmt.Errorf("unexpected reply %v", v)
	}
	info.Created = time.UnixMilli(created)
	info.Expires = time.UnixMilli(expires)
	info.Idle = time.Duration(idle) * time.Millisecond
	return info, nil
}
