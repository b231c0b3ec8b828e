//go:build virtapvm

package inside

import (
	"bytes"
	"net"
	"testing"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
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
