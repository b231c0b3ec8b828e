package nft

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/uuid"
)

// A container nested in the guest on ipvlan l2 sends with the guest's MAC
// and its own address. Each of its frames is written into the guest's
// /dev/tapN with an honest twin from the guest's own address: dropped
// before AddExtras, delivered after, dropped again after DelExtras; the
// twin always arrives.
func TestExtraAddressesAtRunTime(t *testing.T) {
	r := newRig(t)
	g := r.guest(t, "vtgx", 9)
	own := netip.AddrFrom4([4]byte(guestIP))
	nested4 := netip.MustParseAddr("192.0.2.50")
	nested6 := netip.MustParseAddr("2001:db8::50")
	ext, extMAC := r.s.ExtIP, r.s.ExtMAC
	r.apply(t, g, own, guest6)
	mc := netip.MustParseAddr("ff02::1")

	type pair struct {
		name, reason   string
		nested, honest func([]byte) []byte
	}
	pairs := []pair{
		{"ipv4 echo", ReasonIPv4Source,
			func(n []byte) []byte { return icmp4(g.dev.MAC, extMAC, nested4.AsSlice(), ext, n) },
			func(n []byte) []byte { return icmp4(g.dev.MAC, extMAC, guestIP, ext, n) }},
		{"arp", ReasonARPIP,
			func(n []byte) []byte { return arpFrame(g.dev.MAC, 1, g.dev.MAC, nested4.AsSlice(), ext, n) },
			func(n []byte) []byte { return arpFrame(g.dev.MAC, 1, g.dev.MAC, guestIP, ext, n) }},
		{"ipv6 echo", ReasonIPv6Source,
			func(n []byte) []byte { return ipv6(g.dev.MAC, allNodes, nested6, mc, 128, n) },
			func(n []byte) []byte { return ipv6(g.dev.MAC, allNodes, guest6, mc, 128, n) }},
		{"unsolicited na", ReasonNDTarget,
			func(n []byte) []byte { return ipv6(g.dev.MAC, allNodes, guest6, mc, 136, na(nested6, g.dev.MAC, n)) },
			func(n []byte) []byte { return ipv6(g.dev.MAC, allNodes, guest6, mc, 136, na(guest6, g.dev.MAC, n)) }},
	}
	check := func(stage string, allowed bool) {
		t.Helper()
		before := r.dropped(t, g)
		for _, p := range pairs {
			if got := r.send(t, g, allowed, p.nested); got != allowed {
				t.Errorf("%s: nested container's %s delivered=%v, want %v", stage, p.name, got, allowed)
			}
			if !r.send(t, g, true, p.honest) {
				t.Errorf("%s: the guest's own %s (honest twin) did not arrive", stage, p.name)
			}
		}
		after := r.dropped(t, g)
		for _, p := range pairs {
			want := before[p.reason] + 1
			if allowed {
				want = before[p.reason]
			}
			if after[p.reason] != want {
				t.Errorf("%s: counter %s = %d, want %d", stage, p.reason, after[p.reason], want)
			}
		}
	}
	check("before addr add", false)
	extras := []netip.Addr{nested4, nested6}
	if err := r.m.AddExtras(r.dom, g.dev.MAC, extras); err != nil {
		t.Fatal(err)
	}
	if err := r.m.AddExtras(r.dom, g.dev.MAC, extras); err != nil {
		t.Fatalf("adding again: %v", err)
	}
	got, err := r.m.Extras(r.dom, g.dev.MAC)
	if err != nil || len(got) != 2 || got[0] != nested4 || got[1] != nested6 {
		t.Fatalf("Extras = %v, %v; want [%s %s]", got, err, nested4, nested6)
	}
	check("after addr add", true)

	// The hook re-applies an unchanged spec with the stored extras: the
	// rules and their counters stay, the extras are still there.
	drops := r.dropped(t, g)[ReasonIPv4Source]
	if err := r.m.Apply(Spec{Domain: r.dom, MAC: g.dev.MAC, Device: g.dev.Name, Addresses: []netip.Addr{own, guest6}, Learn: LearnNone, Extras: extras}); err != nil {
		t.Fatal(err)
	}
	if d := r.dropped(t, g)[ReasonIPv4Source]; d != drops {
		t.Errorf("re-apply with the same extras reset the counters: %d, was %d", d, drops)
	}
	check("after re-apply", true)

	if err := r.m.DelExtras(r.dom, g.dev.MAC, extras); err != nil {
		t.Fatal(err)
	}
	if err := r.m.DelExtras(r.dom, g.dev.MAC, extras); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	check("after addr del", false)

	// Apply with extras (a restart with addresses in the store) puts them
	// back; Apply without takes them away.
	r.apply(t, g, own, guest6)
	if err := r.m.Apply(Spec{Domain: r.dom, MAC: g.dev.MAC, Device: g.dev.Name, Addresses: []netip.Addr{own, guest6}, Learn: LearnNone, Extras: extras}); err != nil {
		t.Fatal(err)
	}
	check("after apply with extras", true)
	r.apply(t, g, own, guest6)
	check("after apply without extras", false)
}

// A small prefix is as many single addresses.
func TestExtraPrefixAndChangedFilter(t *testing.T) {
	r := newRig(t)
	g := r.guest(t, "vtgp", 10)
	r.apply(t, g, netip.AddrFrom4([4]byte(guestIP)))
	var pfx []netip.Addr
	for a := netip.MustParseAddr("192.0.2.64"); a.Less(netip.MustParseAddr("192.0.2.68")); a = a.Next() {
		pfx = append(pfx, a)
	}
	if err := r.m.AddExtras(r.dom, g.dev.MAC, pfx); err != nil {
		t.Fatal(err)
	}
	// A new fixed address rebuilds the chains: the extras stay.
	r.applyExtras(t, g, pfx, netip.AddrFrom4([4]byte(guestIP)), netip.MustParseAddr("192.0.2.11"))
	for _, a := range pfx {
		if !r.send(t, g, true, func(n []byte) []byte { return icmp4(g.dev.MAC, r.s.ExtMAC, a.AsSlice(), r.s.ExtIP, n) }) {
			t.Errorf("%s of the prefix was dropped", a)
		}
	}
	if r.send(t, g, false, func(n []byte) []byte { return icmp4(g.dev.MAC, r.s.ExtMAC, net.IP{192, 0, 2, 68}, r.s.ExtIP, n) }) {
		t.Error("192.0.2.68, just past the prefix, passed")
	}
	if err := r.m.RemoveInterface(r.dom, g.dev.MAC); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Extras(r.dom, g.dev.MAC); !errors.Is(err, ErrNoFilter) {
		t.Errorf("after RemoveInterface the sets remain: %v", err)
	}
}

func (r *rig) applyExtras(t *testing.T, g *guestDev, extras []netip.Addr, addrs ...netip.Addr) {
	t.Helper()
	if err := r.m.Apply(Spec{Domain: r.dom, MAC: g.dev.MAC, Device: g.dev.Name, Addresses: addrs, Learn: LearnNone, Extras: extras}); err != nil {
		t.Fatal(err)
	}
}

func TestExtrasWithoutFilter(t *testing.T) {
	r := newRig(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x88, 0x00, 0x77}
	err := r.m.AddExtras(uuid.New(), mac, []netip.Addr{netip.MustParseAddr("192.0.2.50")})
	if !errors.Is(err, ErrNoFilter) {
		t.Errorf("AddExtras without a filter: %v, want ErrNoFilter", err)
	}
	if err := r.m.AddExtras(r.dom, mac, []netip.Addr{netip.MustParseAddr("224.0.0.1")}); err == nil {
		t.Error("a multicast extra address was accepted")
	}
}
