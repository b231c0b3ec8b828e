package main

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if got := median(ds); got != 3 {
		t.Fatalf("median = %v, want 3", got)
	}
	if got := quantile(ds, 0); got != 1 {
		t.Fatalf("q0 = %v, want 1", got)
	}
	if got := quantile(ds, 1); got != 5 {
		t.Fatalf("q1 = %v, want 5", got)
	}
	if got := quantile([]time.Duration{10, 20}, 0.9); got != 19 {
		t.Fatalf("p90 of {10,20} = %v, want 19 (interpolated)", got)
	}
	if ds[0] != 5 {
		t.Fatal("quantile sorted its input in place")
	}
	if got := medianFloat([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Fatalf("medianFloat = %v, want 2.5", got)
	}
}

func TestJudge(t *testing.T) {
	cases := []struct {
		r    Row
		t    Target
		want string
	}{
		{Row{Ratio: 2}, Target{Text: "<= 2x", Max: 2}, "yes"},
		{Row{Ratio: 2.01}, Target{Text: "<= 2x", Max: 2}, "no"},
		{Row{Ratio: 1}, Target{Text: "< 1x", Max: 1, Strict: true}, "no"},
		{Row{Ratio: 0.99}, Target{Text: "< 1x", Max: 1, Strict: true}, "yes"},
		{Row{Ratio: 1.1, Added: 16}, Target{Text: "+15", AddedMax: 15}, "no"},
		{Row{Ratio: 1.1, Added: 14}, Target{Text: "+15", AddedMax: 15}, "yes"},
		{Row{Ratio: 3}, Target{}, "info"},
		{Row{}, Target{Text: "<= 2x", Max: 2}, "n/a"},
	}
	for i, c := range cases {
		if got := judge(c.r, c.t).Met; got != c.want {
			t.Errorf("case %d: met = %q, want %q", i, got, c.want)
		}
	}
}

func TestTableHasEveryRow(t *testing.T) {
	rows := []Row{
		judge(Row{Item: "1a", Name: "hook", Measured: "1 ms", Anchor: "floor 1 ms", Ratio: 1}, Target{Text: "<= 2x", Max: 2}),
		notMeasured("5", "guest", "<= +15 ms", "no libvirtd"),
	}
	var b bytes.Buffer
	printTable(&b, rows)
	out := b.String()
	for _, want := range []string{"ratio", "target", "met", "1a", "1.00x", "yes", "n/a", "no libvirtd"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	markdownTable(&b, rows)
	if n := strings.Count(b.String(), "\n| "); n != 3 { // header separator + 2 rows
		t.Errorf("markdown table has %d body lines, want 3:\n%s", n, b.String())
	}
	b.Reset()
	if err := writeJSON(&b, rows); err != nil {
		t.Fatal(err)
	}
}

func TestPlotIsValidSVG(t *testing.T) {
	mk := func(base time.Duration) []time.Duration {
		var d []time.Duration
		for i := 0; i < 100; i++ {
			d = append(d, base+time.Duration(i)*10*time.Microsecond)
		}
		return d
	}
	var b bytes.Buffer
	err := plotECDF(&b, "a & b", []Series{{Name: "floor", Color: "#000", Samples: mk(time.Millisecond)}, {Name: "hook <x>", Color: "#f00", Samples: mk(3 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("plot is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 2 {
		t.Fatalf("%d curves, want 2", lines)
	}
	if err := plotECDF(&b, "empty", nil); err == nil {
		t.Fatal("plot of no samples did not fail")
	}
}

func TestNiceStep(t *testing.T) {
	for raw, want := range map[float64]float64{0.7: 1, 1.3: 2, 3: 5, 7: 10, 0.03: 0.05} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
}

func TestBenchDomain(t *testing.T) {
	if !bytes.Contains(guestXML, []byte("<source network='lan'/>")) || !bytes.Contains(guestXML, []byte("<source network='storage'/>")) {
		t.Fatal("bench domain must have the two managed interfaces")
	}
	if n := len(guestXML); n < 4500 || n > 7000 {
		t.Fatalf("bench domain is %d bytes, want about 5-6 KB", n)
	}
}
