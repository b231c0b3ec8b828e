// Package udiff renders a unified diff of two texts, line by line.
//
// The edit script comes from github.com/sergi/go-diff (diff-match-patch):
// Myers' O(ND) algorithm with the middle-snake bisection, so memory grows
// with the length of the texts, not with their product.
package udiff

import (
	"fmt"
	"strings"
	"time"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// Timeout bounds the search for a minimal edit script; past it the script
// is still correct, only possibly longer than the shortest one.
const Timeout = 5 * time.Second

// Diff returns a unified diff of a and b with context lines around each
// change, or "" when they are equal.
func Diff(nameA, nameB, a, b string, context int) string {
	if a == b {
		return ""
	}
	ops := lineOps(a, b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-context, 0)
		end := hunkEnd(ops, i, context)
		ai, bi, an, bn := ops[start].a, ops[start].b, 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				an++
			}
			if o.kind != '-' {
				bn++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", ai+1, an, bi+1, bn)
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		i = end
	}
	return out.String()
}

// hunkEnd returns the end of the hunk whose first change is ops[i]: changes
// closer than 2*context lines join one hunk.
func hunkEnd(ops []op, i, context int) int {
	end := i
	for end < len(ops) {
		if ops[end].kind != ' ' {
			end++
			continue
		}
		run := end
		for run < len(ops) && ops[run].kind == ' ' {
			run++
		}
		if run == len(ops) || run-end > 2*context {
			return end + min(context, run-end)
		}
		end = run
	}
	return end
}

type op struct {
	kind byte
	text string
	a, b int // line index in a and b where this op stands
}

// lineOps is the line-by-line edit script from a to b.
func lineOps(a, b string) []op {
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = Timeout
	ra, rb, lines := dmp.DiffLinesToRunes(terminate(a), terminate(b))
	diffs := dmp.DiffCharsToLines(dmp.DiffMainRunes(ra, rb, false), lines)
	var ops []op
	ai, bi := 0, 0
	for _, d := range diffs {
		for _, l := range strings.SplitAfter(d.Text, "\n") {
			if l == "" {
				continue
			}
			l = strings.TrimSuffix(l, "\n")
			switch d.Type {
			case diffmatchpatch.DiffEqual:
				ops = append(ops, op{' ', l, ai, bi})
				ai++
				bi++
			case diffmatchpatch.DiffDelete:
				ops = append(ops, op{'-', l, ai, bi})
				ai++
			case diffmatchpatch.DiffInsert:
				ops = append(ops, op{'+', l, ai, bi})
				bi++
			}
		}
	}
	return ops
}

// terminate ends a non-empty text with a newline, so that its last line
// compares equal to the same line followed by more.
func terminate(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}
