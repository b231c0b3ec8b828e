package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// Series is one distribution in the plot.
type Series struct {
	Name    string
	Color   string
	Samples []time.Duration
}

// plotECDF writes a hand-made SVG: the empirical cumulative distribution of
// each series (x: latency in ms, y: share of runs at most that long), with
// each series' median marked. The x axis ends at the largest p99, so rare
// outliers do not squash the picture (they are counted in the caption).
func plotECDF(w io.Writer, title string, series []Series) error {
	const (
		W, H                   = 860, 480
		left, right, top, bott = 70, 230, 50, 60
	)
	pw, ph := float64(W-left-right), float64(H-top-bott)
	xmax := 0.0
	for _, s := range series {
		if p := float64(quantile(s.Samples, 0.99)) / 1e6; p > xmax {
			xmax = p
		}
	}
	if xmax <= 0 {
		return fmt.Errorf("plot: no samples")
	}
	step := niceStep(xmax / 6)
	xmax = math.Ceil(xmax/step) * step
	x := func(ms float64) float64 { return float64(left) + math.Min(ms, xmax)/xmax*pw }
	y := func(p float64) float64 { return float64(top) + (1-p)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlEsc(title))
	// Grid and axes.
	for v := 0.0; v <= xmax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(v), top, x(v), H-bott)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), H-bott+16, trimFloat(v))
	}
	for p := 0.0; p <= 1.0001; p += 0.25 {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(p), W-right, y(p))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%d%%</text>`+"\n", left-6, y(p)+4, int(p*100+0.5))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">latency of one hook process: fork, exec, read stdin, work, exit (ms)</text>`+"\n", float64(left)+pw/2, H-bott+38)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">share of runs at most this long</text>`+"\n", float64(top)+ph/2)
	// Curves, medians and legend.
	for i, s := range series {
		d := append([]time.Duration(nil), s.Samples...)
		sort.Slice(d, func(a, c int) bool { return d[a] < d[c] })
		var pts []string
		n := float64(len(d))
		prev := 0.0
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(d[0])/1e6), y(0)))
		for k, v := range d {
			ms := float64(v) / 1e6
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(ms), y(prev)), fmt.Sprintf("%.1f,%.1f", x(ms), y(float64(k+1)/n)))
			prev = float64(k+1) / n
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.Color, strings.Join(pts, " "))
		med := float64(median(d)) / 1e6
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", x(med), y(0.5), s.Color)
		over := 0
		for _, v := range d {
			if float64(v)/1e6 > xmax {
				over++
			}
		}
		ly := top + 10 + i*44
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", W-right+14, ly, W-right+34, ly, s.Color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", W-right+40, ly+4, xmlEsc(s.Name))
		extra := ""
		if over > 0 {
			extra = fmt.Sprintf(", %d off scale", over)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" font-size="11">median %s, p90 %s%s</text>`+"\n", W-right+40, ly+19, fmtDur(median(d)), fmtDur(quantile(d, 0.9)), extra)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds a raw tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func xmlEsc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
