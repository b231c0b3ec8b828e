package spooftest

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
)

// Guest is who the frames claim to be, and the peer they go to.
type Guest struct {
	MAC     net.HardwareAddr
	IP4     net.IP     // a fixed address of the guest
	IP6     netip.Addr // a fixed global address of the guest
	PeerMAC net.HardwareAddr
	PeerIP  net.IP
}

// Case is one forgery: a frame the filter must drop (counting it under
// Reason) and its honest twin, which differs only in what makes the
// forgery, and must arrive.
type Case struct {
	Name, Reason   string
	Forged, Honest func(nonce []byte) []byte
}

var (
	// Gateway is the LAN's router address the forgeries claim.
	Gateway   = net.ParseIP("192.0.2.1").To4()
	foreignIP = net.ParseIP("192.0.2.99").To4()
	foreign   = net.HardwareAddr{0x52, 0x54, 0x00, 0xee, 0xee, 0xee}
	allNodes  = netip.MustParseAddr("ff02::1")
	routerLL  = netip.MustParseAddr("fe80::1")
	global    = netip.MustParseAddr("2001:db8::")
)

// Cases lists every forgery of issue 15 and the guards around them.
func Cases(g Guest) []Case {
	ll := netdev.EUI64Addr(netip.MustParseAddr("fe80::"), g.MAC)
	slaac := netdev.EUI64Addr(global, g.MAC)
	bcast := netdev.Broadcast
	mc := netdev.MulticastMAC6(allNodes)
	icmp4 := func(src net.HardwareAddr, sip net.IP, typ byte) func([]byte) []byte {
		return func(n []byte) []byte { return icmp4Msg(src, g.PeerMAC, sip, g.PeerIP, typ, n) }
	}
	udp4 := func(sip net.IP, sport, dport uint16, op byte) func([]byte) []byte {
		return func(n []byte) []byte {
			return netdev.UDP4(g.MAC, bcast, sip, net.IPv4bcast, sport, dport, append(BOOTP(op, g.MAC, nil, foreignIP, Opt(53, 2)), n...))
		}
	}
	icmp6 := func(src netip.Addr, typ byte, body func([]byte) []byte) func([]byte) []byte {
		return func(n []byte) []byte { return netdev.ICMPv6(g.MAC, mc, src, allNodes, typ, 0, body(n)) }
	}
	echo := func(n []byte) []byte { return append([]byte{0x76, 0x74, 0, 1}, n...) }
	udp6 := func(dport uint16) func([]byte) []byte {
		return func(n []byte) []byte { return netdev.UDP6(g.MAC, mc, ll, allNodes, 1547, dport, n) }
	}
	arp := func(sha net.HardwareAddr, spa net.IP) func([]byte) []byte {
		return func(n []byte) []byte {
			return append(netdev.ARPReply(g.MAC, spa, g.PeerMAC, g.PeerIP)[:14+8], arpBody(sha, spa, g.PeerMAC, g.PeerIP, n)...)
		}
	}
	cs := []Case{
		{"forged IPv4 source", nft.ReasonIPv4Source, icmp4(g.MAC, foreignIP, 8), icmp4(g.MAC, g.IP4, 8)},
		{"foreign source MAC", nft.ReasonMAC, icmp4(foreign, g.IP4, 8), icmp4(g.MAC, g.IP4, 8)},
		{"ARP reply claiming the gateway", nft.ReasonARPIP, arp(g.MAC, Gateway), arp(g.MAC, g.IP4)},
		{"ARP with a foreign sender MAC", nft.ReasonARPMAC, arp(foreign, g.IP4), arp(g.MAC, g.IP4)},
		{"DHCP offer from port 1067 to 68", nft.ReasonDHCPServer, udp4(g.IP4, 1067, 68, 2), udp4(g.IP4, 1067, 1068, 2)},
		{"DHCP offer from port 67", nft.ReasonDHCPServer, udp4(g.IP4, 67, 1068, 2), udp4(g.IP4, 1067, 1068, 2)},
		{"BOOTREPLY to port 67", nft.ReasonDHCPServer, udp4(g.IP4, 68, 67, 2), udp4(g.IP4, 68, 67, 1)},
		{"ICMP redirect", nft.ReasonRedirect, icmp4(g.MAC, g.IP4, 5), icmp4(g.MAC, g.IP4, 8)},
		{"DHCPv6 reply from 1547", nft.ReasonDHCPServer, udp6(546), udp6(1546)},
		{"NA for fe80::1 with override", nft.ReasonNDTarget,
			icmp6(ll, 136, func(n []byte) []byte { return na(routerLL, g.MAC, n) }),
			icmp6(ll, 136, func(n []byte) []byte { return na(ll, g.MAC, n) })},
		{"NA with a foreign link-layer address", nft.ReasonNDLLAddr,
			icmp6(ll, 136, func(n []byte) []byte { return na(ll, foreign, n) }),
			icmp6(ll, 136, func(n []byte) []byte { return na(ll, g.MAC, n) })},
		{"NS with a foreign link-layer address", nft.ReasonNDLLAddr,
			icmp6(ll, 135, func(n []byte) []byte { return ns(routerLL, 1, foreign, n) }),
			icmp6(ll, 135, func(n []byte) []byte { return ns(routerLL, 1, g.MAC, n) })},
		{"DAD for a foreign address", nft.ReasonNDTarget,
			icmp6(netip.IPv6Unspecified(), 135, func(n []byte) []byte { return ns(routerLL, 0, nil, n) }),
			icmp6(netip.IPv6Unspecified(), 135, func(n []byte) []byte { return ns(ll, 0, nil, n) })},
		{"ICMPv6 redirect", nft.ReasonRedirect, icmp6(ll, 137, redirect), icmp6(ll, 128, echo)},
		{"router advertisement", nft.ReasonRA, icmp6(ll, 134, ra), icmp6(ll, 133, ra)},
		{"router renumbering", nft.ReasonRenumbering, icmp6(ll, 138, echo), icmp6(ll, 128, echo)},
		{"forged global IPv6 source", nft.ReasonIPv6Source, icmp6(netip.MustParseAddr("2001:db8::99"), 128, echo), icmp6(slaac, 128, echo)},
		{"forged link-local source", nft.ReasonIPv6Source, icmp6(routerLL, 128, echo), icmp6(ll, 128, echo)},
		{"VLAN-tagged frame", nft.ReasonEtherType, func(n []byte) []byte { return vlan(icmp4(g.MAC, g.IP4, 8)(n)) }, icmp4(g.MAC, g.IP4, 8)},
	}
	if g.IP6.IsValid() {
		cs = append(cs, Case{"listed global IPv6 source", nft.ReasonIPv6Source,
			icmp6(netip.MustParseAddr("2001:db8::98"), 128, echo), icmp6(g.IP6, 128, echo)})
	}
	return append(cs, fragmentCases(g, ll)...)
}

// fragmentCases: RA guard evasion (RFC 7113) and its honest twins.
func fragmentCases(g Guest, ll netip.Addr) []Case {
	mc := netdev.MulticastMAC6(allNodes)
	frag := func(payload []byte) []byte {
		return netdev.EthernetFrame(mc, g.MAC, netdev.EtherTypeIPv6, netdev.IPv6Packet(ll, allNodes, netdev.ProtoFrag6, payload))
	}
	raMsg := func(n []byte) []byte { return netdev.ICMPv6Message(ll, allNodes, 134, 0, ra(n)) }
	udpMsg := func(n []byte) []byte { return netdev.UDP6Datagram(ll, allNodes, 1547, 1546, n) }
	// A destination-options header that says it is 2 KiB long: the first
	// fragment ends inside it, the ICMPv6 header would be in a later one.
	longOpts := func(next byte, n []byte) []byte {
		h := append([]byte{next, 255, 1, 4, 0, 0, 0, 0}, n...)
		return h
	}
	shortOpts := func(next byte, rest []byte) []byte { return append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, rest...) }
	return []Case{
		{"first fragment carrying an RA", nft.ReasonIPv6Frag,
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoICMPv6, 0, true, 1, raMsg(n))) },
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoUDP, 0, true, 1, udpMsg(n))) }},
		{"later fragment of ICMPv6", nft.ReasonIPv6Frag,
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoICMPv6, 64, false, 2, n)) },
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoUDP, 64, false, 2, n)) }},
		{"RA hidden behind a header chain cut by fragmentation", nft.ReasonIPv6Frag,
			func(n []byte) []byte {
				return frag(netdev.Fragment6(netdev.ProtoDstOpt, 0, true, 3, longOpts(netdev.ProtoICMPv6, n)))
			},
			func(n []byte) []byte {
				return frag(netdev.Fragment6(netdev.ProtoDstOpt, 0, true, 3, shortOpts(netdev.ProtoUDP, udpMsg(n))))
			}},
		{"later fragment whose next header is an extension header", nft.ReasonIPv6Frag,
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoDstOpt, 64, false, 4, n)) },
			func(n []byte) []byte { return frag(netdev.Fragment6(netdev.ProtoUDP, 64, false, 4, n)) }},
	}
}

func icmp4Msg(src, dst net.HardwareAddr, sip, dip net.IP, typ byte, n []byte) []byte {
	f := netdev.ICMPEcho(src, dst, sip, dip, false, 0x7674, 1, n)
	if typ == 8 {
		return f
	}
	f[14+20] = typ
	binary.BigEndian.PutUint16(f[14+22:], 0)
	binary.BigEndian.PutUint16(f[14+22:], checksum(f[14+20:14+20+8+len(n)]))
	return f
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func arpBody(sha net.HardwareAddr, spa net.IP, tha net.HardwareAddr, tpa net.IP, n []byte) []byte {
	b := make([]byte, 20)
	copy(b[0:6], sha)
	copy(b[6:10], spa.To4())
	copy(b[10:16], tha)
	copy(b[16:20], tpa.To4())
	return append(b, n...)
}

// na: neighbour advertisement (override flag) for target with a target
// link-layer address option.
func na(target netip.Addr, lladdr net.HardwareAddr, n []byte) []byte {
	b := make([]byte, 20)
	b[0] = 0x20
	tg := target.As16()
	copy(b[4:20], tg[:])
	b = append(append(b, 2, 1), lladdr...)
	return append(b, n...)
}

// ns: neighbour solicitation for target, with a link-layer option of
// type opt (0: none).
func ns(target netip.Addr, opt byte, lladdr net.HardwareAddr, n []byte) []byte {
	b := make([]byte, 20)
	tg := target.As16()
	copy(b[4:20], tg[:])
	if opt != 0 {
		b = append(append(b, opt, 1), lladdr...)
	}
	return append(b, n...)
}

func ra(n []byte) []byte { return append(make([]byte, 12), n...) }

func redirect(n []byte) []byte {
	b := make([]byte, 36)
	t, d := routerLL.As16(), netip.MustParseAddr("2001:db8::2").As16()
	copy(b[4:20], t[:])
	copy(b[20:36], d[:])
	return append(b, n...)
}

func vlan(f []byte) []byte {
	out := append([]byte{}, f[:12]...)
	out = append(out, 0x81, 0x00, 0, 5)
	return append(out, f[12:]...)
}
