//go:build virtapvm

package inside

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// The cases of issue 21, each through the hook's own code (host.Realiser
// on a provisioned document) with guests played by their /dev/tapN.

func domainXML(name string, u uuid.UUID, mac string) string {
	m := ""
	if mac != "" {
		m = "<mac address='" + mac + "'/>"
	}
	return `<domain type='qemu'><name>` + name + `</name><uuid>` + u.String() + `</uuid>
  <memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
  <devices><interface type='network'>` + m + `<source network='edge'/></interface></devices></domain>`
}

// realiser opens a store in a temporary directory and a realiser on the
// test's namespace.
func realiser(t *testing.T, hn *nstest.NS) (*host.Realiser, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return host.New(hclog.NewNullLogger(), netdev.New(nil, hn.NL), st, paths.Roots{}), st
}

// prepared provisions a guest on the policy for this host and runs Prepare.
func prepared(t *testing.T, r *host.Realiser, pol, name string, u uuid.UUID, mac string) (*host.Guest, domain.IfaceRecord, []byte) {
	t.Helper()
	p, err := policy.Parse("policy.toml", []byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	res, err := provision.Provision([]byte(domainXML(name, u, mac)), provision.Options{Policy: p, Host: "vm", Local: true,
		ParentMAC: netdev.LinkMAC})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := domain.Parse(res.XML)
	if err != nil {
		t.Fatal(err)
	}
	g, err := host.NewGuest(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(g); err != nil {
		t.Fatalf("prepare %s: %v", name, err)
	}
	// libvirt's "start": the anti-spoofing filters of virtap's devices get
	// the addresses leased by now.
	if err := r.Starting(g); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = r.Release(&host.Guest{UUID: g.UUID, Name: g.Name}) })
	return g, doc.Record.Interfaces[0], res.XML
}

// player is a guest played through a tap: it answers ARP for its address
// and UDP (echoing the payload back), and queues every frame.
type player struct {
	tap    *netdev.Tap
	mac    net.HardwareAddr
	ip     net.IP
	frames chan netdev.Frame
}

func play(t *testing.T, d netdev.Device, mac net.HardwareAddr, ip net.IP) *player {
	t.Helper()
	tap, err := netdev.OpenTap(d, false)
	if err != nil {
		t.Fatal(err)
	}
	p := &player{tap: tap, mac: mac, ip: ip.To4(), frames: make(chan netdev.Frame, 256)}
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
			switch {
			case f.ARP != nil && f.ARP.Op == 1 && f.ARP.TargetIP.Equal(p.ip):
				_ = tap.Write(netdev.ARPReply(mac, p.ip, f.ARP.SenderMAC, f.ARP.SenderIP))
			case f.IPv4 != nil && f.IPv4.Protocol == netdev.ProtoUDP && f.IPv4.Dst.Equal(p.ip) && len(f.IPv4.Payload) >= 8:
				u := f.IPv4.Payload
				sp, dp := binary.BigEndian.Uint16(u[0:2]), binary.BigEndian.Uint16(u[2:4])
				_ = tap.Write(netdev.UDP4(mac, f.Src, p.ip, f.IPv4.Src, dp, sp, u[8:]))
			}
			select {
			case p.frames <- f:
			default:
			}
		}
	}()
	t.Cleanup(func() { tap.Close(); <-done })
	return p
}

// pingFrom sends an ICMP echo from the player to dst (Ethernet dmac) and
// waits for the reply; it returns the replier's MAC, nil for none.
func (p *player) pingFrom(dmac net.HardwareAddr, dst net.IP, wantHit bool) net.HardwareAddr {
	attempts, wait := 3, 2*hitWait
	if !wantHit {
		attempts, wait = 1, 2*missWait
	}
	for i := 0; i < attempts; i++ {
		seq++
		id, s := uint16(0x2121), seq
		_ = p.tap.Write(netdev.ICMPEcho(p.mac, dmac, p.ip, dst, false, id, s, []byte("virtap-reach")))
		deadline := time.After(wait)
	loop:
		for {
			select {
			case f := <-p.frames:
				if f.ICMP != nil && f.ICMP.Type == 0 && f.ICMP.ID == id && f.ICMP.Seq == s && f.IPv4.Src.Equal(dst) {
					return f.Src
				}
			case <-deadline:
				break loop
			}
		}
	}
	return nil
}

// vlanHost makes a namespace on the switch whose port carries VLAN id:
// a veth to the bridge with an 802.1Q device on it holding addr.
func vlanHost(t *testing.T, s *nstest.Switched, name string, id int, addr string) (*nstest.NS, net.HardwareAddr) {
	t.Helper()
	ns := nstest.NewDetached(t)
	ns.Veth(t, name, "sw"+name, s.Switch)
	s.Switch.AddPort(t, s.Bridge, "sw"+name, false)
	la := netlink.NewLinkAttrs()
	la.Name = fmt.Sprintf("%s.%d", name, id)
	la.ParentIndex = ns.Link(t, name).Attrs().Index
	if err := ns.NL.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: id, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}); err != nil {
		t.Fatal(err)
	}
	ns.Up(t, la.Name)
	ns.AddAddr(t, la.Name, addr)
	return ns, ns.MAC(t, la.Name)
}

const vlanPolicyIpvtap = `[networks.edge]
kind = "ipvtap"
parent = "up0"
mode = "l2"
vlan = 10
addresses = "203.0.113.0/24"
range = "203.0.113.20-203.0.113.29"
`

const vlanPolicyMacvtap = `[networks.edge]
kind = "macvtap"
parent = "up0"
mode = "bridge"
trust = "trusted"
vlan = 10
`

// TestVLAN: two guests of a network with vlan = 10 reach a host on VLAN 10
// and not one on VLAN 20; the hook makes up0.10, tagged, shares it, and
// removes it with the last guest.
func TestVLAN(t *testing.T) {
	for _, kind := range []string{"ipvtap", "macvtap"} {
		t.Run(kind, func(t *testing.T) {
			hn := nstest.New(t)
			s := nstest.NewSwitched(t, hn, false)
			_, mac10 := vlanHost(t, s, "v10", 10, "203.0.113.2/24")
			_, mac20 := vlanHost(t, s, "v20", 20, "203.0.113.3/24")
			r, st := realiser(t, hn)
			pol := vlanPolicyIpvtap
			if kind == "macvtap" {
				pol = vlanPolicyMacvtap
			}
			var guests []*host.Guest
			var players []*player
			for i := 0; i < 2; i++ {
				u := uuid.New()
				mac := ""
				if kind == "macvtap" {
					mac = fmt.Sprintf("52:54:00:21:10:%02x", i+1)
				}
				g, ir, xml := prepared(t, r, pol, fmt.Sprintf("vlan%d", i), u, mac)
				guests = append(guests, g)
				d, ok, err := r.Net.Find("up0.10")
				if err != nil || !ok || d.Kind != "vlan" || d.VLANID != 10 || d.Parent != "up0" || d.Tag.Purpose() != netdev.VLANPurpose {
					t.Fatalf("after prepare %d: up0.10 = %+v ok=%v err=%v; want virtap's vlan 10 on up0", i, d, ok, err)
				}
				var dev netdev.Device
				var ip net.IP
				if kind == "ipvtap" {
					if dev, ok, err = r.Net.Find(ir.Device); err != nil || !ok || dev.Parent != "up0.10" {
						t.Fatalf("ipvtap %s: %+v ok=%v err=%v; want it on up0.10", ir.Device, dev, ok, err)
					}
					as, _ := host.GuestAddresses(hn.NL, ir.Device)
					if len(as) != 1 {
						t.Fatalf("addresses on %s: %v", ir.Device, as)
					}
					ip = net.IP(as[0].AsSlice())
				} else {
					if !strings.Contains(string(xml), "dev=\"up0.10\"") && !strings.Contains(string(xml), "dev='up0.10'") {
						t.Fatalf("provisioned direct interface is not on up0.10:\n%s", xml)
					}
					// libvirt's part: a macvtap on the source device.
					hw, _ := net.ParseMAC(ir.MAC)
					dev, err = r.Net.Create(netdev.Spec{Name: fmt.Sprintf("mvt%d", i), Kind: netdev.KindMacvtap, Parent: "up0.10",
						Mode: "bridge", MAC: hw, Tag: netdev.PurposeTag("libvirt", "stand-in"), Up: true})
					if err != nil {
						t.Fatal(err)
					}
					ip = net.IPv4(203, 0, 113, byte(30+i))
				}
				players = append(players, play(t, dev, dev.MAC, ip))
			}
			for i, p := range players {
				got := p.pingFrom(mac10, net.IPv4(203, 0, 113, 2), true)
				t.Logf("MEASURED vlan %s guest %d -> VLAN-10 host: reply from %v (want %s)", kind, i, got, mac10)
				if !bytes.Equal(got, mac10) {
					t.Errorf("guest %d (%s) did not reach the VLAN-10 host", i, p.ip)
				}
				if got := p.pingFrom(mac20, net.IPv4(203, 0, 113, 3), false); got != nil {
					t.Errorf("guest %d reached the VLAN-20 host (reply from %s)", i, got)
				}
			}
			if kind == "macvtap" {
				for i := range players {
					_ = r.Net.Delete(fmt.Sprintf("mvt%d", i))
				}
			}
			if err := r.Release(guests[0]); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := r.Net.Find("up0.10"); !ok {
				t.Errorf("up0.10 went with the first guest; the second still uses it")
			}
			// gc keeps a device a running guest's record uses.
			if acts, err := r.GC(func(uuid.UUID) bool { return true }, nil, false); err != nil || len(acts) != 0 {
				t.Errorf("gc with every guest running: %v, %v", acts, err)
			}
			if err := r.Release(guests[1]); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := r.Net.Find("up0.10"); ok {
				t.Errorf("up0.10 survived the last guest")
			}
			// A crash after the record went and before the device: gc.
			if _, err := r.Net.Create(netdev.Spec{Name: "up0.10", Kind: netdev.KindVLAN, Parent: "up0", VLANID: 10,
				Tag: netdev.VLANTag("up0", 10), Up: true}); err != nil {
				t.Fatal(err)
			}
			acts, err := r.GC(func(uuid.UUID) bool { return false }, nil, false)
			if _, ok, _ := r.Net.Find("up0.10"); ok || err != nil {
				t.Errorf("gc left an unused up0.10 (actions %v, error %v)", acts, err)
			}
			if doms, _ := st.Domains(); len(doms) != 0 {
				t.Errorf("records left: %v", doms)
			}
		})
	}
}

func hostAccessPolicy(mode string) string {
	return `[networks.edge]
kind = "ipvtap"
parent = "up0"
mode = "` + mode + `"
addresses = "198.51.100.0/24"
range = "198.51.100.20-198.51.100.29"
host_access = "198.51.100.1/24"
`
}

// udpRoundTrip sends a datagram from the host's namespace (the test's
// thread) to dst and waits for the echo.
func udpRoundTrip(t *testing.T, dst net.IP) bool {
	t.Helper()
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		msg := []byte(fmt.Sprintf("virtap-host-access-%d", i))
		if _, err := c.WriteToUDP(msg, &net.UDPAddr{IP: dst, Port: 7}); err != nil {
			t.Logf("send to %s: %v", dst, err)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * hitWait))
		n, _, err := c.ReadFromUDP(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return true
		}
	}
	return false
}

func setAcceptLocal(t *testing.T, dev, v string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/accept_local", []byte(v), 0); err != nil {
		t.Fatal(err)
	}
}

// TestHostAccessIpvtap: with host_access the host reaches its ipvtap
// guests through an ipvlan shim in the network's mode; it measures why the
// shim needs accept_local.
func TestHostAccessIpvtap(t *testing.T) {
	for _, mode := range []string{"l2", "l3"} {
		t.Run(mode, func(t *testing.T) {
			hn := nstest.New(t)
			nstest.NewSwitched(t, hn, false)
			r, _ := realiser(t, hn)
			g, ir, _ := prepared(t, r, hostAccessPolicy(mode), "ha", uuid.New(), "")
			shim := host.ShimName(ir.Network, "up0")
			sd, ok, err := r.Net.Find(shim)
			if err != nil || !ok || sd.Kind != "ipvlan" || sd.Mode != mode {
				t.Fatalf("shim %s: %+v ok=%v err=%v; want an ipvlan in mode %s", shim, sd, ok, err, mode)
			}
			d, _, _ := r.Net.Find(ir.Device)
			if d.Mode != mode {
				t.Fatalf("the shim switched the guest's device to mode %s", d.Mode)
			}
			as, _ := host.GuestAddresses(hn.NL, ir.Device)
			ip := net.IP(as[0].AsSlice())
			play(t, d, d.MAC, ip)
			ok = udpRoundTrip(t, ip)
			t.Logf("MEASURED host_access ipvtap %s: host->guest->host via the shim with accept_local=1: %v", mode, ok)
			if !ok {
				t.Errorf("%s: the host did not reach its guest %s through the shim", mode, ip)
			}
			setAcceptLocal(t, shim, "0")
			without := udpRoundTrip(t, ip)
			t.Logf("MEASURED host_access ipvtap %s: the same with accept_local=0: %v", mode, without)
			if without {
				t.Errorf("%s: the host reached its guest with accept_local=0: the reason the shim sets it no longer holds", mode)
			}
			if err := r.Release(g); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := r.Net.Find(shim); ok {
				t.Errorf("the shim survived its network's last guest")
			}
		})
	}
}

// capture opens a packet socket on dev in ns and returns the frames it
// receives until stop.
func capture(t *testing.T, ns *nstest.NS, dev string) (frames chan []byte) {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	frames = make(chan []byte, 1024)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == nil {
				select {
				case frames <- append([]byte(nil), buf[:n]...):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; unix.Close(fd) })
	return frames
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// seen waits for a frame that match accepts.
func seen(frames chan []byte, wait time.Duration, match func([]byte) bool) bool {
	deadline := time.After(wait)
	for {
		select {
		case f := <-frames:
			if match(f) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestAnnounce: prepare sends a gratuitous ARP for the guest's leased
// address, and Announce (the started hook) an unsolicited NA for an IPv6
// address on the device; the external host sees both from the parent's
// MAC and moves its stale entry to it.
func TestAnnounce(t *testing.T) {
	hn := nstest.New(t)
	s := nstest.NewSwitched(t, hn, false)
	upMAC := hn.MAC(t, "up0")
	frames := capture(t, s.External, s.ExtLink)
	ext := s.External.Link(t, s.ExtLink)
	guest := net.IPv4(198, 51, 100, 20).To4()
	stale := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	if err := s.External.NL.NeighSet(&netlink.Neigh{LinkIndex: ext.Attrs().Index, IP: guest, HardwareAddr: stale,
		State: netlink.NUD_STALE}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the neighbour's locktime
	r, _ := realiser(t, hn)
	g, ir, _ := prepared(t, r, hostAccessPolicy("l2"), "ann", uuid.New(), "")
	garp := seen(frames, 3*time.Second, func(b []byte) bool {
		f, err := netdev.ParseFrame(b)
		return err == nil && f.ARP != nil && f.ARP.SenderIP.Equal(guest) && f.ARP.TargetIP.Equal(guest) &&
			bytes.Equal(f.ARP.SenderMAC, upMAC) && bytes.Equal(f.Dst, netdev.Broadcast)
	})
	t.Logf("MEASURED announce: gratuitous ARP for %s from %s seen on the far side after prepare: %v", guest, upMAC, garp)
	if !garp {
		t.Errorf("no gratuitous ARP for %s on the far side after prepare", guest)
	}
	ns, _ := s.External.NL.NeighList(ext.Attrs().Index, netlink.FAMILY_V4)
	moved := false
	for _, n := range ns {
		if n.IP.Equal(guest) && bytes.Equal(n.HardwareAddr, upMAC) {
			moved = true
		}
	}
	t.Logf("MEASURED announce: the far side's stale entry for %s moved to the parent's MAC: %v", guest, moved)
	if !moved {
		t.Errorf("the external host's neighbour entry for %s still points elsewhere: %v", guest, ns)
	}
	v6 := netip.MustParseAddr("2001:db8:21::20")
	if err := host.AddGuestAddresses(hn.NL, ir.Device, []netip.Addr{v6}); err != nil {
		t.Fatal(err)
	}
	if err := r.Announce(g); err != nil {
		t.Fatal(err)
	}
	na := seen(frames, 3*time.Second, func(b []byte) bool {
		if len(b) < 14+40+24 || binary.BigEndian.Uint16(b[12:14]) != netdev.EtherTypeIPv6 || !bytes.Equal(b[6:12], upMAC) {
			return false
		}
		ip6 := b[14:]
		icmp := ip6[40:]
		tgt, _ := netip.AddrFromSlice(icmp[8:24])
		return ip6[6] == netdev.ProtoICMPv6 && ip6[7] == 255 && icmp[0] == 136 && icmp[4]&0x20 != 0 && tgt == v6
	})
	t.Logf("MEASURED announce: unsolicited NA for %s seen on the far side: %v", v6, na)
	if !na {
		t.Errorf("no unsolicited neighbour advertisement for %s on the far side", v6)
	}
}
