package nft_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
	"github.com/virtap/virtap/internal/nstest"
)

// Every forgery of issue 15, written into an untrusted macvtap guest's
// /dev/tapN: without the filter it reaches the external host (so the
// frame is deliverable and the capture can tell); with the filter it does
// not and its reason's counter rises by one, while its honest twin does.
// test/vm/inside runs the same cases on ipvtap.
func TestForgeriesOnMacvtap(t *testing.T) {
	host := nstest.New(t)
	s := nstest.NewSwitched(t, host, false)
	cap := spooftest.NewCapture(t, s.External, s.ExtLink)
	nd := netdev.New(hclog.NewNullLogger(), host.NL)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x88, 0x01, 0x01}
	dom := uuid.New()
	d, err := nd.Create(netdev.Spec{Name: "vtfg", Kind: netdev.KindMacvtap, Parent: s.Uplink, Mode: "bridge", MAC: mac,
		Tag: netdev.GuestTag(dom, mac), Up: true, Index: nstest.FreshIndex()})
	if err != nil {
		t.Fatal(err)
	}
	tap, err := netdev.OpenTap(d, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	g := spooftest.Guest{MAC: mac, IP4: net.ParseIP("192.0.2.10").To4(), IP6: netip.MustParseAddr("2001:db8::10"),
		PeerMAC: s.ExtMAC, PeerIP: s.ExtIP}
	m := nft.NewAt(hclog.NewNullLogger(), host.Handle)
	t.Cleanup(func() { _ = m.Remove(dom) })
	spec := nft.Spec{Domain: dom, MAC: mac, Device: d.Name, Learn: nft.LearnNone,
		Addresses: []netip.Addr{netip.AddrFrom4([4]byte(g.IP4)), g.IP6}}
	spooftest.RunForgeries(t, m, spec, tap, cap, g)
}
