// Package udiff renders a unified diff of two texts, line by line.
package udiff

import (
	"fmt"
	"strings"
)

// Diff returns a unified diff of a and b with context lines around each
// change, or "" when they are equal.
func Diff(nameA, nameB, a, b string, context int) string {
	if a == b {
		return ""
	}
	x, y := split(a), split(b)
	ops := lcsOps(x, y)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	// Group ops into hunks.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := i - context
		if start < 0 {
			start = 0
		}
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
				end += min(context, run-end)
				break
			}
			end = run
		}
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

type op struct {
	kind byte
	text string
	a, b int // line index in a and b where this op stands
}

func split(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func lcsOps(x, y []string) []op {
	// Trim the common head and tail, then LCS on the middle.
	h := 0
	for h < len(x) && h < len(y) && x[h] == y[h] {
		h++
	}
	t := 0
	for t < len(x)-h && t < len(y)-h && x[len(x)-1-t] == y[len(y)-1-t] {
		t++
	}
	mx, my := x[h:len(x)-t], y[h:len(y)-t]
	n, m := len(mx), len(my)
	dp := make([][]int32, n+1)
	for i := range dp {
		dp[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if mx[i] == my[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	var ops []op
	for i := 0; i < h; i++ {
		ops = append(ops, op{' ', x[i], i, i})
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && mx[i] == my[j]:
			ops = append(ops, op{' ', mx[i], h + i, h + j})
			i++
			j++
		case i < n && (j == m || dp[i+1][j] >= dp[i][j+1]):
			ops = append(ops, op{'-', mx[i], h + i, h + j})
			i++
		default:
			ops = append(ops, op{'+', my[j], h + i, h + j})
			j++
		}
	}
	for k := 0; k < t; k++ {
		ops = append(ops, op{' ', x[len(x)-t+k], len(x) - t + k, len(y) - t + k})
	}
	return ops
}
