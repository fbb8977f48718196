// Command bench compares sessionkit's Redis hash store with the Go peers and
// with a raw go-redis floor, on one redis-server it starts itself:
//
//	cd bench && go run .
//	go run . -rounds 1 -n 1 -c 1     # a smoke test
//
// Each request goes through a contender's own middleware in process
// (httptest), on a session holding N attributes (64-byte strings) besides a
// counter. Three workloads (-w): rw reads the counter and writes it back
// incremented; read reads one string attribute; incr increments the counter,
// with Session.Incr for sessionkit and with each other contender's rw
// request. Contenders run interleaved, in rounds (and within a round in
// slices, taking turns), and every cell reports the median round; ratios are taken within a round, then their median. It
// prints a table per workload and concurrency, the targets of issue 11 with
// ok or MISS, and writes results.csv and performance.svg.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	flagRounds     = flag.Int("rounds", 5, "measured rounds per cell (the median is reported)")
	flagRequests   = flag.Int("requests", 2000, "requests per contender per round, cell and workload")
	flagSlices     = flag.Int("slices", 10, "slices each contender's requests are cut into, the contenders taking turns")
	flagSizes      = flag.String("n", "1,10,100,1000", "session sizes N (attributes besides the counter)")
	flagConc       = flag.String("c", "1,16", "concurrencies (goroutines, each on its own session)")
	flagWorkloads  = flag.String("w", "rw,read,incr", "workloads: rw (read+write), read (read-only), incr (counter)")
	flagContenders = flag.String("contenders", "raw-floor,sessionkit,scs,gorilla,iris", "contenders")
	flagCSV        = flag.String("csv", "results.csv", "CSV output")
	flagSVG        = flag.String("svg", "performance.svg", "plot output")
)

// A workload is one kind of request, served by every contender at path.
type workload struct{ name, path, title string }

var allWorkloads = []workload{
	{"rw", "/rw", "read+write: read counter, write it back +1"},
	{"read", "/read", "read-only: one string Get"},
	{"incr", "/incr", "counter: sessionkit Session.Incr (raw-floor: the same MULTI), the others their read+write"},
}

var newContender = map[string]func(addr string) *contender{
	"raw-floor": newRawFloor, "sessionkit": newSessionkit, "scs": newSCS, "gorilla": newGorilla, "iris": newIris,
}

// sample is one contender's batch in one round.
type sample struct {
	usPerReq, reqPerSec, tripsPerReq, bytesPerReq, cpuPerReq, allocsPerReq float64
}

// cellKey names one contender's measurement: workload w, size n,
// concurrency c.
type cellKey struct {
	w, name string
	n, c    int
}

func main() {
	flag.Parse()
	sizes, concs := ints(*flagSizes), ints(*flagConc)
	var workloads []workload
	for _, w := range strings.Split(*flagWorkloads, ",") {
		i := slices.IndexFunc(allWorkloads, func(x workload) bool { return x.name == strings.TrimSpace(w) })
		if i < 0 {
			log.Fatalf("unknown workload %q (rw, read, incr)", w)
		}
		workloads = append(workloads, allWorkloads[i])
	}
	srv, err := startRedis()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.stop()
	admin := redis.NewClient(&redis.Options{Addr: srv.addr})
	defer admin.Close()

	var contenders []*contender
	for _, name := range strings.Split(*flagContenders, ",") {
		f := newContender[strings.TrimSpace(name)]
		if f == nil {
			log.Fatalf("unknown contender %q", name)
		}
		contenders = append(contenders, f(srv.addr))
	}
	defer func() {
		for _, c := range contenders {
			c.close()
		}
	}()
	names := make([]string, len(contenders))
	for i, c := range contenders {
		names[i] = c.name
	}

	fmt.Printf("sessionkit bench: redis %s, Go %s, %s/%s, %d CPUs, %d rounds × %d requests per cell\n\n",
		srv.version(), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), *flagRounds, *flagRequests)

	// Every cell's sessions first (shared by the workloads), then rounds
	// that visit every cell and workload and, within one, every contender:
	// drift hits all alike, and ratios are taken between measurements of
	// the same round.
	type cell struct{ n, c int }
	var cells []cell
	sessions := map[cellKey][][]*http.Cookie{} // w is empty
	for _, c := range concs {
		for _, n := range sizes {
			cells = append(cells, cell{n, c})
			for _, ct := range contenders {
				k := cellKey{"", ct.name, n, c}
				sessions[k] = setup(ct, n, c)
				for _, w := range workloads { // warm-up: connections, scripts
					batch(ct, w.path, sessions[k], max(2, 50/c))
				}
			}
		}
	}
	rounds := make([]map[cellKey]sample, *flagRounds)
	start := time.Now()
	for r := range rounds {
		rounds[r] = map[cellKey]sample{}
		for _, cl := range cells {
			perSession := max(1, *flagRequests / *flagSlices / cl.c)
			for _, w := range workloads {
				// The contenders take turns, one slice each, starting
				// with a different one every slice: a burst of load from
				// elsewhere on the machine falls on all of them alike.
				acc := make([]totals, len(contenders))
				for sl := range *flagSlices {
					for j := range contenders {
						i := (sl + j) % len(contenders)
						ct := contenders[i]
						acc[i].add(measure(srv, admin, ct, w.path, sessions[cellKey{"", ct.name, cl.n, cl.c}], perSession))
					}
				}
				for i, ct := range contenders {
					rounds[r][cellKey{w.name, ct.name, cl.n, cl.c}] = acc[i].sample()
				}
			}
		}
		fmt.Fprintf(os.Stderr, "round %d of %d done (%s)\n", r+1, len(rounds), time.Since(start).Round(time.Second))
	}

	rows := report(workloads, names, sizes, concs, rounds)
	if err := writeCSV(*flagCSV, rows); err != nil {
		log.Fatal(err)
	}
	if err := writeSVG(*flagSVG, workloads, names, concs, rows); err != nil {
		log.Fatal(err)
	}
	kept := probe(contenders)
	targets(sizes, concs, rounds, kept)
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			log.Fatalf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out
}

// serve runs one request through h and returns the response.
func serve(h http.Handler, path string, cookies []*http.Cookie) *http.Response {
	r := httptest.NewRequest("GET", path, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// setup makes c sessions of n attributes and returns their cookies.
func setup(ct *contender, n, c int) [][]*http.Cookie {
	out := make([][]*http.Cookie, c)
	for i := range out {
		res := serve(ct.handler, "/setup?n="+strconv.Itoa(n), nil)
		if res.StatusCode != http.StatusOK || len(res.Cookies()) == 0 {
			log.Fatalf("%s: setup answered %s with %d cookies", ct.name, res.Status, len(res.Cookies()))
		}
		out[i] = res.Cookies()
	}
	return out
}

// batch sends perSession requests to path on each session, the sessions in
// parallel, and returns the wall time.
func batch(ct *contender, path string, sessions [][]*http.Cookie, perSession int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for _, cookies := range sessions {
		wg.Go(func() {
			for range perSession {
				if res := serve(ct.handler, path, cookies); res.StatusCode != http.StatusOK {
					log.Fatalf("%s: %s answered %s", ct.name, path, res.Status)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// totals is what one or more batches of one contender cost.
type totals struct {
	elapsed                         time.Duration
	requests, trips, bytes, mallocs int64
	cpuUs                           float64
}

func (t *totals) add(u totals) {
	t.elapsed += u.elapsed
	t.requests += u.requests
	t.trips += u.trips
	t.bytes += u.bytes
	t.mallocs += u.mallocs
	t.cpuUs += u.cpuUs
}

func (t totals) sample() sample {
	n := float64(t.requests)
	return sample{
		usPerReq:     float64(t.elapsed.Microseconds()) / n,
		reqPerSec:    n / t.elapsed.Seconds(),
		tripsPerReq:  float64(t.trips) / n,
		bytesPerReq:  float64(t.bytes) / n,
		cpuPerReq:    t.cpuUs / n,
		allocsPerReq: float64(t.mallocs) / n,
	}
}

// measure runs one batch of perSession requests on each session.
func measure(srv *redisServer, admin *redis.Client, ct *contender, path string, sessions [][]*http.Cookie, perSession int) totals {
	runtime.GC()
	var before, after runtime.MemStats
	bytesBefore, cpuBefore := srv.counters(admin)
	tripsBefore := roundTrips.Load()
	runtime.ReadMemStats(&before)
	elapsed := batch(ct, path, sessions, perSession)
	runtime.ReadMemStats(&after)
	trips := roundTrips.Load() - tripsBefore
	bytesAfter, cpuAfter := srv.counters(admin)
	return totals{
		elapsed:  elapsed,
		requests: int64(perSession * len(sessions)),
		trips:    trips,
		bytes:    bytesAfter - bytesBefore,
		mallocs:  int64(after.Mallocs - before.Mallocs),
		cpuUs:    cpuAfter - cpuBefore,
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat is a median over rounds with the spread: the lowest and highest
// round.
type stat struct{ med, lo, hi float64 }

func (s stat) ok() bool { return !math.IsNaN(s.med) }

var none = stat{math.NaN(), math.NaN(), math.NaN()}

// perRound returns f of each round's samples, its median and its spread.
// f answers NaN when a sample it needs is missing; then so does perRound.
func perRound(rounds []map[cellKey]sample, f func(map[cellKey]sample) float64) stat {
	xs := make([]float64, len(rounds))
	for i, r := range rounds {
		xs[i] = f(r)
		if math.IsNaN(xs[i]) {
			return none
		}
	}
	return stat{median(xs), slices.Min(xs), slices.Max(xs)}
}

// ratio is f(a) ÷ f(b) in each round, NaN where either is missing.
func ratio(a, b cellKey, f func(sample) float64) func(map[cellKey]sample) float64 {
	return func(r map[cellKey]sample) float64 {
		sa, okA := r[a]
		sb, okB := r[b]
		if !okA || !okB {
			return math.NaN()
		}
		return f(sa) / f(sb)
	}
}

var (
	us     = func(s sample) float64 { return s.usPerReq }
	cpu    = func(s sample) float64 { return s.cpuPerReq }
	allocs = func(s sample) float64 { return s.allocsPerReq }
)

// row is one contender in one cell of one workload: medians over the
// rounds.
type row struct {
	w, name                                               string
	n, c                                                  int
	us, rps, trips, bytes, cpu, allocs                    float64
	toIris, toFloor, cpuToIris, allocsToIris, toOwnFirstN float64
}

func report(workloads []workload, names []string, sizes, concs []int, rounds []map[cellKey]sample) []row {
	var rows []row
	for _, w := range workloads {
		for _, c := range concs {
			fmt.Printf("%s; c=%d (each goroutine on its own session)\n", w.title, c)
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "contender\tN\tµs/req\treq/s\t×iris\t×floor\tround trips\tRedis CPU µs/req\tCPU ×iris\tRedis B/req\tallocs/req\tallocs ×iris\t×own N=%d\t\n", sizes[0])
			for _, n := range sizes {
				for _, name := range names {
					k := cellKey{w.name, name, n, c}
					iris, floor, first := cellKey{w.name, "iris", n, c}, cellKey{w.name, "raw-floor", n, c}, cellKey{w.name, name, sizes[0], c}
					med := func(f func(sample) float64) float64 {
						return perRound(rounds, func(r map[cellKey]sample) float64 { return f(r[k]) }).med
					}
					r := row{w: w.name, name: name, n: n, c: c,
						us:           med(us),
						rps:          med(func(s sample) float64 { return s.reqPerSec }),
						trips:        med(func(s sample) float64 { return s.tripsPerReq }),
						bytes:        med(func(s sample) float64 { return s.bytesPerReq }),
						cpu:          med(cpu),
						allocs:       med(allocs),
						toIris:       perRound(rounds, ratio(k, iris, us)).med,
						toFloor:      perRound(rounds, ratio(k, floor, us)).med,
						cpuToIris:    perRound(rounds, ratio(k, iris, cpu)).med,
						allocsToIris: perRound(rounds, ratio(k, iris, allocs)).med,
						toOwnFirstN:  perRound(rounds, ratio(k, first, us)).med,
					}
					rows = append(rows, r)
					fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%s\t%s\t%.2f\t%.1f\t%s\t%.0f\t%.1f\t%s\t%s\t\n",
						name, n, r.us, r.rps, fx(r.toIris), fx(r.toFloor), r.trips, r.cpu, fx(r.cpuToIris), r.bytes, r.allocs, fx(r.allocsToIris), fx(r.toOwnFirstN))
				}
			}
			tw.Flush()
			fmt.Println()
		}
	}
	return rows
}

// fx formats a ratio, "-" when it could not be measured.
func fx(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// targets prints issue 11's targets for sessionkit with ok or MISS. Each
// figure is the median over rounds of a ratio taken within one round, with
// the spread over rounds in brackets. "median over N" takes, in each round,
// the median of that round's ratios over the sizes; "every N" and "every
// cell" report the worst cell, whose median must meet the target. A target
// whose contenders, workload or sizes are not in the run is "--".
func targets(sizes, concs []int, rounds []map[cellKey]sample, kept map[string]int) {
	fmt.Println("targets (issue 11): sessionkit ÷ contender, median of per-round ratios [lowest–highest round]")
	line := func(verdict bool, what string, s stat, note string) {
		v := "MISS"
		switch {
		case !s.ok():
			fmt.Printf("  %-4s %-64s %s\n", "--", what, "not measured in this run")
			return
		case verdict:
			v = "ok"
		}
		fmt.Printf("  %-4s %-64s %5.2f  [%.2f–%.2f]%s\n", v, what, s.med, s.lo, s.hi, note)
	}
	sk := func(w string, n, c int) cellKey { return cellKey{w, "sessionkit", n, c} }
	ref := func(w, name string, n, c int) cellKey { return cellKey{w, name, n, c} }
	// overN is the per-round median over sizes of sessionkit ÷ name in w.
	overN := func(w, name string, c int, f func(sample) float64) stat {
		return perRound(rounds, func(r map[cellKey]sample) float64 {
			xs := make([]float64, len(sizes))
			for i, n := range sizes {
				if xs[i] = ratio(sk(w, n, c), ref(w, name, n, c), f)(r); math.IsNaN(xs[i]) {
					return math.NaN()
				}
			}
			return median(xs)
		})
	}
	// worst is the cell of the highest median ratio over the given sizes
	// and concurrencies, and where it is.
	worst := func(w, name string, ns, cs []int, f func(sample) float64) (stat, string) {
		best, where := none, ""
		for _, c := range cs {
			for _, n := range ns {
				s := perRound(rounds, ratio(sk(w, n, c), ref(w, name, n, c), f))
				if !s.ok() {
					return none, ""
				}
				if !best.ok() || s.med > best.med {
					best, where = s, fmt.Sprintf("  worst: c=%d N=%d", c, n)
				}
			}
		}
		return best, where
	}
	has := func(xs []int, x int) bool { return slices.Contains(xs, x) }
	first, last := sizes[0], sizes[len(sizes)-1]

	// 1 and 2: time against iris.
	for _, w := range []struct{ name, label string }{{"rw", "read+write"}, {"read", "read-only"}} {
		if has(concs, 1) {
			for _, n := range sizes {
				s := perRound(rounds, ratio(sk(w.name, n, 1), ref(w.name, "iris", n, 1), us))
				line(s.med <= 1.0, fmt.Sprintf("%s time ÷ iris ≤ 1.0, c=1 N=%d", w.label, n), s, "")
			}
		}
		if has(concs, 16) {
			s := overN(w.name, "iris", 16, us)
			line(s.med <= 1.1, fmt.Sprintf("%s time ÷ iris ≤ 1.1, c=16, median over N", w.label), s, "")
		}
		if w.name == "rw" {
			s, where := worst(w.name, "iris", sizes, concs, us)
			line(s.med <= 1.2, "read+write time ÷ iris ≤ 1.2 in every cell", s, where)
		}
	}
	// 3 and 4: Redis CPU and client allocations against iris.
	for _, w := range []struct{ name, label string }{{"rw", "read+write"}, {"read", "read-only"}} {
		for _, c := range concs {
			s, where := worst(w.name, "iris", sizes, []int{c}, cpu)
			line(s.med <= 1.2, fmt.Sprintf("%s Redis CPU/req ÷ iris ≤ 1.2, c=%d, every N", w.label, c), s, where)
		}
		s, where := worst(w.name, "iris", sizes, concs, allocs)
		line(s.med <= 1.0, fmt.Sprintf("%s allocations/req ÷ iris ≤ 1.0, every cell", w.label), s, where)
	}
	// 5: a counter written with Incr against iris's read+write of it.
	for _, c := range concs {
		s, where := worst("incr", "iris", sizes, []int{c}, us)
		line(s.med <= 0.6, fmt.Sprintf("counter (Incr) time ÷ iris read+write ≤ 0.6, c=%d, every N", c), s, where)
	}
	// 7: flat in N, ahead of scs, no lost update.
	for _, w := range []string{"rw", "read", "incr"} {
		for _, c := range concs {
			s := none
			if first == 1 && last == 1000 {
				s = perRound(rounds, ratio(sk(w, 1000, c), sk(w, 1, c), us))
			}
			line(s.med <= 1.1, fmt.Sprintf("%s time at N=1000 ÷ at N=1 ≤ 1.1, c=%d", w, c), s, "")
		}
	}
	for _, c := range concs {
		s := none
		if has(sizes, 1000) {
			s = perRound(rounds, ratio(ref("rw", "scs", 1000, c), sk("rw", 1000, c), us))
		}
		line(s.med >= 5, fmt.Sprintf("scs time ÷ sessionkit ≥ 5, read+write, c=%d N=1000", c), s, "")
	}
	if n, ok := kept["sessionkit"]; ok {
		x := float64(n)
		line(n == 50, "lost-update probe: writes kept of 50 = 50", stat{x, x, x}, "")
	}
	fmt.Println()
}

func writeCSV(path string, rows []row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"workload", "contender", "n", "c", "us_per_req", "req_per_sec", "ratio_to_iris", "ratio_to_floor",
		"round_trips_per_req", "redis_cpu_us_per_req", "redis_cpu_ratio_to_iris", "redis_bytes_per_req",
		"allocs_per_req", "allocs_ratio_to_iris", "ratio_to_own_first_n"})
	for _, r := range rows {
		w.Write([]string{r.w, r.name, strconv.Itoa(r.n), strconv.Itoa(r.c), ff(r.us), ff(r.rps), ff(r.toIris), ff(r.toFloor),
			ff(r.trips), ff(r.cpu), ff(r.cpuToIris), ff(r.bytes), ff(r.allocs), ff(r.allocsToIris), ff(r.toOwnFirstN)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ff(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'f', 3, 64)
}

// probe sends 50 concurrent requests to one session, each setting its own
// key, and reports how many keys each contender kept.
func probe(contenders []*contender) map[string]int {
	fmt.Println("lost-update probe: 50 concurrent requests on one session, each setting its own key")
	kept := map[string]int{}
	for _, ct := range contenders {
		cookies := setup(ct, 10, 1)[0]
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { serve(ct.handler, fmt.Sprintf("/probe?k=k%02d", i), cookies) })
		}
		wg.Wait()
		res := serve(ct.handler, "/count", cookies)
		var n int
		fmt.Fscan(res.Body, &n)
		kept[ct.name] = n
		fmt.Printf("  %-10s %2d of 50 survive\n", ct.name, n)
	}
	fmt.Println()
	return kept
}
