package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

var palette = []string{"#222222", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"}

// writeSVG plots µs per request against N (both axes logarithmic), one line
// per contender, one panel per workload (rows) and concurrency (columns).
// Every panel shares the y axis.
func writeSVG(path string, workloads []workload, names []string, concs []int, rows []row) error {
	const panelW, panelH, margin, top = 420, 260, 60, 50
	width := len(concs)*(panelW+margin) + margin
	height := len(workloads)*(panelH+top+margin) + 40 + 20*len(names)
	lo, hi := math.Inf(1), math.Inf(-1)
	nlo, nhi := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		lo, hi = math.Min(lo, r.us), math.Max(hi, r.us)
		nlo, nhi = math.Min(nlo, float64(r.n)), math.Max(nhi, float64(r.n))
	}
	lo, hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if hi == lo {
		hi++
	}
	title := map[string]string{"rw": "read+write", "read": "read-only", "incr": "counter (sessionkit: Incr)"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for wi, w := range workloads {
		for pi, c := range concs {
			x0, y0 := margin+pi*(panelW+margin), top+wi*(panelH+top+margin)
			px := func(n int) float64 {
				l0, l1 := math.Log10(math.Max(nlo, 1)), math.Log10(math.Max(nhi, 1))
				if l1 == l0 {
					return float64(x0) + panelW/2
				}
				return float64(x0) + (math.Log10(math.Max(float64(n), 1))-l0)/(l1-l0)*panelW
			}
			py := func(us float64) float64 { return float64(y0+panelH) - (math.Log10(us)-lo)/(hi-lo)*panelH }
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s, c=%d: µs per request vs N (both log)</text>`+"\n", x0, y0-12, title[w.name], c)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, y0, panelW, panelH)
			for e := lo; e <= hi; e++ {
				y := py(math.Pow(10, e))
				fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", x0, x0+panelW, y, y, x0-5, y+4, math.Pow(10, e))
			}
			seen := map[int]bool{}
			for _, r := range rows {
				if !seen[r.n] {
					seen[r.n] = true
					fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(r.n), y0+panelH+15, r.n)
				}
			}
			for i, name := range names {
				var pts []string
				for _, r := range rows {
					if r.w == w.name && r.name == name && r.c == c {
						pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(r.n), py(r.us)))
					}
				}
				color := palette[i%len(palette)]
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
				for _, p := range pts {
					xy := strings.Split(p, ",")
					fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], color)
				}
			}
		}
	}
	for i, name := range names {
		y := len(workloads)*(panelH+top+margin) + 20*i
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/><text x="%d" y="%d">%s</text>`+"\n",
			margin, margin+30, y, y, palette[i%len(palette)], margin+40, y+4, name)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
