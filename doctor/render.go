package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ANSI colours of the statuses in a terminal.
var statusColour = map[Status]string{
	OK:   "\x1b[32m", // green
	Warn: "\x1b[33m", // yellow
	Fail: "\x1b[1;31m",
	Skip: "\x1b[2m", // dim
}

const colourReset = "\x1b[0m"

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: a table NETWORK CHECK STATUS
// DETAIL (the device a check is about leads its detail), each advice on
// the line below its row, and a summary line. colour adds ANSI colours to
// the status column (for a terminal only).
func (r *Report) WriteTable(w io.Writer, colour bool) error {
	rows := make([][3]string, len(r.Results))
	wNet, wCheck := len("NETWORK"), len("CHECK")
	for i, res := range r.Results {
		nw := res.Network
		if nw == "" {
			nw = "-"
		}
		rows[i] = [3]string{nw, res.Check, oneLine(res.Detail)}
		wNet = max(wNet, utf8.RuneCountInString(nw))
		wCheck = max(wCheck, len(res.Check))
	}
	const wStatus = 6
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %s\n", wNet, "NETWORK", wCheck, "CHECK", wStatus, "STATUS", "DETAIL")
	indent := strings.Repeat(" ", wNet+wCheck+wStatus+6)
	for i, res := range r.Results {
		st := fmt.Sprintf("%-*s", wStatus, string(res.Status))
		if colour {
			st = statusColour[res.Status] + st + colourReset
		}
		fmt.Fprintf(&b, "%-*s  %-*s  %s  %s\n", wNet, rows[i][0], wCheck, rows[i][1], st, rows[i][2])
		if res.Advice != "" && res.Status != OK {
			fmt.Fprintf(&b, "%s-> %s\n", indent, oneLine(res.Advice))
		}
	}
	verdict := "no failures"
	if r.Failed {
		verdict = "FAILED"
		if colour {
			verdict = statusColour[Fail] + verdict + colourReset
		}
	}
	fmt.Fprintf(&b, "\n%s: %d ok, %d warn, %d fail, %d skipped (host %s)\n", verdict, r.Summary.OK, r.Summary.Warn, r.Summary.Fail, r.Summary.Skip, r.Host)
	_, err := io.WriteString(w, b.String())
	return err
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
