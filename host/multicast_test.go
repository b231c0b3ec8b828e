package host

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/netdev"
)

// TestMacvtapNDPMulticast measures, frame by frame, whether a neighbour
// solicitation for an untrusted guest's IPv6 address (to its
// solicited-node group) reaches the guest's /dev/tapN through libvirt's
// macvtap, with the broadcast twin that always arrives; then the start
// hook's fix (ALLMULTI) lets it through.
func TestMacvtapNDPMulticast(t *testing.T) {
	f := newFixture(t)
	guestMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x21, 0x05, 0x01}
	d, tap := f.libvirtMacvtap(t, "vtmc0", guestMAC)
	g := f.liveGuest(t, guestMAC, d.Name, "untrusted")
	target := netip.MustParseAddr("2001:db8:21::21")
	src := netip.MustParseAddr("2001:db8:21::2")
	group := netip.MustParseAddr("ff02::1:ff00:21")
	opt := append([]byte{1, 1}, f.s.ExtMAC...) // source link-layer address
	tgt := target.As16()
	ns := netdev.ICMPv6(f.s.ExtMAC, netdev.MulticastMAC6(group), src, group, 135, 0, append(append([]byte{0, 0, 0, 0}, tgt[:]...), opt...))
	bcast := netdev.ARPRequest(f.s.ExtMAC, f.s.ExtIP, net.IPv4(192, 0, 2, 21).To4())
	send := func(frame []byte) {
		t.Helper()
		if err := f.s.External.Do(func() error {
			l, err := f.s.External.NL.LinkByName(f.s.ExtLink)
			if err != nil {
				return err
			}
			return netdev.SendFrames(l.Attrs().Index, [][]byte{frame})
		}); err != nil {
			t.Fatal(err)
		}
	}
	reaches := func(frame []byte) bool {
		t.Helper()
		for i := 0; i < 3; i++ {
			send(frame)
			deadline := time.Now().Add(300 * time.Millisecond)
			for {
				b, err := tap.Read(deadline)
				if err != nil {
					break
				}
				if len(b) >= len(frame) && bytes.Equal(b[:len(frame)], frame) {
					return true
				}
			}
		}
		return false
	}
	if !reaches(bcast) {
		t.Fatal("a broadcast ARP request from the far side did not reach the guest's tap: the topology is broken")
	}
	before := reaches(ns)
	t.Logf("MEASURED untrusted macvtap, no trusted RX filter: NS to %s (%s) reaches the guest: %v", group, netdev.MulticastMAC6(group), before)
	if before {
		t.Errorf("the solicited-node NS reached the guest before the fix: the measurement this fix rests on no longer holds")
	}
	if err := f.r.Starting(g); err != nil {
		t.Fatal(err)
	}
	l, err := f.r.Net.Handle().LinkByName(d.Name)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().RawFlags&0x200 == 0 { // IFF_ALLMULTI
		t.Errorf("%s has no ALLMULTI after the start hook", d.Name)
	}
	after := reaches(ns)
	t.Logf("MEASURED after the start hook (ALLMULTI on the macvtap): NS reaches the guest: %v", after)
	if !after {
		t.Errorf("the solicited-node NS does not reach the guest after the start hook")
	}
}
