package redishash

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// Scan, Count and DestroyAll walk the keyspace with SCAN … MATCH prefix*
// on one server, or on every master of a Cluster (one after the other, in
// address order), and run a one-key script on each key found, pipelined:
// one round trip per SCAN batch, plus the batch's scripts.

// node is one server to walk.
type node struct {
	addr string // "" for a client that is not a Cluster
	c    redis.Cmdable
}

// nodes returns the servers to walk: the masters of a Cluster, sorted by
// address, or the client itself.
func (s *Store) nodes(ctx context.Context) ([]node, error) {
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		return []node{{c: s.client}}, nil
	}
	var (
		mu  sync.Mutex
		out []node
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, node{addr: c.Options().Addr, c: c})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b node) int { return strings.Compare(a.addr, b.addr) })
	return out, nil
}

// match is the SCAN pattern of the keys that start with prefix.
func match(prefix string) string {
	var b strings.Builder
	for _, r := range prefix {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('*')
	return b.String()
}

// evalEach runs sc on each key in one pipeline on c, loading the script
// once if the server does not have it yet.
func evalEach(ctx context.Context, c redis.Cmdable, sc *redis.Script, keys []string) ([]*redis.Cmd, error) {
	for try := 0; ; try++ {
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, len(keys))
		for i, k := range keys {
			cmds[i] = sc.EvalSha(ctx, pipe, []string{k})
		}
		_, err := pipe.Exec(ctx)
		if err != nil && try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return nil, err
			}
			continue
		}
		return cmds, err
	}
}

// peek returns the live records among keys.
func peek(ctx context.Context, c redis.Cmdable, keys []string) ([]sessionkit.SessionInfo, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds, err := evalEach(ctx, c, peekScript, keys)
	if err != nil {
		return nil, err
	}
	var out []sessionkit.SessionInfo
	for i, cmd := range cmds {
		row, ok := cmd.Val().([]any)
		if !ok {
			continue // 0: not a live record
		}
		info, err := parseInfo(keys[i], row)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Scan is sessionkit.Scanner.Scan. A page is one or more SCAN batches (a
// round trip each, with the pipelined reads of its keys) until it holds
// limit sessions or the walk ends; SCAN's COUNT is a hint, so a page may
// hold a few more. The cursor is the master's address and SCAN's cursor:
// when that master is gone (a Cluster failover during the walk), the walk
// starts over from the first master, so sessions may be listed twice but
// none is skipped.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, limit int) ([]sessionkit.SessionInfo, string, error) {
	if limit <= 0 {
		limit = 100
	}
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, "", wrap(ctx, "scan", err)
	}
	n, pos := 0, uint64(0)
	if cursor != "" {
		addr, p, ok := strings.Cut(cursor, "#")
		if pos, err = strconv.ParseUint(p, 10, 64); !ok || err != nil {
			return nil, "", fmt.Errorf("redishash: invalid scan cursor %q", cursor)
		}
		n, _ = slices.BinarySearchFunc(nodes, addr, func(a node, addr string) int { return strings.Compare(a.addr, addr) })
		if n == len(nodes) || nodes[n].addr != addr {
			// The master left (a Cluster failover): its slots now belong to
			// a master whose address may sort anywhere, so walk everything
			// again. A page may repeat sessions; none is skipped.
			n, pos = 0, 0
		}
	}
	pattern := match(prefix)
	var page []sessionkit.SessionInfo
	for n < len(nodes) && len(page) < limit {
		keys, next, err := nodes[n].c.ScanType(ctx, pos, pattern, int64(max(limit-len(page), 10)), "hash").Result()
		if err != nil {
			return nil, "", wrap(ctx, "scan", err)
		}
		infos, err := peek(ctx, nodes[n].c, keys)
		if err != nil {
			return nil, "", wrap(ctx, "scan", err)
		}
		page = append(page, infos...)
		if pos = next; pos == 0 {
			n++
		}
	}
	if n == len(nodes) {
		return page, "", nil
	}
	return page, nodes[n].addr + "#" + strconv.FormatUint(pos, 10), nil
}

// walk runs each on every batch of keys under prefix (of type typ, or
// any), on every server.
func (s *Store) walk(ctx context.Context, prefix, typ string, each func(c redis.Cmdable, keys []string) error) error {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return err
	}
	pattern := match(prefix)
	for _, nd := range nodes {
		for pos := uint64(0); ; {
			keys, next, err := nd.c.ScanType(ctx, pos, pattern, 1000, typ).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := each(nd.c, keys); err != nil {
					return err
				}
			}
			if pos = next; pos == 0 {
				break
			}
		}
	}
	return nil
}

// Count is sessionkit.Counter.Count: the walk of Scan, counting. It costs a
// round trip per 1000 keys under prefix (per master on a Cluster).
func (s *Store) Count(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.walk(ctx, prefix, "hash", func(c redis.Cmdable, keys []string) error {
		infos, err := peek(ctx, c, keys)
		n += len(infos)
		return err
	})
	if err != nil {
		return 0, wrap(ctx, "count", err)
	}
	return n, nil
}

// DestroyAll is sessionkit.Scanner.DestroyAll: the walk of Scan over keys
// of every type, deleting records, markers and indexes. Keys under prefix
// that are none of those are left alone.
func (s *Store) DestroyAll(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.walk(ctx, prefix, "", func(c redis.Cmdable, keys []string) error {
		cmds, err := evalEach(ctx, c, destroyAllScript, keys)
		if err != nil {
			return err
		}
		for _, cmd := range cmds {
			ended, _ := cmd.Val().(int64)
			n += int(ended)
		}
		return nil
	})
	if err != nil {
		return n, wrap(ctx, "destroyall", err)
	}
	return n, nil
}
