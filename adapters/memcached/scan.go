package memcached

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/sessionkit/sessionkit/sessionkit"
	"github.com/sessionkit/sessionkit/sessionkit/driver"
)

// Count, Scan and DestroyAll list the items of each server with
// "lru_crawler metadump hash" (memcached 1.6; "lru_crawler metadump all"
// on a server that does not know "hash", from 1.4.31), sent over a
// connection of their own to every server of Options.Servers or
// Options.Selector, and then read what they found with gets, a batch at a
// time, to keep the live sessions. See the package doc, Listing sessions.

const (
	// readBatch is how many keys one gets asks for.
	readBatch = 256
	// maxBusyWait bounds how long a metadump waits for the server's
	// crawler to finish another crawl (its own expiry sweep, or another
	// client's metadump) before giving up with ErrUnavailable.
	maxBusyWait = 30 * time.Second
	// hashedPrefix starts the item keys of storage keys ItemKey hashes.
	hashedPrefix = "sk:h:"
)

// ErrNoCrawler is matched (with errors.Is) by the error of Count, Scan and
// DestroyAll on a server that cannot list its items: one started with
// "-o no_lru_crawler", one whose crawler was turned off ("lru_crawler
// disable"), or one older than 1.4.31. The error matches
// errors.ErrUnsupported too: retrying does not help, the server must be
// configured.
var ErrNoCrawler = errors.New("memcached: the server cannot list its items (lru_crawler metadump)")

// Count counts the live sessions whose key starts with prefix
// (sessionkit.Counter): one metadump of every server, then one gets per
// batch of 256 keys found under prefix. It neither refreshes nor changes
// any session. See the package doc, Listing sessions, for what it sees of
// writes made while it runs.
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.each(ctx, "count", prefix, func(keys []string) error {
		found, err := s.readMany(ctx, "count", keys)
		for _, f := range found {
			if f.rec != nil {
				n++
			}
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Scan returns up to limit live sessions whose key starts with prefix
// (sessionkit.Scanner), without refreshing them. Each page takes one
// metadump of a server (of more than one when a server has fewer than
// limit keys left under prefix) and one gets per batch of 256 keys.
//
// The cursor is the index of a server in the server list and the last item
// key returned from it; each page lists the next keys of that server in
// byte order, from a new metadump. So a session that lives through the
// whole walk without changing key (a Rename gives it a new one) is
// returned exactly once, provided the server list does not change during
// the walk and memcached does not evict the session (see the package doc,
// Listing sessions). A session created, renamed or ended during the walk
// may or may not be returned.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	if limit <= 0 {
		limit = 100
	}
	servers, err := s.serverList(prefix)
	if err != nil {
		return nil, "", err
	}
	server, after, err := parseCursor(cursor, len(servers))
	if err != nil {
		return nil, "", err
	}
	var page []sessionkit.SessionInfo
	for ; server < len(servers); server, after = server+1, "" {
		var keys []string
		if err := s.dump(ctx, "scan", servers[server], prefix, func(k string) {
			if k > after {
				keys = append(keys, k)
			}
		}); err != nil {
			return nil, "", err
		}
		slices.Sort(keys)
		more := len(keys) > limit
		if more {
			keys = keys[:limit]
		}
		for batch := range slices.Chunk(keys, readBatch) {
			found, err := s.readMany(ctx, "scan", batch)
			if err != nil {
				return nil, "", err
			}
			for i, f := range found {
				if f.rec != nil {
					page = append(page, info(batch[i], f.rec))
				}
			}
		}
		if more {
			return page, strconv.Itoa(server) + ":" + keys[len(keys)-1], nil
		}
		if limit -= len(keys); limit <= 0 {
			if server+1 == len(servers) {
				return page, "", nil
			}
			return page, strconv.Itoa(server+1) + ":", nil
		}
	}
	return page, "", nil
}

// info describes the session r found under the item key k, which is its
// storage key (Count, Scan and DestroyAll only list such keys).
func info(k string, r *record) sessionkit.SessionInfo {
	return sessionkit.SessionInfo{
		Key:     k,
		Created: time.UnixMilli(r.created),
		Expires: time.UnixMilli(r.expires),
		Idle:    time.Duration(r.idle) * time.Millisecond,
	}
}

// parseCursor splits a Scan cursor into a server index and an item key.
func parseCursor(cursor string, servers int) (int, string, error) {
	if cursor == "" {
		return 0, "", nil
	}
	i, after, ok := strings.Cut(cursor, ":")
	n, err := strconv.Atoi(i)
	if !ok || err != nil || n < 0 || n >= servers {
		return 0, "", fmt.Errorf("memcached: scan: the cursor %q is not one Scan returned for these %d servers", cursor, servers)
	}
	return n, after, nil
}

// DestroyAll destroys every session under prefix and returns how many live
// sessions it ended (sessionkit.Scanner): one metadump of every server,
// then, per batch of 256 keys found, one gets, and for each item one more
// round trip: a cas that kills a live session (as Destroy does), a delete
// of anything else. A Rename marker whose target the metadumps did not
// list is followed as Destroy follows it (2 round trips per link), so a
// session renamed while DestroyAll runs is ended under its new key; a cas
// lost to a concurrent write falls back to Destroy's own loop. A session
// created (not renamed) after the metadump passed its key survives, as the
// contract allows. A session that a Rename in flight drops when DestroyAll
// deletes its marker (the Rename undoes its copy, see the package doc) is
// ended but not counted. Memcached keeps no user indexes, so there are
// none to remove.
func (s *Store) DestroyAll(ctx context.Context, prefix string) (int, error) {
	const op = "destroy all"
	servers, err := s.serverList(prefix)
	if err != nil {
		return 0, err
	}
	var keys []string
	for _, addr := range servers {
		if err := s.dump(ctx, op, addr, prefix, func(k string) { keys = append(keys, k) }); err != nil {
			return 0, err
		}
	}
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
	}
	// Markers whose target is listed too are only deleted, and last: the
	// sessions, and the chains that lead out of the listing, go first, so a
	// session being renamed meanwhile is caught as early as can be.
	var markers []string
	n := 0
	for batch := range slices.Chunk(keys, readBatch) {
		found, err := s.readMany(ctx, op, batch)
		if err != nil {
			return n, err
		}
		for i, f := range found {
			if err := ctx.Err(); err != nil {
				return n, driver.Wrap(ctx, "memcached: "+op, err)
			}
			if f.mk != nil && listed[ItemKey(f.mk.target)] {
				markers = append(markers, batch[i])
				continue
			}
			killed, err := s.end(ctx, batch[i], f)
			if killed {
				n++
			}
			if err != nil {
				return n, err
			}
		}
	}
	for _, k := range markers {
		if err := ctx.Err(); err != nil {
			return n, driver.Wrap(ctx, "memcached: "+op, err)
		}
		// Its target was ended in turn, following what it held then.
		if err := s.del(k); err != nil {
			return n, wrap(ctx, op, err)
		}
	}
	return n, nil
}

// end ends what DestroyAll found under the item key k.
func (s *Store) end(ctx context.Context, k string, f found) (killed bool, err error) {
	const op = "destroy all"
	switch {
	case f.it == nil:
		return false, nil // gone since the metadump
	case f.rec != nil:
		kill(f.rec)
		dead, err := s.item(k, f.rec, f.it.CasID)
		if err != nil {
			return false, err
		}
		switch err := s.client.CompareAndSwap(dead); {
		case err == nil:
			return true, nil
		case errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
			// written, renamed or destroyed since the gets: Destroy's loop
		default:
			return false, wrap(ctx, op, err)
		}
	case f.mk == nil:
		// Expired or damaged: nothing live to follow.
		return false, wrap(ctx, op, s.del(k))
	}
	// Every link followed deletes a marker, and a Rename whose marker is
	// deleted before it returns undoes its copy, so a chain that is still
	// growing stops growing once the walk catches up with it: the bound is
	// casAttempts, not Destroy's maxChain.
	return s.destroyChain(ctx, op, k, casAttempts)
}

// readMany reads the items under keys with one gets (gomemcache sends one
// per server, in parallel) and inspects them; it changes nothing, so the
// sessions' expiries stay as they were. found[i] is keys[i]'s.
func (s *Store) readMany(ctx context.Context, op string, keys []string) ([]found, error) {
	if err := ctx.Err(); err != nil {
		return nil, driver.Wrap(ctx, "memcached: "+op, err)
	}
	items, err := s.client.GetMulti(keys)
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	now := s.now().UnixMilli()
	out := make([]found, len(keys))
	for i, k := range keys {
		out[i] = inspect(items[k], now)
	}
	return out, nil
}

// each dumps every server in turn and calls fn with the keys under prefix
// it found, a batch of up to readBatch at a time, once each server's dump
// is over (the crawler is not kept waiting on the reads).
func (s *Store) each(ctx context.Context, op, prefix string, fn func(keys []string) error) error {
	servers, err := s.serverList(prefix)
	if err != nil {
		return err
	}
	for _, addr := range servers {
		var keys []string
		if err := s.dump(ctx, op, addr, prefix, func(k string) { keys = append(keys, k) }); err != nil {
			return err
		}
		for batch := range slices.Chunk(keys, readBatch) {
			if err := fn(batch); err != nil {
				return err
			}
		}
	}
	return nil
}

// serverList returns the servers to list, each once, in the order the
// client's selector or Options.Servers gives them.
func (s *Store) serverList(prefix string) ([]net.Addr, error) {
	if ItemKey(prefix+"x") != prefix+"x" {
		return nil, fmt.Errorf("memcached: the prefix %q holds a byte memcached keys cannot, so every key under it is hashed and cannot be listed: %w", prefix, errors.ErrUnsupported)
	}
	var addrs []net.Addr
	seen := map[string]bool{}
	add := func(a net.Addr) error {
		if id := a.Network() + " " + a.String(); !seen[id] {
			seen[id] = true
			addrs = append(addrs, a)
		}
		return nil
	}
	switch {
	case s.selector != nil:
		if err := s.selector.Each(add); err != nil {
			return nil, fmt.Errorf("memcached: the server list: %w: %w", sessionkit.ErrUnavailable, err)
		}
	default:
		for _, srv := range s.servers {
			network := "tcp"
			if strings.Contains(srv, "/") {
				network = "unix"
			}
			add(serverAddr{network, srv})
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("memcached: listing sessions needs the client's servers in Options.Servers or Options.Selector: %w", errors.ErrUnsupported)
	}
	return addrs, nil
}

type serverAddr struct{ network, addr string }

func (a serverAddr) Network() string { return a.network }
func (a serverAddr) String() string  { return a.addr }

// timeout is the client's: each read of a metadump must come within it.
func (s *Store) timeout() time.Duration {
	if s.client.Timeout > 0 {
		return s.client.Timeout
	}
	return memcache.DefaultTimeout
}

// dump runs one metadump on addr, over a connection of its own, and calls
// fn with the item key of every item under prefix that memcached has not
// expired on its own clock. Keys that ItemKey hashed are skipped: their
// storage key is not in them.
func (s *Store) dump(ctx context.Context, op string, addr net.Addr, prefix string, fn func(key string)) (err error) {
	op = "memcached: " + op
	if err := ctx.Err(); err != nil {
		return driver.Wrap(ctx, op, err)
	}
	timeout := s.timeout()
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return driver.Wrap(ctx, op, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // unblocks a read
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = driver.Wrap(ctx, op, ctx.Err())
		}
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	ask := func(cmd string) ([]byte, error) {
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			return nil, err
		}
		return line(r)
	}

	// The server's clock, on which metadump reports expiry times.
	serverNow := int64(-1)
	l, err := ask("stats")
	for ; err == nil && !bytes.Equal(l, []byte("END")); l, err = line(r) {
		if v, ok := bytes.CutPrefix(l, []byte("STAT time ")); ok {
			serverNow, _ = strconv.ParseInt(string(v), 10, 64)
		}
		c.SetDeadline(time.Now().Add(timeout))
	}
	if err != nil {
		return driver.Wrap(ctx, op, fmt.Errorf("%s: stats: %w", addr, err))
	}

	mode := "hash"
	start, wait := time.Now(), 10*time.Millisecond
	for {
		l, err = ask("lru_crawler metadump " + mode)
		if err != nil {
			return driver.Wrap(ctx, op, fmt.Errorf("%s: lru_crawler metadump: %w", addr, err))
		}
		switch {
		case bytes.HasPrefix(l, []byte("BUSY")):
			// The crawler is on another crawl; memcached holds its own
			// expiry sweeps back for a minute after refusing us.
			if time.Since(start) > maxBusyWait {
				return fmt.Errorf("%s: %s: %w: the crawler stayed busy for %v: %q", op, addr, sessionkit.ErrUnavailable, maxBusyWait, l)
			}
			select {
			case <-ctx.Done():
				return driver.Wrap(ctx, op, ctx.Err())
			case <-time.After(wait):
			}
			wait = min(2*wait, 500*time.Millisecond)
			continue
		case bytes.HasPrefix(l, []byte("BADCLASS")) && mode == "hash":
			mode = "all" // before "hash" existed
			continue
		case bytes.HasPrefix(l, []byte("SERVER_ERROR")):
			return fmt.Errorf("%s: %s answered %q: %w", op, addr, l, sessionkit.ErrUnavailable)
		case bytes.HasPrefix(l, []byte("CLIENT_ERROR")), bytes.HasPrefix(l, []byte("ERROR")), bytes.HasPrefix(l, []byte("BADCLASS")):
			return fmt.Errorf("%s: %s answered %q: %w (%w)", op, addr, l, ErrNoCrawler, errors.ErrUnsupported)
		}
		break
	}
	for ; err == nil && !bytes.Equal(l, []byte("END")); l, err = line(r) {
		c.SetDeadline(time.Now().Add(timeout))
		k, exp, perr := parseDumpLine(l)
		if perr != nil {
			return fmt.Errorf("%s: %s: %w: %w", op, addr, sessionkit.ErrUnavailable, perr)
		}
		switch {
		case !strings.HasPrefix(k, prefix):
		case len(k) == len(hashedPrefix)+43 && strings.HasPrefix(k, hashedPrefix):
		case exp >= 0 && serverNow >= 0 && exp < serverNow:
		default:
			fn(k)
		}
	}
	if err != nil {
		return driver.Wrap(ctx, op, fmt.Errorf("%s: lru_crawler metadump: %w", addr, err))
	}
	return nil
}

// line reads one line without its end ("\n" after an item, "\r\n" after
// the others).
func line(r *bufio.Reader) ([]byte, error) {
	l, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(l[:len(l)-1], []byte("\r")), nil
}

// parseDumpLine parses "key=<url-encoded> exp=<unix time or -1> ...".
func parseDumpLine(l []byte) (key string, exp int64, err error) {
	exp = -2
	for f := range bytes.FieldsSeq(l) {
		switch {
		case bytes.HasPrefix(f, []byte("key=")):
			key, err = url.PathUnescape(string(f[4:]))
		case bytes.HasPrefix(f, []byte("exp=")):
			exp, err = strconv.ParseInt(string(f[4:]), 10, 64)
		}
		if err != nil {
			break
		}
	}
	if err == nil && (key == "" || exp == -2) {
		err = errors.New("no key or exp")
	}
	if err != nil {
		return "", 0, fmt.Errorf("metadump line %q: %w", l, err)
	}
	return key, exp, nil
}
