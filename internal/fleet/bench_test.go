package fleet_test

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/fleet/etcdtest"
	"github.com/virtap/virtap/internal/store"
)

// A documentation prefix large enough never to fill during a benchmark.
var (
	benchPool  = netip.MustParsePrefix("2001:db8:f1ee::/64")
	benchFirst = netip.MustParseAddr("2001:db8:f1ee::100")
	benchLast  = netip.MustParseAddr("2001:db8:f1ee::ffff")
)

func benchHolder(i int) store.Holder {
	return store.Holder{UUID: fmt.Sprintf("10000000-0000-4000-8000-%012d", i), MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)}
}

func quantile(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))].Nanoseconds())
}

// BenchmarkLeaseLatency takes b.N new leases through etcd (one local
// member, fsync as shipped) and b.N through the bbolt store (fsync as
// shipped), alternating lease by lease so both see the same machine, and
// reports each one's median and p90 in ns.
func BenchmarkLeaseLatency(b *testing.B) {
	srv := etcdtest.New(b)
	c, err := fleet.Open(fleet.Config{Endpoints: []string{srv.Client}, Host: "bench", Prefix: "/bench-latency/", Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// Warm up both (connection, first file growth).
	for i := range 20 {
		if _, err := c.Lease("warm", benchPool, benchFirst, benchLast, nil, benchHolder(i)); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Lease("warm", benchPool, benchFirst, benchLast, nil, benchHolder(i)); err != nil {
			b.Fatal(err)
		}
	}
	etcdT := make([]time.Duration, 0, b.N)
	boltT := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := c.Lease("lan", benchPool, benchFirst, benchLast, nil, benchHolder(i)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := st.Lease("lan", benchPool, benchFirst, benchLast, nil, benchHolder(i)); err != nil {
			b.Fatal(err)
		}
		etcdT = append(etcdT, t1.Sub(t0))
		boltT = append(boltT, time.Since(t1))
	}
	b.StopTimer()
	b.ReportMetric(quantile(etcdT, 0.5), "etcd-median-ns")
	b.ReportMetric(quantile(etcdT, 0.9), "etcd-p90-ns")
	b.ReportMetric(quantile(boltT, 0.5), "bbolt-median-ns")
	b.ReportMetric(quantile(boltT, 0.9), "bbolt-p90-ns")
}

// BenchmarkLease3Hosts: three hosts (own clients, own host names) lease
// from one pool at once, each one lease after another; reports leases per
// second over all three.
func BenchmarkLease3Hosts(b *testing.B) {
	srv := etcdtest.New(b)
	var hosts []*fleet.Client
	for h := range 3 {
		c, err := fleet.Open(fleet.Config{Endpoints: []string{srv.Client}, Host: fmt.Sprintf("host%d", h), Prefix: "/bench-3hosts/", Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		hosts = append(hosts, c)
	}
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for h, c := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := h; i < b.N; i += 3 {
				if _, err := c.Lease("lan", benchPool, benchFirst, benchLast, nil, benchHolder(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "leases/s")
}
