package postgres

// The figures of docs/backends.md (PostgreSQL), on the test server that
// internal/testserver starts:
//
//	go test -run '^$' -bench 'Floor|Footprint|Sweep' -benchtime 1x ./adapters/postgres

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/internal/testserver"
	"github.com/sessionkit/sessionkit/sessionkit"
)

var benchPrefixes atomic.Int64

// benchStore is a migrated store under a fresh prefix (returned too), with
// no sweeper, on a pool of its own, of one connection: the calls are
// sequential anyway, and the server's CPU time is then that of one process.
func benchStore(b *testing.B) (s *Store, pool *pgxpool.Pool, prefix string) {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(testserver.Postgres(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	prefix = fmt.Sprintf("bench%d_", benchPrefixes.Add(1))
	s, err = New(pool, &Options{TablePrefix: prefix, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s, pool, prefix
}

// BenchmarkStore is the shared store benchmark (Get, Set, GetAll on
// sessions of 10 and 1,000 fields).
func BenchmarkStore(b *testing.B) {
	s, _, _ := benchStore(b)
	adaptertest.Benchmark(b, s)
}

// BenchmarkFloor compares each operation with two floors, on a session of
// 10 fields of 64 bytes, one goroutine:
//
//   - same: the very statement the store sends, with the same arguments,
//     from bare pgx: what the adapter's Go code adds (target ≤ 1.3×);
//   - refresh: the simplest single statement that also checks and
//     refreshes the expiry, as the contract requires of every operation,
//     without Rename markers, the race checks or the field count;
//   - plain: the simplest single statement a hand-written pgx store would
//     send for the job, with no expiry at all.
//
// It reports wall time and CPU time per call: the server's (the one
// backend's, from /proc/<pid>/schedstat) and the client's (the test
// process's, from getrusage). On a shared machine wall time follows the
// load; CPU time much less. The variants take turns: each of 9 rounds runs
// 1,000 calls of each, every figure is the median over the rounds, and a
// ratio is taken within a round. Run it with -benchtime 1x.
func BenchmarkFloor(b *testing.B) {
	s, pool, p := benchStore(b)
	ctx := context.Background()
	var backend int
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		b.Fatal(err)
	}
	value := []byte(`"` + strings.Repeat("v", 62) + `"`)
	fields := make([]sessionkit.Field, 10)
	for i := range fields {
		fields[i] = sessionkit.Field{Name: fmt.Sprintf("attr%04d", i), Value: value}
	}
	const key = "bench:floor"
	if err := s.Create(ctx, key, fields, sessionkit.Expiry{Idle: time.Hour, Absolute: time.Hour}); err != nil {
		b.Fatal(err)
	}
	// 10,000 other sessions, analyzed, so that the planner sees tables of
	// a realistic size (on a table of one row it may pick plans no real
	// store would run).
	fill(b, pool, p, "other", time.Hour, 10_000)
	one := []sessionkit.Field{{Name: "attr0001", Value: value}}
	names, values := columns(one)
	var st int
	var v []byte
	var ns []string
	var vs [][]byte
	type variant struct {
		name string
		call func() error
	}
	ops := []struct {
		name     string
		variants [4]variant // store, same, refresh, plain
	}{
		{"Get", [4]variant{
			{"store", func() error { _, err := s.Get(ctx, key, "attr0001"); return err }},
			{"same", func() error { return pool.QueryRow(ctx, s.q.getOne, key, "attr0001").Scan(&st, &v) }},
			{"refresh", func() error {
				return pool.QueryRow(ctx, `UPDATE `+p+`sessions t SET `+setRefresh+` WHERE key = $1 AND expires > now()
					RETURNING (SELECT value FROM `+p+`fields WHERE session_id = t.id AND name = $2)`, key, "attr0001").Scan(&v)
			}},
			{"plain", func() error {
				return pool.QueryRow(ctx, `SELECT f.value FROM `+p+`fields f JOIN `+p+`sessions s ON s.id = f.session_id
					WHERE s.key = $1 AND f.name = $2`, key, "attr0001").Scan(&v)
			}},
		}},
		{"Set", [4]variant{
			{"store", func() error { return s.Set(ctx, key, one, sessionkit.DefaultMaxFields) }},
			{"same", func() error {
				return pool.QueryRow(ctx, s.q.set, key, names, values, sessionkit.DefaultMaxFields).Scan(&st)
			}},
			{"refresh", func() error {
				_, err := pool.Exec(ctx, `WITH s AS (UPDATE `+p+`sessions t SET `+setRefresh+` WHERE key = $1 AND expires > now() RETURNING id)
					INSERT INTO `+p+`fields (session_id, name, value) SELECT id, $2, $3 FROM s
					ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value`, key, "attr0001", value)
				return err
			}},
			{"plain", func() error {
				_, err := pool.Exec(ctx, `INSERT INTO `+p+`fields (session_id, name, value)
					SELECT id, $2, $3 FROM `+p+`sessions WHERE key = $1
					ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value`, key, "attr0001", value)
				return err
			}},
		}},
		{"GetAll", [4]variant{
			{"store", func() error { _, err := s.GetAll(ctx, key); return err }},
			{"same", func() error { return pool.QueryRow(ctx, s.q.getAll, key).Scan(&st, &ns, &vs) }},
			{"refresh", func() error {
				return pool.QueryRow(ctx, `WITH s AS (UPDATE `+p+`sessions t SET `+setRefresh+` WHERE key = $1 AND expires > now() RETURNING id)
					SELECT array_agg(name), array_agg(value) FROM `+p+`fields WHERE session_id = (SELECT id FROM s)`, key).Scan(&ns, &vs)
			}},
			{"plain", func() error {
				return pool.QueryRow(ctx, `SELECT array_agg(f.name), array_agg(f.value) FROM `+p+`fields f
					JOIN `+p+`sessions s ON s.id = f.session_id WHERE s.key = $1`, key).Scan(&ns, &vs)
			}},
		}},
	}
	const rounds, calls = 9, 1000
	type sample struct{ wall, server, client, cpu float64 } // µs per call
	for b.Loop() {
		for _, op := range ops {
			var samples [4][]sample
			var ratios [3][]sample // store ÷ same, ÷ refresh, ÷ plain
			for range rounds {
				var round [4]sample
				for i, va := range op.variants {
					server0, client0, start := schedstat(b, backend), cpuTime(), time.Now()
					for range calls {
						if err := va.call(); err != nil {
							b.Fatal(op.name, va.name, err)
						}
					}
					wall := time.Since(start)
					server, client := schedstat(b, backend)-server0, cpuTime()-client0
					round[i] = sample{
						wall:   float64(wall.Nanoseconds()) / 1e3 / calls,
						server: float64(server.Nanoseconds()) / 1e3 / calls,
						client: float64(client.Nanoseconds()) / 1e3 / calls,
						cpu:    float64((server + client).Nanoseconds()) / 1e3 / calls,
					}
					samples[i] = append(samples[i], round[i])
				}
				for j := range ratios {
					a, f := round[0], round[1+j]
					ratios[j] = append(ratios[j], sample{a.wall / f.wall, a.server / f.server, a.client / f.client, a.cpu / f.cpu})
				}
			}
			for i, va := range op.variants {
				b.ReportMetric(median(samples[i], func(s sample) float64 { return s.wall }), "µs-wall/"+op.name+"-"+va.name)
				b.ReportMetric(median(samples[i], func(s sample) float64 { return s.server }), "µs-server-cpu/"+op.name+"-"+va.name)
				b.ReportMetric(median(samples[i], func(s sample) float64 { return s.client }), "µs-client-cpu/"+op.name+"-"+va.name)
			}
			for j, floor := range []string{"same", "refresh", "plain"} {
				b.ReportMetric(median(ratios[j], func(s sample) float64 { return s.wall }), "×"+floor+"-wall/"+op.name)
				b.ReportMetric(median(ratios[j], func(s sample) float64 { return s.cpu }), "×"+floor+"-cpu/"+op.name)
			}
		}
	}
}

// schedstat is the CPU time of process pid so far (Linux).
func schedstat(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		b.Skipf("no CPU time of the server's backend: %v", err)
	}
	ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(ns)
}

// cpuTime is the test process's CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median[T any](xs []T, f func(T) float64) float64 {
	vals := make([]float64, len(xs))
	for i, x := range xs {
		vals[i] = f(x)
	}
	slices.Sort(vals)
	return vals[len(vals)/2]
}

// BenchmarkFootprint reports the bytes on disk per session (tables, their
// indexes and TOAST: pg_total_relation_size) for 2,000 sessions stored
// through a Manager, in the shapes internal/footprint measures for the
// other backends; then again after one read of every session, since every
// operation writes a new version of the session's row until VACUUM.
func BenchmarkFootprint(b *testing.B) {
	const sessions = 2000
	for _, sh := range []struct{ fields, size int }{{1, 32}, {10, 32}, {100, 32}, {1, 64}, {10, 64}, {100, 64}} {
		b.Run(fmt.Sprintf("fields=%d/size=%d", sh.fields, sh.size), func(b *testing.B) {
			s, pool, p := benchStore(b)
			ctx := context.Background()
			m, err := sessionkit.New(&sessionkit.Options{Store: s, IdleTimeout: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			values := make(map[string]any, sh.fields)
			for i := range sh.fields {
				values[fmt.Sprintf("attr%03d", i)] = strings.Repeat("v", sh.size)
			}
			size := func() float64 {
				var n int64
				if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+p+`sessions, `+p+`fields`); err != nil {
					b.Fatal(err)
				}
				err := pool.QueryRow(ctx, `SELECT pg_total_relation_size($1) + pg_total_relation_size($2)`,
					p+"sessions", p+"fields").Scan(&n)
				if err != nil {
					b.Fatal(err)
				}
				return float64(n)
			}
			empty := size()
			var all []*sessionkit.Session
			for range sessions {
				sess := m.NewSession()
				if err := sess.SetMany(ctx, values); err != nil {
					b.Fatal(err)
				}
				all = append(all, sess)
			}
			b.ReportMetric((size()-empty)/sessions, "B/session")
			if _, err := pool.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
				b.Fatal(err)
			}
			for _, sess := range all {
				if _, err := sess.Get(ctx, "attr000"); err != nil {
					b.Fatal(err)
				}
			}
			// Measured without the VACUUM that size runs first: what the
			// dead row versions take until autovacuum comes.
			var n int64
			if err := pool.QueryRow(ctx, `SELECT pg_total_relation_size($1) + pg_total_relation_size($2)`,
				p+"sessions", p+"fields").Scan(&n); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric((float64(n)-empty)/sessions, "B/session-after-reads")
		})
	}
}

// BenchmarkSweep reports what the sweeper takes to delete 10,000 expired
// sessions of 10 fields each (with their 100,000 field rows), in batches
// of DefaultSweepBatch, from tables that also hold 10,000 live sessions.
func BenchmarkSweep(b *testing.B) {
	s, pool, prefix := benchStore(b)
	const n = 10_000
	fill(b, pool, prefix, "live", time.Hour, n)
	for b.Loop() {
		b.StopTimer()
		fill(b, pool, prefix, "expired", -time.Hour, n)
		b.StartTimer()
		got, err := s.Sweep(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("swept %d sessions, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/10k-sessions")
}

// fill inserts n sessions of 10 fields of 64 bytes in bulk (one statement,
// not through the store, which would take minutes), named name:1…name:n,
// expiring in expiresIn (negative: expired that long ago), and analyzes the
// tables.
func fill(b *testing.B, pool *pgxpool.Pool, prefix, name string, expiresIn time.Duration, n int) {
	b.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		WITH s AS (INSERT INTO `+prefix+`sessions (key, created, idle, absolute, expires, sweep_after, nfields)
			SELECT $1 || ':' || i, now() - interval '1 hour', interval '2 hours', interval '3 hours',
				now() + $2::interval, now() + $2::interval, 10
			FROM generate_series(1, $3::int) i RETURNING id)
		INSERT INTO `+prefix+`fields (session_id, name, value)
			SELECT s.id, 'attr' || j, convert_to('"' || repeat('v', 62) || '"', 'UTF8') FROM s, generate_series(1, 10) j`,
		name, expiresIn, n)
	if err == nil {
		_, err = pool.Exec(ctx, `VACUUM ANALYZE `+prefix+`sessions, `+prefix+`fields`)
	}
	if err != nil {
		b.Fatal(err)
	}
}
