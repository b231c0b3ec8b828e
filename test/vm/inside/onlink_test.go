//go:build virtapvm

package inside

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
)

func onLinkPolicy(onLink, flag string) string {
	return `[networks.edge]
kind = "ipvtap"
parent = "up0"
mode = "l3"
flag = "` + flag + `"
addresses = "198.51.100.0/24"
range = "198.51.100.20-198.51.100.29"
on_link = ` + onLink + `
`
}

// TestOnLink: an l3 guest is not reachable on-link from the LAN (ipvlan
// hands the ARP request to the guest and drops its reply); with on_link
// the host's responder answers for it, the external host resolves the
// guest's address to the parent's MAC and the guest gets its reply; the
// responder and its filters go with the last guest.
func TestOnLink(t *testing.T) {
	for _, c := range []struct {
		on   bool
		flag string
	}{{false, "bridge"}, {true, "bridge"}, {true, "private"}, {true, "vepa"}} {
		on := c.on
		name := map[bool]string{false: "off", true: "on"}[on] + "-" + c.flag
		t.Run(name, func(t *testing.T) {
			hn := nstest.New(t)
			s := nstest.NewSwitched(t, hn, false)
			hn.AddAddr(t, "up0", "192.0.2.1/24") // the host's route to the external host
			extVia(t, s, false)                  // the external host sees the guests' subnet on-link
			r, _ := realiser(t, hn)
			g, ir, _ := prepared(t, r, onLinkPolicy(map[bool]string{false: "false", true: "true"}[on], c.flag), "ol", uuid.New(), "")
			d, _, _ := r.Net.Find(ir.Device)
			as, _ := host.GuestAddresses(hn.NL, ir.Device)
			p := play(t, d, d.MAC, net.IP(as[0].AsSlice()))
			got := p.pingFrom(s.ExtMAC, s.ExtIP, on)
			t.Logf("MEASURED l3 %s guest %s -> external host on-link, on_link=%v: reply %v", c.flag, p.ip, on, got != nil)
			if (got != nil) != on {
				t.Fatalf("on_link=%v: reply from the on-link external host: %v", on, got != nil)
			}
			if on {
				ext := s.External.Link(t, s.ExtLink)
				ns, _ := s.External.NL.NeighList(ext.Attrs().Index, netlink.FAMILY_V4)
				upMAC := hn.MAC(t, "up0")
				found := false
				for _, n := range ns {
					found = found || n.IP.Equal(p.ip) && bytes.Equal(n.HardwareAddr, upMAC)
				}
				if !found {
					t.Errorf("the external host did not resolve %s to the parent's MAC %s: %v", p.ip, upMAC, ns)
				}
			}
			if err := r.Release(g); err != nil {
				t.Fatal(err)
			}
			a, b := host.OnLinkNames("up0")
			for _, n := range []string{a, b} {
				if _, ok, _ := r.Net.Find(n); ok {
					t.Errorf("responder %s survived the last guest", n)
				}
			}
			fs, err := hn.NL.FilterList(hn.Link(t, "up0"), netlink.MakeHandle(0xffff, 0))
			if err == nil && len(fs) != 0 {
				t.Errorf("filters left on up0: %v", fs)
			}
		})
	}
}

// TestOnLink6: the same for an IPv6 guest: the on-link external host's
// neighbour solicitation for the guest's address is answered with the
// parent's MAC, and the guest gets its echo reply.
func TestOnLink6(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[on], func(t *testing.T) { onLink6(t, on) })
	}
}

func onLink6(t *testing.T, on bool) {
	hn := nstest.New(t)
	s := nstest.NewSwitched(t, hn, false)
	ext := s.External.Link(t, s.ExtLink)
	extIP6 := netip.MustParseAddr("2001:db8:21::2")
	if err := s.External.NL.AddrAdd(ext, &netlink.Addr{IPNet: &net.IPNet{IP: extIP6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}); err != nil {
		t.Fatal(err)
	}
	up := hn.Link(t, "up0")
	if err := hn.NL.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: &net.IPNet{IP: extIP6.AsSlice(), Mask: net.CIDRMask(128, 128)}}); err != nil {
		t.Fatal(err)
	}
	r, _ := realiser(t, hn)
	pol := `[networks.edge]
kind = "ipvtap"
parent = "up0"
mode = "l3"
addresses = "2001:db8:21::/64"
range = "2001:db8:21::20-2001:db8:21::29"
on_link = ` + map[bool]string{false: "false", true: "true"}[on] + `
`
	g, ir, _ := prepared(t, r, pol, "ol6", uuid.New(), "")
	d, _, _ := r.Net.Find(ir.Device)
	as, _ := host.GuestAddresses(hn.NL, ir.Device)
	if len(as) != 1 || !as[0].Is6() {
		t.Fatalf("addresses on %s: %v", ir.Device, as)
	}
	p := play(t, d, d.MAC, net.IPv4zero)
	got := false
	tries := 3
	if !on {
		tries = 1
	}
	for i := 0; i < tries && !got; i++ {
		body := []byte{0x21, 0x06, 0, byte(i + 1), 'v', '6'}
		if err := p.tap.Write(netdev.ICMPv6(d.MAC, s.ExtMAC, as[0], extIP6, 128, 0, body)); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(2 * hitWait)
	wait:
		for {
			select {
			case f := <-p.frames:
				b := f.Payload
				if f.EtherType == netdev.EtherTypeIPv6 && len(b) >= 44 && b[6] == netdev.ProtoICMPv6 && b[40] == 129 && bytes.Equal(b[8:24], extIP6.AsSlice()) {
					got = true
					break wait
				}
			case <-deadline:
				break wait
			}
		}
	}
	t.Logf("MEASURED l3 IPv6 guest %s -> external host on-link, on_link=%v: reply %v", as[0], on, got)
	if got != on {
		ns, _ := s.External.NL.NeighList(ext.Attrs().Index, netlink.FAMILY_V6)
		t.Fatalf("on_link=%v: echo reply from the on-link external host: %v (its neighbours: %v)", on, got, ns)
	}
	if on {
		// A nested address added at run time: Reach answers for it too.
		extra := netip.MustParseAddr("2001:db8:21::99")
		if err := host.AddGuestAddresses(hn.NL, ir.Device, []netip.Addr{extra}); err != nil {
			t.Fatal(err)
		}
		if err := r.Reach(g); err != nil {
			t.Fatal(err)
		}
		fs, _ := hn.NL.FilterList(up, netlink.MakeHandle(0xffff, 0))
		n := 0
		for _, f := range fs {
			if f.Attrs().Priority == 0xe22 {
				n++
			}
		}
		if n != 2 {
			t.Errorf("after Reach with an extra address: %d neighbour-discovery filters on up0, want 2", n)
		}
	}
	if err := r.Release(g); err != nil {
		t.Fatal(err)
	}
	if fs, _ := hn.NL.FilterList(up, netlink.MakeHandle(0xffff, 0)); len(fs) != 0 {
		t.Errorf("filters left on up0: %v", fs)
	}
}
