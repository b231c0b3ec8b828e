package nft_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
	"github.com/virtap/virtap/internal/nstest"
)

// DHCP snooping in the kernel: a DHCPACK the LAN's server sends to the
// guest's MAC (unicast or broadcast) is seen on the ingress hook of the
// guest's macvtap and binds its yiaddr for the lease; nothing else binds.
func TestLearnedAddressAfterDHCPACK(t *testing.T) {
	r := spooftest.NewRig(t, "vtlg", net.HardwareAddr{0x52, 0x54, 0x00, 0x88, 0x02, 0x01})
	host, s, cap, tap, d, dom, mac, m := r.Host, r.Switch, r.Cap, r.Tap, r.Dev, r.Domain, r.MAC, r.Filter
	spec := nft.Spec{Domain: dom, MAC: mac, Device: d.Name, Learn: nft.LearnDHCP}
	if err := m.Apply(spec); err != nil {
		t.Fatal(err)
	}
	l := &learner{t: t, tap: tap, cap: cap, mac: mac, s: s}
	ip := func(last byte) net.IP { return net.IPv4(192, 0, 2, last).To4() }

	if !l.send(true, l.discover()) {
		t.Error("a DHCP discover from 0.0.0.0 did not reach the LAN")
	}
	l.wantBound(ip(50), false)

	// Unicast ACK, options 53, 54, 51 (ISC dhcpd, dnsmasq, busybox).
	l.ack(mac, mac, ip(50), spooftest.Opt(54, 192, 0, 2, 2), spooftest.Lease(120*time.Second))
	l.wantBound(ip(50), true)
	// Broadcast ACK, options 53, 58, 59, 51 (Windows).
	l.ack(netdev.Broadcast, mac, ip(52), spooftest.Opt(58, 0, 0, 7, 8), spooftest.Opt(59, 0, 0, 12, 0), spooftest.Lease(time.Hour))
	l.wantBound(ip(52), true)
	// Lease time somewhere else: the fallback.
	l.ack(mac, mac, ip(53), spooftest.Opt(1, 255, 255, 255, 0), spooftest.Lease(time.Hour))
	l.wantBound(ip(53), true)
	// An ACK for another client binds nothing here.
	l.ack(netdev.Broadcast, net.HardwareAddr{0x52, 0x54, 0, 9, 9, 9}, ip(51), spooftest.Lease(time.Hour))
	l.wantBound(ip(51), false)
	// The guest acking itself: its egress drops it (port 68), nothing binds.
	self := netdev.UDP4(mac, mac, ip(50), ip(54), 67, 68, spooftest.BOOTP(2, mac, nil, ip(54), spooftest.Opt(53, 5), spooftest.Lease(time.Hour)))
	if err := tap.Write(self); err != nil {
		t.Fatal(err)
	}
	l.wantBound(ip(54), false)

	want := map[string]time.Duration{"192.0.2.50": 2 * time.Minute, "192.0.2.52": time.Hour, "192.0.2.53": 24 * time.Hour}
	got := elements(t, host, dom, mac)
	for a, to := range want {
		if g, ok := got[a]; !ok || g != to {
			t.Errorf("learned %s: timeout %v (present %v), want %v; set %v", a, g, ok, to, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("learned set %v, want exactly %v", got, want)
	}
	if l, err := m.Learned(dom); err != nil || fmt.Sprint(l[mac.String()]) != "[192.0.2.50 192.0.2.52 192.0.2.53]" || len(l) != 1 {
		t.Errorf("Learned: %v %v, want %s: [192.0.2.50 192.0.2.52 192.0.2.53]", l, err, mac)
	}
	cs, err := m.Counters(dom)
	if err != nil {
		t.Fatal(err)
	}
	var learned uint64
	for _, c := range cs {
		if c.Reason == nft.ReasonLearned {
			learned += c.Packets
		}
	}
	if learned != 3 {
		t.Errorf("learned counter %d, want 3 (the three ACKs for this guest)", learned)
	}
	// A changed re-apply (new counters) keeps what was learned.
	spec.Addresses = []netip.Addr{netip.MustParseAddr("2001:db8::10")}
	if err := m.Apply(spec); err != nil {
		t.Fatal(err)
	}
	if got := elements(t, host, dom, mac); len(got) != len(want) {
		t.Errorf("after a changed re-apply the learned set is %v, want %v", got, want)
	}
	// The guest releases .50: bound no more.
	rel := netdev.UDP4(mac, s.ExtMAC, ip(50), s.ExtIP, 68, 67, spooftest.BOOTP(1, mac, ip(50), nil, spooftest.Opt(53, 7)))
	if err := tap.Write(rel); err != nil {
		t.Fatal(err)
	}
	l.wantBound(ip(50), false)
}

type learner struct {
	t   *testing.T
	tap *netdev.Tap
	cap *spooftest.Capture
	mac net.HardwareAddr
	s   *nstest.Switched
	seq int
}

func (l *learner) nonce() []byte {
	l.seq++
	return []byte{'v', 't', 'l', 'r', byte(l.seq), 0x5a}
}

func (l *learner) send(expect bool, build func([]byte) []byte) bool {
	n := l.nonce()
	return spooftest.Send(l.t, l.tap, l.cap, expect, n, build(n))
}

func (l *learner) discover() func([]byte) []byte {
	return func(n []byte) []byte {
		return netdev.UDP4(l.mac, netdev.Broadcast, net.IPv4zero, net.IPv4bcast, 68, 67,
			append(spooftest.BOOTP(1, l.mac, nil, nil, spooftest.Opt(53, 1)), n...))
	}
}

// wantBound checks that IPv4 and ARP from a pass (bound) or not.
func (l *learner) wantBound(a net.IP, bound bool) {
	l.t.Helper()
	icmp := func(n []byte) []byte { return netdev.ICMPEcho(l.mac, l.s.ExtMAC, a, l.s.ExtIP, false, 1, 1, n) }
	arp := func(n []byte) []byte {
		f := netdev.ARPReply(l.mac, a, l.s.ExtMAC, l.s.ExtIP)
		return append(f[:14+28], n...)
	}
	for name, b := range map[string]func([]byte) []byte{"IPv4": icmp, "ARP": arp} {
		if got := l.send(bound, b); got != bound {
			l.t.Errorf("%s from %s reached the LAN: %v, want %v", name, a, got, bound)
		}
	}
}

// ack sends a DHCPACK from the external host (the LAN's server) and checks
// that the guest reads it from its tap.
func (l *learner) ack(dst, chaddr net.HardwareAddr, yiaddr net.IP, opts ...[]byte) {
	l.t.Helper()
	n := l.nonce()
	msg := spooftest.BOOTP(2, chaddr, nil, yiaddr, append([][]byte{spooftest.Opt(53, 5)}, opts...)...)
	dip := yiaddr
	if dst[0] == 0xff {
		dip = net.IPv4bcast
	}
	l.cap.Inject(l.t, netdev.UDP4(l.s.ExtMAC, dst, l.s.ExtIP, dip, 67, 68, append(msg, n...)))
	if !bytes.Equal(chaddr, l.mac) {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		f, err := l.tap.Read(deadline)
		if err != nil {
			break
		}
		if bytes.Contains(f, n) {
			return
		}
	}
	l.t.Errorf("the DHCPACK for %s did not reach the guest", yiaddr)
}

// elements lists the learned set: address -> timeout.
func elements(t *testing.T, host *nstest.NS, dom uuid.UUID, mac net.HardwareAddr) map[string]time.Duration {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(host.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	set := &nftables.Set{Table: &nftables.Table{Name: nft.TableName(dom), Family: nftables.TableFamilyNetdev},
		Name: nft.LearnedSetName(nft.ChainName(mac)), KeyType: nftables.TypeIPAddr}
	es, err := c.GetSetElements(set)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for _, e := range es {
		out[net.IP(e.Key).String()] = e.Timeout
	}
	return out
}
