package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

var palette = []string{"#222222", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"}

// writeSVG plots µs per request against N (both axes logarithmic), one line
// per contender, one panel per concurrency.
func writeSVG(path string, names []string, sizes, concs []int, rows []row) error {
	const panelW, panelH, margin = 460, 320, 60
	width := len(concs)*(panelW+margin) + margin
	height := panelH + 2*margin + 20*len(names)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		lo, hi = math.Min(lo, r.us), math.Max(hi, r.us)
	}
	lo, hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if hi == lo {
		hi++
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for pi, c := range concs {
		x0, y0 := margin+pi*(panelW+margin), margin
		px := func(n int) float64 {
			l0, l1 := math.Log10(float64(sizes[0])), math.Log10(float64(sizes[len(sizes)-1]))
			if l1 == l0 {
				return float64(x0)
			}
			return float64(x0) + (math.Log10(float64(n))-l0)/(l1-l0)*panelW
		}
		py := func(us float64) float64 { return float64(y0+panelH) - (math.Log10(us)-lo)/(hi-lo)*panelH }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14" font-weight="bold">c=%d: µs per request (log) vs N attributes (log)</text>`+"\n", x0, y0-15, c)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0, y0, panelW, panelH)
		for e := lo; e <= hi; e++ {
			y := py(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", x0, x0+panelW, y, y, x0-5, y+4, math.Pow(10, e))
		}
		for _, n := range sizes {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(n), y0+panelH+15, n)
		}
		for i, name := range names {
			var pts []string
			for _, r := range rows {
				if r.name == name && r.c == c {
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
	for i, name := range names {
		y := panelH + margin + 40 + 20*i
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/><text x="%d" y="%d">%s</text>`+"\n",
			margin, margin+30, y, y, palette[i%len(palette)], margin+40, y+4, name)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
