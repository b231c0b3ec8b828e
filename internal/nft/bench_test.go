package nft_test

import (
	"net"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
)

// BenchmarkFilterFrameRate: frames per second a guest can write through
// an untrusted macvtap (filter with DHCP snooping and fixed addresses, the
// frame an honest IPv4 one that walks the whole accept path) against a
// trusted one on the same uplink. A tap write runs the egress hook in the
// writer's context, so the write rate carries the filter's cost. The two
// alternate in pairs of batches of 250 frames; each batch is timed by the
// CPU time of the writing thread, so that other work on a shared machine
// does not count. fps-* are frames per CPU second of the writer; ratio is
// the median over pairs of untrusted time / trusted time (make bench row
// 6, target <= 1.10).
func BenchmarkFilterFrameRate(b *testing.B) {
	host := nstest.New(b)
	s := nstest.NewSwitched(b, host, false)
	nd := netdev.New(hclog.NewNullLogger(), host.NL)
	dom := uuid.New()
	m := nft.NewAt(hclog.NewNullLogger(), host.Handle)
	b.Cleanup(func() { _ = m.Remove(dom) })
	mk := func(name string, n byte) (*netdev.Tap, net.HardwareAddr, string) {
		mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x88, 0x03, n}
		d, err := nd.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvtap, Parent: s.Uplink, Mode: "bridge", MAC: mac,
			Tag: netdev.GuestTag(dom, mac), Up: true, Index: nstest.FreshIndex()})
		if err != nil {
			b.Fatal(err)
		}
		tap, err := netdev.OpenTap(d, false)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tap.Close() })
		return tap, mac, d.Name
	}
	trusted, tmac, _ := mk("vtbt", 1)
	untrusted, umac, udev := mk("vtbu", 2)
	ip := net.ParseIP("192.0.2.10").To4()
	if err := m.Apply(nft.Spec{Domain: dom, MAC: umac, Device: udev, Learn: nft.LearnDHCP,
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.9"), netip.AddrFrom4([4]byte(ip)), netip.MustParseAddr("2001:db8::10")}}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	tf := netdev.UDP4(tmac, s.ExtMAC, ip, s.ExtIP, 40000, 9, payload)
	uf := netdev.UDP4(umac, s.ExtMAC, ip, s.ExtIP, 40000, 9, payload)
	const batch = 250
	// run writes a batch and returns the CPU time the writing thread spent
	// (nstest.New locked this goroutine to it): time the machine gave to
	// other processes meanwhile is not counted.
	run := func(tap *netdev.Tap, f []byte) time.Duration {
		var t0, t1 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0)
		for i := 0; i < batch; i++ {
			if err := tap.Write(f); err != nil {
				b.Fatal(err)
			}
		}
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1)
		return time.Duration(t1.Nano() - t0.Nano())
	}
	run(trusted, tf) // warm up
	run(untrusted, uf)
	// Pairs of batches, back to back in alternating order; the ratio is
	// the median of the pairs' ratios, so that a burst of load from
	// elsewhere on the machine skews one pair, not the figure.
	const pairs = 8
	var tt, ut time.Duration
	var ratios []float64
	b.ResetTimer()
	for i := 0; i < b.N*pairs; i++ {
		var t, u time.Duration
		if i%2 == 0 {
			t = run(trusted, tf)
			u = run(untrusted, uf)
		} else {
			u = run(untrusted, uf)
			t = run(trusted, tf)
		}
		tt, ut = tt+t, ut+u
		ratios = append(ratios, float64(u)/float64(t))
	}
	b.StopTimer()
	cs, err := m.Counters(dom)
	if err != nil {
		b.Fatal(err)
	}
	if d := nft.Dropped(cs, umac); len(d) > 0 {
		for r, n := range d {
			if n > 0 {
				b.Fatalf("the honest frames were dropped (%s=%d): the benchmark measures nothing", r, n)
			}
		}
	}
	frames := float64(b.N * pairs * batch)
	b.ReportMetric(frames/tt.Seconds(), "fps-trusted")
	b.ReportMetric(frames/ut.Seconds(), "fps-untrusted")
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}
