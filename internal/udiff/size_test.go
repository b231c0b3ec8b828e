package udiff

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// bigDomain is a domain document of n lines; every 100th line of the
// provisioned twin differs, as when many interfaces are rewritten.
func bigDomain(n int) (string, string) {
	var a, b strings.Builder
	for i := range n {
		fmt.Fprintf(&a, "    <disk type='file'><source file='/var/lib/img/%d.qcow2'/></disk>\n", i)
		if i%100 == 50 {
			fmt.Fprintf(&b, "    <interface type='direct'><source dev='eth0' mode='bridge'/><!-- %d --></interface>\n", i)
		} else {
			fmt.Fprintf(&b, "    <disk type='file'><source file='/var/lib/img/%d.qcow2'/></disk>\n", i)
		}
	}
	return a.String(), b.String()
}

// A 12,000-line domain diffs within a bounded amount of memory: the
// quadratic LCS this package used to run took 607 MB for it.
func TestDiffMemoryBounded(t *testing.T) {
	a, b := bigDomain(12000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := Diff("a", "b", a, b, 3)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("12,000 lines, 120 changes: %d hunks, %.1f MB allocated", strings.Count(d, "@@ -"), float64(alloc)/1e6)
	if got := strings.Count(d, "\n-    <disk"); got != 120 {
		t.Fatalf("%d lines removed, want 120", got)
	}
	if alloc > 64<<20 {
		t.Fatalf("diff of 12,000 lines allocated %d MB; want under 64 MB", alloc>>20)
	}
}

func BenchmarkDiff12000Lines(b *testing.B) {
	x, y := bigDomain(12000)
	b.ReportAllocs()
	for b.Loop() {
		Diff("a", "b", x, y, 3)
	}
}
