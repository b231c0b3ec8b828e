//go:build virtapvm

package inside

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
)

// Topology of every case, built fresh inside the VM:
//
//	host netns: up0 192.0.2.1/24 (+ route 198.51.100.0/24 dev up0)
//	            ipvtap A (198.51.100.11), B (198.51.100.12) on up0
//	            up0 ══veth══ swup ┐ bridge br0 (switch netns, hairpin per case)
//	external netns: ext0 192.0.2.2/24 ══veth══ swext ┘
//	                route 198.51.100.0/24 via 192.0.2.1 (or on-link, per probe)
//
// A "guest" is an ipvtap's /dev/tapN: raw Ethernet frames, MAC = up0's.

func TestMain(m *testing.M) {
	if os.Getenv("VIRTAP_IN_VM") != "1" {
		fmt.Fprintln(os.Stderr, "these tests run inside the test host VM (go test ./test/vm); VIRTAP_IN_VM is not 1")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const (
	hitWait  = 700 * time.Millisecond // per attempt (TCG is slow)
	missWait = 600 * time.Millisecond
)

var (
	hostIP = net.IPv4(192, 0, 2, 1).To4()
	extIP  = net.IPv4(192, 0, 2, 2).To4()
	guestA = net.IPv4(198, 51, 100, 11).To4()
	guestB = net.IPv4(198, 51, 100, 12).To4()
)

type guest struct {
	dev    netdev.Device
	tap    *netdev.Tap
	ip     net.IP
	frames chan netdev.Frame
	arpOn  bool
}

// newGuest creates an ipvtap on up0 and a reader that answers ARP requests
// for the guest's address (as a guest's kernel would) and queues the rest.
func newGuest(t *testing.T, m *netdev.Manager, name, mode, flag string, ip net.IP, n byte) *guest {
	t.Helper()
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x99, 0x00, n}
	d, err := m.Create(netdev.Spec{Name: name, Kind: netdev.KindIPvtap, Parent: "up0", Mode: mode, Flag: flag,
		Tag: netdev.GuestTag(testDomain, mac), Up: true, Index: nstest.FreshIndex()})
	if err != nil {
		t.Fatal(err)
	}
	tap, err := netdev.OpenTap(d, false)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{dev: d, tap: tap, ip: ip, frames: make(chan netdev.Frame, 256), arpOn: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := tap.Read(time.Time{})
			if err != nil {
				return
			}
			f, err := netdev.ParseFrame(b)
			if err != nil {
				continue
			}
			if f.ARP != nil && f.ARP.Op == 1 && f.ARP.TargetIP.Equal(ip) && g.arpOn {
				_ = tap.Write(netdev.ARPReply(d.MAC, ip, f.ARP.SenderMAC, f.ARP.SenderIP))
			}
			select {
			case g.frames <- f:
			default:
			}
		}
	}()
	t.Cleanup(func() { tap.Close(); <-done })
	return g
}

var testDomain = uuid.MustParse("7b0e7d1c-3f0a-4c55-9a53-0f7a0c1c2b7e")

// expect waits for a frame matching m.
func (g *guest) expect(wait time.Duration, m func(netdev.Frame) bool) bool {
	deadline := time.After(wait)
	for {
		select {
		case f := <-g.frames:
			if m(f) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func (g *guest) drain() {
	for {
		select {
		case <-g.frames:
		default:
			return
		}
	}
}

var seq uint16

// echo sends ICMP echo requests from g to dst (Ethernet destination dmac)
// and reports whether rcv saw the request (reply=false) or g saw the
// echo reply (reply=true).
func echo(t *testing.T, g *guest, dmac net.HardwareAddr, dst net.IP, rcv *guest, wantHit bool) bool {
	t.Helper()
	attempts, wait := 3, hitWait
	if !wantHit {
		attempts, wait = 1, missWait
	}
	for i := 0; i < attempts; i++ {
		seq++
		id, s := uint16(0x7654), seq
		if rcv != nil {
			rcv.drain()
		}
		if err := g.tap.Write(netdev.ICMPEcho(g.dev.MAC, dmac, g.ip, dst, false, id, s, []byte("virtap-vm"))); err != nil {
			t.Fatal(err)
		}
		var ok bool
		if rcv != nil {
			ok = rcv.expect(wait, func(f netdev.Frame) bool {
				return f.ICMP != nil && f.ICMP.Type == 8 && f.ICMP.ID == id && f.ICMP.Seq == s
			})
		} else {
			ok = g.expect(wait, func(f netdev.Frame) bool {
				return f.ICMP != nil && f.ICMP.Type == 0 && f.ICMP.ID == id && f.ICMP.Seq == s && f.IPv4.Src.Equal(dst)
			})
		}
		if ok {
			return true
		}
	}
	return false
}

// arpSeen: a broadcast ARP request from a for b's address; does b see it?
func arpSeen(t *testing.T, a, b *guest, wantHit bool) bool {
	t.Helper()
	b.drain()
	if err := a.tap.Write(netdev.ARPRequest(a.dev.MAC, a.ip, b.ip)); err != nil {
		t.Fatal(err)
	}
	wait := missWait
	if wantHit {
		wait = 2 * hitWait
	}
	return b.expect(wait, func(f netdev.Frame) bool {
		return f.ARP != nil && f.ARP.Op == 1 && f.ARP.SenderIP.Equal(a.ip) && f.ARP.TargetIP.Equal(b.ip)
	})
}

type topo struct {
	s      *nstest.Switched
	m      *netdev.Manager
	a, b   *guest
	upMAC  net.HardwareAddr
	extMAC net.HardwareAddr
}

func build(t *testing.T, mode, flag string, hairpin, hostAddrs bool) *topo {
	t.Helper()
	hn := nstest.New(t)
	s := nstest.NewSwitched(t, hn, hairpin)
	hn.AddAddr(t, "up0", "192.0.2.1/24")
	up := hn.Link(t, "up0")
	_, gnet, _ := net.ParseCIDR("198.51.100.0/24")
	if err := hn.NL.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: gnet, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	extVia(t, s, true)
	m := netdev.New(nil, hn.NL)
	tp := &topo{s: s, m: m, upMAC: up.Attrs().HardwareAddr, extMAC: s.ExtMAC}
	tp.a = newGuest(t, m, "vtiA", mode, flag, guestA, 1)
	tp.b = newGuest(t, m, "vtiB", mode, flag, guestB, 2)
	if !bytes.Equal(tp.a.dev.MAC, tp.upMAC) {
		t.Fatalf("ipvtap MAC %s, parent MAC %s: ipvlan should share the parent's MAC", tp.a.dev.MAC, tp.upMAC)
	}
	if hostAddrs {
		for _, g := range []*guest{tp.a, tp.b} {
			a, _ := netip.AddrFromSlice(g.ip)
			if err := host.AddGuestAddresses(hn.NL, g.dev.Name, []netip.Addr{a}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tp
}

// extVia sets the external host's route to the guests' subnet: through the
// host's address (routed) or on-link (the external host ARPs for guests).
func extVia(t *testing.T, s *nstest.Switched, viaHost bool) {
	t.Helper()
	l := s.External.Link(t, s.ExtLink)
	_, gnet, _ := net.ParseCIDR("198.51.100.0/24")
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: gnet}
	if viaHost {
		r.Gw = hostIP
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := s.External.NL.RouteReplace(r); err != nil {
		t.Fatal(err)
	}
	// Forget what the external host learnt about guests.
	_ = s.External.NL.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: guestA})
}

// Observation is one measured row of the README's ipvtap table.
type observation struct {
	GuestToGuest, GuestBroadcast, ExtRouted, ExtOnLink, GuestToHost bool
}

func (o observation) String() string {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprintf("guest->guest=%s guest-broadcast->guest=%s ext(routed via host)=%s ext(on-link)=%s guest->host=%s",
		yn(o.GuestToGuest), yn(o.GuestBroadcast), yn(o.ExtRouted), yn(o.ExtOnLink), yn(o.GuestToHost))
}

func measure(t *testing.T, tp *topo, want observation) observation {
	t.Helper()
	var o observation
	o.GuestToGuest = echo(t, tp.a, tp.upMAC, guestB, tp.b, want.GuestToGuest)
	o.GuestBroadcast = arpSeen(t, tp.a, tp.b, want.GuestBroadcast)
	extVia(t, tp.s, true)
	o.ExtRouted = echo(t, tp.a, tp.extMAC, extIP, nil, want.ExtRouted)
	extVia(t, tp.s, false)
	o.ExtOnLink = echo(t, tp.a, tp.extMAC, extIP, nil, want.ExtOnLink)
	extVia(t, tp.s, true)
	o.GuestToHost = echo(t, tp.a, tp.upMAC, hostIP, nil, want.GuestToHost)
	return o
}

// The expected reach of each mode and flag, as measured on the Debian 6.1
// kernel (see README "ipvtap"). Every cell is asserted.
var cases = []struct {
	mode, flag string
	hairpin    bool
	want       observation
}{
	{"l2", "bridge", false, observation{GuestToGuest: true, GuestBroadcast: true, ExtRouted: true, ExtOnLink: true}},
	// private and vepa stop unicast between guests, not broadcast.
	{"l2", "private", false, observation{GuestToGuest: false, GuestBroadcast: true, ExtRouted: true, ExtOnLink: true}},
	{"l2", "vepa", false, observation{GuestToGuest: false, GuestBroadcast: true, ExtRouted: true, ExtOnLink: true}},
	{"l2", "vepa", true, observation{GuestToGuest: true, GuestBroadcast: true, ExtRouted: true, ExtOnLink: true}},
	// l3: the outside reaches guests only through a route via the host.
	{"l3", "bridge", false, observation{GuestToGuest: true, GuestBroadcast: true, ExtRouted: true, ExtOnLink: false}},
	{"l3", "private", false, observation{GuestToGuest: false, GuestBroadcast: false, ExtRouted: true, ExtOnLink: false}},
	{"l3", "vepa", false, observation{GuestToGuest: false, GuestBroadcast: false, ExtRouted: true, ExtOnLink: false}},
	// l3 vepa sends guest-to-guest through the host's routing, never to
	// the switch as a frame for the other guest: hairpin does not help.
	{"l3", "vepa", true, observation{GuestToGuest: false, GuestBroadcast: false, ExtRouted: true, ExtOnLink: false}},
	// l3s hands inbound packets to the host's IP stack (l3mdev), never to
	// the tap queue: an ipvtap guest in l3s reaches only other guests.
	{"l3s", "bridge", false, observation{GuestToGuest: true, GuestBroadcast: true, ExtRouted: false, ExtOnLink: false}},
	{"l3s", "private", false, observation{GuestToGuest: false, GuestBroadcast: false, ExtRouted: false, ExtOnLink: false}},
	{"l3s", "vepa", true, observation{GuestToGuest: false, GuestBroadcast: false, ExtRouted: false, ExtOnLink: false}},
}

// TestModes measures, for every mode and flag, what a guest reaches through
// its /dev/tapN with virtap's host configuration, and asserts it.
func TestModes(t *testing.T) {
	var report []string
	for _, c := range cases {
		name := fmt.Sprintf("%s-%s-hairpin=%v", c.mode, c.flag, c.hairpin)
		t.Run(name, func(t *testing.T) {
			tp := build(t, c.mode, c.flag, c.hairpin, true)
			got := measure(t, tp, c.want)
			t.Logf("MEASURED %s: %s", name, got)
			report = append(report, fmt.Sprintf("%-24s %s", name, got))
			if got != c.want {
				t.Errorf("%s:\n got  %s\n want %s", name, got, c.want)
			}
		})
	}
	t.Logf("ipvtap reach table:\n%s", strings.Join(report, "\n"))
}

// TestNoHostAddresses shows why virtap configures the guest's address on
// the host: without it ipvlan hands unicast for the guest to the host, and
// the guest hears only broadcast.
func TestNoHostAddresses(t *testing.T) {
	for _, mode := range []string{"l2", "l3"} {
		t.Run(mode, func(t *testing.T) {
			tp := build(t, mode, "bridge", false, false)
			if echo(t, tp.a, tp.extMAC, extIP, nil, false) {
				t.Errorf("%s: the external host's reply reached the guest without its address on the ipvtap device", mode)
			}
			if echo(t, tp.a, tp.upMAC, guestB, tp.b, false) {
				t.Errorf("%s: guest to guest worked without addresses on the ipvtap devices", mode)
			}
		})
	}
}

// TestHostSideEffects checks what AddGuestAddresses leaves in the host's
// routing: no local route for the guest's address (the host does not take
// it for its own), no prefix route, no source address the host would pick.
func TestHostSideEffects(t *testing.T) {
	tp := build(t, "l2", "bridge", false, true)
	h := tp.s.Host.NL
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 255}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && (r.Dst.IP.Equal(guestA) || r.Dst.IP.Equal(guestB)) {
			t.Errorf("local table still routes a guest address: %s", r)
		}
	}
	got, err := h.RouteGet(guestA)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].LinkIndex != tp.s.Host.Link(t, "up0").Attrs().Index || got[0].Type == 2 /* RTN_LOCAL */ {
		t.Errorf("host route to guest A: %+v, want the parent's connected route", got)
	}
	// The external host ARPs for guest A while the guest stays silent: the
	// host must not answer for it.
	tp.a.arpOn = false
	extVia(t, tp.s, false)
	if echo(t, tp.a, tp.extMAC, extIP, nil, false) {
		t.Errorf("echo reply reached guest A while it did not answer ARP: the host answered ARP for the guest's address")
	}
	tp.a.arpOn = true
	if !echo(t, tp.a, tp.extMAC, extIP, nil, true) {
		t.Errorf("echo reply did not reach guest A on-link after it answered ARP")
	}
	addrs, err := host.GuestAddresses(h, "vtiA")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("198.51.100.11") {
		t.Errorf("GuestAddresses(vtiA) = %v, %v", addrs, err)
	}
	// Deleting the device removes everything virtap added for it.
	if err := tp.m.Delete("vtiA"); err != nil {
		t.Fatal(err)
	}
	if as, _ := h.AddrList(nil, netlink.FAMILY_V4); len(as) > 0 {
		for _, a := range as {
			if a.IP.Equal(guestA) {
				t.Errorf("address %s survived the device", a.IP)
			}
		}
	}
}
