// Package suggest finds the name a user probably meant: "did you mean".
package suggest

import "sort"

// Distance is the optimal string alignment distance of a and b (Damerau's
// variant of Levenshtein's: insertions, deletions, substitutions and
// transpositions of two adjacent characters each cost 1), in bytes.
func Distance(a, b string) int {
	// Three rows of the dynamic-programming table are enough.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Closest returns the candidate nearest to word, if one is near enough to
// be a typo: at most 2 edits, and fewer edits than half of word's length
// (so "ab" suggests nothing for "xy"). A word that is a candidate
// suggests nothing. Ties go to the first in sorted order.
func Closest(word string, candidates []string) (string, bool) {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	if i := sort.SearchStrings(sorted, word); i < len(sorted) && sorted[i] == word {
		return "", false // a known name is no typo
	}
	best, bestD := "", 3
	for _, c := range sorted {
		if d := Distance(word, c); d < bestD && 2*d < max(len(word), len(c)) {
			best, bestD = c, d
		}
	}
	return best, best != ""
}

// DidYouMean is " did you mean 'X'?" for the closest candidate, or "".
func DidYouMean(word string, candidates []string) string {
	if c, ok := Closest(word, candidates); ok {
		return " did you mean '" + c + "'?"
	}
	return ""
}
