package store

import (
	"os"
	"sync"
	"testing"
	"time"
)

// The pair of stores the scale benchmarks compare, populated once per test
// process (populating 100,000 records takes seconds; go test calls a
// benchmark function more than once).
var (
	scaleOnce  sync.Once
	scaleSmall *Store
	scaleBig   *Store
	scaleDir   string
	scaleErr   error
)

func scaleStores(b *testing.B) (*Store, *Store) {
	scaleOnce.Do(func() {
		scaleDir, scaleErr = os.MkdirTemp("", "virtap-store-scale-")
		if scaleErr != nil {
			return
		}
		if scaleSmall, scaleErr = Open(scaleDir+"/small", Options{}); scaleErr != nil {
			return
		}
		if scaleBig, scaleErr = Open(scaleDir+"/big", Options{}); scaleErr != nil {
			return
		}
		// Both stay open for the life of the test process; removing the
		// directory now leaves nothing behind when it exits (bbolt keeps
		// its file descriptors and mapping, never reopens by path).
		if scaleErr = os.RemoveAll(scaleDir); scaleErr != nil {
			return
		}
		populate(b, scaleSmall, 100)
		populate(b, scaleBig, 100_000)
		for i := 0; i < 200; i++ {
			reserveRelease(b, scaleSmall, i)
			reserveRelease(b, scaleBig, i)
		}
	})
	if scaleErr != nil {
		b.Fatal(scaleErr)
	}
	return scaleSmall, scaleBig
}

// benchScale alternates reserve+release between a store holding 100
// records and one holding 100,000, operation by operation, so both see
// the same disk and CPU contention, the same warm page cache and the same
// number of transactions. It reports each side's time per operation and
// their ratio (the budget is 1.3).
func benchScale(b *testing.B, noSync bool) {
	small, big := scaleStores(b)
	small.db.NoSync, big.db.NoSync = noSync, noSync
	defer func() { small.db.NoSync, big.db.NoSync = false, false }()
	var ts, tb time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		reserveRelease(b, small, i)
		t1 := time.Now()
		reserveRelease(b, big, i)
		ts += t1.Sub(t0)
		tb += time.Since(t1)
	}
	b.ReportMetric(float64(ts.Nanoseconds())/float64(b.N), "ns/op-100")
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "ns/op-100k")
	b.ReportMetric(float64(tb)/float64(ts), "ratio")
}

func BenchmarkReserveReleaseScale(b *testing.B)       { benchScale(b, false) }
func BenchmarkReserveReleaseScaleNoSync(b *testing.B) { benchScale(b, true) }
