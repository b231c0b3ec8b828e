package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// Target is the budget one row is judged against. Ratio is always
// measured/anchor (lower is better); Max is the largest ratio allowed, or,
// when AddedMax is set, the largest absolute difference in milliseconds.
type Target struct {
	Text     string
	Max      float64
	Strict   bool    // ratio must be below Max, not equal ("faster")
	AddedMax float64 // ms; judged on Measured-Anchor instead of the ratio
}

// Row is one line of the table.
type Row struct {
	Item     string  `json:"item"`
	Name     string  `json:"name"`
	Measured string  `json:"measured"`
	Anchor   string  `json:"anchor"`
	Ratio    float64 `json:"ratio"`
	Added    float64 `json:"added_ms,omitempty"`
	Target   string  `json:"target"`
	Met      string  `json:"met"` // yes | no | n/a | info
	Note     string  `json:"note,omitempty"`
}

// judge fills Ratio-derived Target and Met.
func judge(r Row, t Target) Row {
	r.Target = t.Text
	switch {
	case t.Text == "":
		r.Target, r.Met = "(info)", "info"
	case math.IsNaN(r.Ratio) || math.IsInf(r.Ratio, 0) || r.Ratio == 0:
		r.Met = "n/a"
	case t.AddedMax > 0:
		r.Met = yesNo(r.Added <= t.AddedMax)
	case t.Strict:
		r.Met = yesNo(r.Ratio < t.Max)
	default:
		r.Met = yesNo(r.Ratio <= t.Max)
	}
	return r
}

// notMeasured is a row that could not be measured, with the reason.
func notMeasured(item, name, target, why string) Row {
	return Row{Item: item, Name: name, Measured: "-", Anchor: "-", Target: target, Met: "n/a", Note: why}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ratioText(r Row) string {
	if math.IsNaN(r.Ratio) || r.Ratio == 0 {
		return "-"
	}
	if r.Added != 0 {
		return fmt.Sprintf("%.2fx (%+.1f ms)", r.Ratio, r.Added)
	}
	return fmt.Sprintf("%.2fx", r.Ratio)
}

// printTable writes the rows as an aligned plain-text table.
func printTable(w io.Writer, rows []Row) {
	head := []string{"#", "row", "measured", "anchor", "ratio", "target", "met"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Item, r.Name, r.Measured, r.Anchor, ratioText(r), r.Target, r.Met})
	}
	width := make([]int, len(head))
	for _, c := range cells {
		for i, s := range c {
			if n := len([]rune(s)); n > width[i] {
				width[i] = n
			}
		}
	}
	line := func(c []string) {
		var b strings.Builder
		for i, s := range c {
			b.WriteString(s)
			if i < len(c)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(s))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(cells[0])
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  [%s %s] %s\n", r.Item, r.Name, r.Note)
		}
	}
}

// markdownTable renders the rows for BENCHMARKS.md.
func markdownTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| # | row | measured | anchor | ratio | target | met |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Item, esc(r.Name), esc(r.Measured), esc(r.Anchor), ratioText(r), esc(r.Target), r.Met)
	}
	var notes []string
	for _, r := range rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("- %s %s: %s", r.Item, r.Name, r.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
