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

	samples := map[cellKey][]sample{}
	ratios := map[cellKey][]float64{} // time ratio to the floor, per round
	for _, c := range concs {
		for _, n := range sizes {
			sessions := make(map[string][][]*http.Cookie, len(contenders))
			for _, ct := range contenders {
				sessions[ct.name] = setup(ct, n, c)
				batch(ct, sessions[ct.name], 50) // warm-up: connections, scripts
			}
			for range *flagRounds {
				var floor float64
				for _, ct := range contenders { // interleaved: drift hits all alike
					s := measure(srv, admin, ct, sessions[ct.name])
					k := cellKey{ct.name, n, c}
					samples[k] = append(samples[k], s)
					if ct.name == "raw-floor" {
						floor = s.usPerReq
					}
					ratios[k] = append(ratios[k], s.usPerReq/floor)
				}
			}
			fmt.Fprintf(os.Stderr, "done N=%d c=%d\n", n, c)
		}
	}

	rows := report(names, sizes, concs, samples, ratios)
	if err := writeCSV(*flagCSV, rows); err != nil {
		log.Fatal(err)
	}
	if err := writeSVG(*flagSVG, names, sizes, concs, rows); err != nil {
		log.Fatal(err)
	}
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

func report(names []string, sizes, concs []int, samples map[cellKey][]sample, ratios map[cellKey][]float64) []row {
	pick := func(k cellKey, f func(sample) float64) float64 {
		var xs []float64
		for _, s := range samples[k] {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	var rows []row
	for _, c := range concs {
		fmt.Printf("c=%d (each goroutine on its own session)\n", c)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "contender\tN\tµs/req\treq/s\t×floor\tround trips\tRedis B/req\tallocs/req\tallocs ×floor\t×own N=1\t")
		for _, n := range sizes {
			for _, name := range names {
				k := cellKey{name, n, c}
				r := row{name: name, n: n, c: c,
					us:     pick(k, func(s sample) float64 { return s.usPerReq }),
					rps:    pick(k, func(s sample) float64 { return s.reqPerSec }),
					trips:  pick(k, func(s sample) float64 { return s.tripsPerReq }),
					bytes:  pick(k, func(s sample) float64 { return s.bytesPerReq }),
					allocs: pick(k, func(s sample) float64 { return s.allocsPerReq }),
					ratio:  median(ratios[k]),
				}
				r.allocRatio = r.allocs / pick(cellKey{"raw-floor", n, c}, func(s sample) float64 { return s.allocsPerReq })
				r.selfToN1 = r.us / pick(cellKey{name, sizes[0], c}, func(s sample) float64 { return s.usPerReq })
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
