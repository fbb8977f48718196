// Command bench compares sessionkit's Redis hash store with the Go peers and
// with a raw go-redis floor, on one redis-server it starts itself:
//
//	cd bench && go run .
//
// Each request goes through a contender's own middleware in process
// (httptest), reads one attribute of a session holding N others (64-byte
// strings) and writes it back incremented. Contenders run interleaved, in
// rounds, and every cell reports the median round. It prints a table and
// writes results.csv and performance.svg.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"log"
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
	flagRounds   = flag.Int("rounds", 5, "measured rounds per cell (the median is reported)")
	flagRequests = flag.Int("requests", 2000, "requests per contender per round and cell")
	flagSizes    = flag.String("n", "1,10,100,1000", "session sizes N (attributes besides the counter)")
	flagConc     = flag.String("c", "1,16", "concurrencies (goroutines, each on its own session)")
	flagCSV      = flag.String("csv", "results.csv", "CSV output")
	flagSVG      = flag.String("svg", "performance.svg", "plot output")
	flagProto    = flag.Bool("prototype", false, "also measure the design proposed in docs/performance.md (prototype.go)")
)

// sample is one contender's batch in one round.
type sample struct {
	usPerReq, reqPerSec, tripsPerReq, bytesPerReq, allocsPerReq float64
}

type cellKey struct {
	name string
	n, c int
}

func main() {
	flag.Parse()
	sizes, concs := ints(*flagSizes), ints(*flagConc)
	srv, err := startRedis()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.stop()
	admin := redis.NewClient(&redis.Options{Addr: srv.addr})
	defer admin.Close()

	contenders := []*contender{newRawFloor(srv.addr), newSessionkit(srv.addr), newSCS(srv.addr), newGorilla(srv.addr), newIris(srv.addr)}
	if *flagProto {
		contenders = append(contenders, newPrototype(srv.addr))
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

	// Every cell's sessions first, then rounds that visit every cell and,
	// within a cell, every contender: drift hits all alike, and ratios are
	// taken between measurements of the same round.
	type cell struct{ n, c int }
	var cells []cell
	sessions := map[cellKey][][]*http.Cookie{}
	for _, c := range concs {
		for _, n := range sizes {
			cells = append(cells, cell{n, c})
			for _, ct := range contenders {
				k := cellKey{ct.name, n, c}
				sessions[k] = setup(ct, n, c)
				batch(ct, sessions[k], 50) // warm-up: connections, scripts
			}
		}
	}
	rounds := make([]map[cellKey]sample, *flagRounds)
	for r := range rounds {
		rounds[r] = map[cellKey]sample{}
		for _, cl := range cells {
			for _, ct := range contenders {
				k := cellKey{ct.name, cl.n, cl.c}
				rounds[r][k] = measure(srv, admin, ct, sessions[k])
			}
		}
		fmt.Fprintf(os.Stderr, "round %d of %d done\n", r+1, len(rounds))
	}

	rows := report(names, sizes, concs, rounds)
	if err := writeCSV(*flagCSV, rows); err != nil {
		log.Fatal(err)
	}
	if err := writeSVG(*flagSVG, names, sizes, concs, rows); err != nil {
		log.Fatal(err)
	}
	targets(sizes, concs, rounds)
	probe(contenders)
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

// batch sends perSession /bench requests on each session, the sessions in
// parallel, and returns the wall time.
func batch(ct *contender, sessions [][]*http.Cookie, perSession int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for _, cookies := range sessions {
		wg.Go(func() {
			for range perSession {
				if res := serve(ct.handler, "/bench", cookies); res.StatusCode != http.StatusOK {
					log.Fatalf("%s: /bench answered %s", ct.name, res.Status)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func measure(srv *redisServer, admin *redis.Client, ct *contender, sessions [][]*http.Cookie) sample {
	perSession := max(1, *flagRequests/len(sessions))
	total := float64(perSession * len(sessions))
	runtime.GC()
	var before, after runtime.MemStats
	bytesBefore := srv.netBytes(admin)
	tripsBefore := roundTrips.Load()
	runtime.ReadMemStats(&before)
	elapsed := batch(ct, sessions, perSession)
	runtime.ReadMemStats(&after)
	trips := roundTrips.Load() - tripsBefore
	bytes := srv.netBytes(admin) - bytesBefore
	return sample{
		usPerReq:     float64(elapsed.Microseconds()) / total,
		reqPerSec:    total / elapsed.Seconds(),
		tripsPerReq:  float64(trips) / total,
		bytesPerReq:  float64(bytes) / total,
		allocsPerReq: float64(after.Mallocs-before.Mallocs) / total,
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

// row is one contender in one cell: medians over the rounds.
type row struct {
	name                                                       string
	n, c                                                       int
	us, rps, trips, bytes, allocs, ratio, allocRatio, selfToN1 float64
}

// perRound returns f of each round's samples, and its median.
func perRound(rounds []map[cellKey]sample, f func(map[cellKey]sample) float64) float64 {
	xs := make([]float64, len(rounds))
	for i, r := range rounds {
		xs[i] = f(r)
	}
	return median(xs)
}

func report(names []string, sizes, concs []int, rounds []map[cellKey]sample) []row {
	var rows []row
	for _, c := range concs {
		fmt.Printf("c=%d (each goroutine on its own session)\n", c)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "contender\tN\tµs/req\treq/s\t×floor\tround trips\tRedis B/req\tallocs/req\tallocs ×floor\t×own N=1\t")
		for _, n := range sizes {
			for _, name := range names {
				k, floor, n1 := cellKey{name, n, c}, cellKey{"raw-floor", n, c}, cellKey{name, sizes[0], c}
				med := func(f func(sample) float64) float64 {
					return perRound(rounds, func(r map[cellKey]sample) float64 { return f(r[k]) })
				}
				r := row{name: name, n: n, c: c,
					us:     med(func(s sample) float64 { return s.usPerReq }),
					rps:    med(func(s sample) float64 { return s.reqPerSec }),
					trips:  med(func(s sample) float64 { return s.tripsPerReq }),
					bytes:  med(func(s sample) float64 { return s.bytesPerReq }),
					allocs: med(func(s sample) float64 { return s.allocsPerReq }),
					ratio:  perRound(rounds, func(r map[cellKey]sample) float64 { return r[k].usPerReq / r[floor].usPerReq }),
					allocRatio: perRound(rounds, func(r map[cellKey]sample) float64 {
						return r[k].allocsPerReq / r[floor].allocsPerReq
					}),
					selfToN1: perRound(rounds, func(r map[cellKey]sample) float64 { return r[k].usPerReq / r[n1].usPerReq }),
				}
				rows = append(rows, r)
				fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.2f\t%.2f\t%.0f\t%.1f\t%.2f\t%.2f\t\n",
					name, n, r.us, r.rps, r.ratio, r.trips, r.bytes, r.allocs, r.allocRatio, r.selfToN1)
			}
		}
		tw.Flush()
		fmt.Println()
	}
	return rows
}

// targets checks the targets for sessionkit, each a median of
// per-round ratios.
func targets(sizes, concs []int, rounds []map[cellKey]sample) {
	fmt.Println("targets (medians of per-round ratios)")
	ratio := func(a, b cellKey, f func(sample) float64) float64 {
		return perRound(rounds, func(r map[cellKey]sample) float64 { return f(r[a]) / f(r[b]) })
	}
	us := func(s sample) float64 { return s.usPerReq }
	check := func(what string, got float64, ok bool) {
		verdict := "MISS"
		if ok {
			verdict = "ok"
		}
		fmt.Printf("  %-4s %-58s %.2f\n", verdict, what, got)
	}
	first, last := sizes[0], sizes[len(sizes)-1]
	for _, c := range concs {
		for _, n := range sizes {
			sk := cellKey{"sessionkit", n, c}
			x := ratio(sk, cellKey{"raw-floor", n, c}, us)
			check(fmt.Sprintf("c=%d N=%d: time ÷ raw floor ≤ 1.15", c, n), x, x <= 1.15)
			x = ratio(sk, cellKey{"raw-floor", n, c}, func(s sample) float64 { return s.allocsPerReq })
			check(fmt.Sprintf("c=%d N=%d: allocations ÷ raw floor ≤ 1.3", c, n), x, x <= 1.3)
			x = ratio(sk, cellKey{"iris", n, c}, us)
			check(fmt.Sprintf("c=%d N=%d: time ÷ iris ≤ 1", c, n), x, x <= 1)
		}
		x := ratio(cellKey{"sessionkit", last, c}, cellKey{"sessionkit", first, c}, us)
		check(fmt.Sprintf("c=%d: time at N=%d ÷ time at N=%d ≤ 1.2", c, last, first), x, x <= 1.2)
		x = ratio(cellKey{"sessionkit", last, c}, cellKey{"sessionkit", first, c}, func(s sample) float64 { return s.bytesPerReq })
		check(fmt.Sprintf("c=%d: Redis bytes at N=%d ÷ at N=%d ≤ 1 (+1%%)", c, last, first), x, x <= 1.01)
		x = ratio(cellKey{"scs", first, c}, cellKey{"sessionkit", first, c}, us)
		check(fmt.Sprintf("c=%d N=%d: scs time ÷ sessionkit time ≥ 1", c, first), x, x >= 1)
		want := map[int]float64{1: 10, 16: 25}[c]
		if want > 0 {
			x = ratio(cellKey{"scs", last, c}, cellKey{"sessionkit", last, c}, us)
			check(fmt.Sprintf("c=%d N=%d: scs time ÷ sessionkit time ≥ %.0f", c, last, want), x, x >= want)
		}
	}
	fmt.Println()
}

func writeCSV(path string, rows []row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"contender", "n", "c", "us_per_req", "req_per_sec", "ratio_to_floor", "round_trips_per_req", "redis_bytes_per_req", "allocs_per_req", "allocs_ratio_to_floor", "ratio_to_own_n1"})
	for _, r := range rows {
		w.Write([]string{r.name, strconv.Itoa(r.n), strconv.Itoa(r.c), ff(r.us), ff(r.rps), ff(r.ratio), ff(r.trips), ff(r.bytes), ff(r.allocs), ff(r.allocRatio), ff(r.selfToN1)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ff(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

// probe sends 50 concurrent requests to one session, each setting its own
// key, and reports how many keys each contender kept.
func probe(contenders []*contender) {
	fmt.Println("lost-update probe: 50 concurrent requests on one session, each setting its own key")
	for _, ct := range contenders {
		cookies := setup(ct, 10, 1)[0]
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { serve(ct.handler, fmt.Sprintf("/probe?k=k%02d", i), cookies) })
		}
		wg.Wait()
		res := serve(ct.handler, "/count", cookies)
		var kept int
		fmt.Fscan(res.Body, &kept)
		fmt.Printf("  %-10s %2d of 50 survive\n", ct.name, kept)
	}
}
