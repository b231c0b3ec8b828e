//go:build virtapvm

package inside

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
	"github.com/virtap/virtap/internal/nstest"
)

// TestForgeriesOnIpvtap runs the shared forgery list (issue 15; the
// macvtap run is internal/nft's TestForgeriesOnMacvtap) against an
// untrusted ipvtap guest: every forged frame written into its /dev/tapN
// reaches the external host without the filter (so the capture can tell),
// and with the filter it does not and its reason's counter rises by one,
// while its honest twin arrives. ipvtap guests carry their parent's MAC;
// l2 mode sends every frame, unicast or not, out of the parent as it is.
func TestForgeriesOnIpvtap(t *testing.T) {
	hn := nstest.New(t)
	s := nstest.NewSwitched(t, hn, false)
	cap := spooftest.NewCapture(t, s.External, s.ExtLink)
	mac := hn.Link(t, s.Uplink).Attrs().HardwareAddr
	dom := uuid.New()
	nd := netdev.New(nil, hn.NL)
	d, err := nd.Create(netdev.Spec{Name: "vtif", Kind: netdev.KindIPvtap, Parent: s.Uplink, Mode: "l2", Flag: "bridge",
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
	m := nft.NewAt(nil, hn.Handle)
	t.Cleanup(func() { _ = m.Remove(dom) })
	spec := nft.Spec{Domain: dom, MAC: mac, Device: d.Name, Learn: nft.LearnNone,
		Addresses: []netip.Addr{netip.AddrFrom4([4]byte(g.IP4)), g.IP6}}
	spooftest.RunForgeries(t, m, spec, tap, cap, g)
}
