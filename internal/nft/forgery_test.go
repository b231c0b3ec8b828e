package nft_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
)

// Every forgery of issue 15, written into an untrusted macvtap guest's
// /dev/tapN: without the filter it reaches the external host (so the
// frame is deliverable and the capture can tell); with the filter it does
// not and its reason's counter rises by one, while its honest twin does.
// test/vm/inside runs the same cases on ipvtap.
func TestForgeriesOnMacvtap(t *testing.T) {
	r := spooftest.NewRig(t, "vtfg", net.HardwareAddr{0x52, 0x54, 0x00, 0x88, 0x01, 0x01})
	s, cap, tap, d, dom, mac, m := r.Switch, r.Cap, r.Tap, r.Dev, r.Domain, r.MAC, r.Filter
	g := spooftest.Guest{MAC: mac, IP4: net.ParseIP("192.0.2.10").To4(), IP6: netip.MustParseAddr("2001:db8::10"),
		PeerMAC: s.ExtMAC, PeerIP: s.ExtIP}
	spec := nft.Spec{Domain: dom, MAC: mac, Device: d.Name, Learn: nft.LearnNone,
		Addresses: []netip.Addr{netip.AddrFrom4([4]byte(g.IP4)), g.IP6}}
	spooftest.RunForgeries(t, m, spec, tap, cap, g)
}
