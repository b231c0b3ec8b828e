//go:build virtapvm

package inside

import (
	"net"
	"net/netip"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
)

// TestNestedAddressOnIpvtap is issue 16 on ipvtap: a container nested in
// guest A (ipvlan l2 inside the guest: A's MAC, its own address) pings the
// external host. Untrusted: the filter drops it until host.ChangeExtras
// (what `virtap addr add` does) adds the address, and the reply is
// delivered to A's tap because the address is then registered on A's
// ipvtap device; after the delete both stop. Trusted (no filter): the
// request leaves, but the reply reaches the guest only while the address
// is registered. A's own address works throughout (the honest twin).
func TestNestedAddressOnIpvtap(t *testing.T) {
	tp := build(t, "l2", "bridge", false, true)
	nestedIP := net.IPv4(198, 51, 100, 21).To4()
	nested := &guest{dev: tp.a.dev, tap: tp.a.tap, ip: nestedIP, frames: tp.a.frames, arpOn: true}
	addr := netip.AddrFrom4([4]byte(nestedIP))
	ownAddr := netip.AddrFrom4([4]byte(guestA))
	log := hclog.NewNullLogger()
	h := tp.s.Host.NL
	ir := domain.IfaceRecord{MAC: tp.a.dev.MAC.String(), Network: "edge", Kind: "ipvtap", Trust: "untrusted", Device: tp.a.dev.Name}
	fm := nft.New(log)
	if err := fm.Apply(nft.Spec{Domain: testDomain, MAC: tp.a.dev.MAC, Device: tp.a.dev.Name, Addresses: []netip.Addr{ownAddr}, Learn: nft.LearnNone}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fm.Remove(testDomain) })
	registered := func() bool {
		as, err := host.GuestAddresses(h, tp.a.dev.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a == addr {
				return true
			}
		}
		return false
	}
	check := func(stage string, want bool) {
		t.Helper()
		if got := echo(t, nested, tp.extMAC, extIP, nil, want); got != want {
			t.Errorf("%s: the nested container's echo reply reached the guest: %v, want %v", stage, got, want)
		}
		if !echo(t, tp.a, tp.extMAC, extIP, nil, true) {
			t.Errorf("%s: the guest's own echo (honest twin) got no reply", stage)
		}
		if registered() != want {
			t.Errorf("%s: %s registered on %s: %v, want %v", stage, addr, tp.a.dev.Name, !want, want)
		}
	}
	change := func(ir domain.IfaceRecord, add bool) {
		t.Helper()
		if err := host.ChangeExtras(log, h, testDomain, ir, tp.a.dev.Name, []netip.Addr{addr}, add); err != nil {
			t.Fatal(err)
		}
	}
	check("untrusted, before add", false)
	drops := nft.Dropped(counters(t, fm), tp.a.dev.MAC)[nft.ReasonIPv4Source]
	if drops == 0 {
		t.Error("the filter counted no ip4-source drop for the nested address")
	}
	change(ir, true)
	check("untrusted, after add", true)
	change(ir, false)
	check("untrusted, after del", false)

	if err := fm.Remove(testDomain); err != nil {
		t.Fatal(err)
	}
	ir.Trust = "trusted"
	check("trusted, not registered", false)
	change(ir, true)
	check("trusted, after add", true)
	change(ir, false)
	check("trusted, after del", false)
}

func counters(t *testing.T, fm *nft.Manager) []nft.Counter {
	t.Helper()
	cs, err := fm.Counters(testDomain)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
