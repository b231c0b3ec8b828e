package host

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// This machine's kernel has no ipvlan: the ipvtap paths run in the test
// host VM (go test ./test/vm). Here: the address configuration on any link
// and the leases.

func TestAddGuestAddressesNoLocalRoute(t *testing.T) {
	ns := nstest.New(t)
	ns.Veth(t, "gst0", "gst1", nil)
	addrs := []netip.Addr{netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("2001:db8::11")}
	for i := 0; i < 2; i++ { // idempotent
		if err := AddGuestAddresses(ns.NL, "gst0", addrs); err != nil {
			t.Fatal(err)
		}
	}
	got, err := GuestAddresses(ns.NL, "gst0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("addresses on gst0 = %v, want %v", got, addrs)
	}
	link := ns.Link(t, "gst0")
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := ns.NL.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			for _, a := range addrs {
				if ip.Unmap() == a {
					t.Errorf("local table still holds %s (dev index %d): the host would take the guest's address", r.Dst, r.LinkIndex)
				}
			}
		}
	}
	// No prefix route either, and the host never picks the address as source.
	rs, err := ns.NL.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && (r.Dst.Contains(net.ParseIP("198.51.100.11")) || r.Dst.Contains(net.ParseIP("2001:db8::11"))) {
			t.Errorf("route for a guest address on gst0: %s", r)
		}
	}
	as, _ := ns.NL.AddrList(link, netlink.FAMILY_V4)
	for _, a := range as {
		if a.Scope != int(netlink.SCOPE_HOST) {
			t.Errorf("address %s has scope %d, want host", a.IPNet, a.Scope)
		}
	}
	if err := AddGuestAddresses(ns.NL, "nosuch0", addrs); err == nil {
		t.Error("AddGuestAddresses on a missing device: no error")
	}
}

func TestLeaseAddressStableInRange(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := ParsePool("198.51.100.0/24", "198.51.100.1-198.51.100.3", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	h1 := store.Holder{UUID: "0d9f5a52-8c1e-4f3b-9a61-3b2c1d0e9f11", MAC: "52:54:00:00:00:01"}
	h2 := store.Holder{UUID: "1d9f5a52-8c1e-4f3b-9a61-3b2c1d0e9f11", MAC: "52:54:00:00:00:01"}
	h3 := store.Holder{UUID: "2d9f5a52-8c1e-4f3b-9a61-3b2c1d0e9f11", MAC: "52:54:00:00:00:01"}
	a1, err := LeaseAddress(st, "edge", p, h1)
	if err != nil || a1 != netip.MustParseAddr("198.51.100.2") {
		t.Fatalf("first lease %s, %v; want 198.51.100.2 (the gateway .1 is never leased)", a1, err)
	}
	if again, _ := LeaseAddress(st, "edge", p, h1); again != a1 {
		t.Errorf("same holder got %s, then %s", a1, again)
	}
	a2, err := LeaseAddress(st, "edge", p, h2)
	if err != nil || a2 != netip.MustParseAddr("198.51.100.3") {
		t.Fatalf("second lease %s, %v", a2, err)
	}
	if _, err := LeaseAddress(st, "edge", p, h3); err == nil {
		t.Error("a third guest got an address from a range of two (gateway excluded)")
	}
	r := New(nil, nil, st, paths.Roots{})
	u := uuid.MustParse(h1.UUID)
	if fl, err := r.FreeLeases(u); err != nil || len(fl) != 1 || fl[0].Addr != a1 {
		t.Errorf("FreeLeases = %v, %v", fl, err)
	}
	if a3, err := LeaseAddress(st, "edge", p, h3); err != nil || a3 != a1 {
		t.Errorf("after freeing, the third guest got %s, %v; want %s", a3, err, a1)
	}
}

func TestParsePool(t *testing.T) {
	for _, bad := range [][3]string{{"nope", "", ""}, {"192.0.2.0/24", "192.0.2.5", ""}, {"192.0.2.0/24", "x-192.0.2.9", ""}, {"192.0.2.0/24", "", "gw"}} {
		if _, err := ParsePool(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("ParsePool%q: no error", bad)
		}
	}
	p, err := ParsePool("192.0.2.0/24", "", "")
	if err != nil || p.First.IsValid() || p.Gateway.IsValid() {
		t.Errorf("ParsePool without range and gateway = %+v, %v", p, err)
	}
}
