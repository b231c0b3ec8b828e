package netdev

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frame builders for UDP and IPv6, with every checksum right: a test that
// asserts a forged frame "did not arrive" proves something only if its
// honest twin, built the same way, does arrive.

// EtherTypeIPv6 is IPv6's EtherType.
const EtherTypeIPv6 = 0x86dd

// IP protocol numbers the builders use.
const (
	ProtoICMP   = 1
	ProtoUDP    = 17
	ProtoFrag6  = 44
	ProtoICMPv6 = 58
	ProtoDstOpt = 60
)

// UDP4 builds an Ethernet frame with an IPv4/UDP datagram (header and UDP
// checksums set).
func UDP4(srcMAC, dstMAC net.HardwareAddr, srcIP, dstIP net.IP, sport, dport uint16, payload []byte) []byte {
	u := udpHeader(sport, dport, payload)
	ph := make([]byte, 12)
	copy(ph[0:4], srcIP.To4())
	copy(ph[4:8], dstIP.To4())
	ph[9] = ProtoUDP
	binary.BigEndian.PutUint16(ph[10:12], uint16(len(u)))
	sum := checksum(append(ph, u...))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], sum)
	return EthernetFrame(dstMAC, srcMAC, EtherTypeIPv4, ipv4Packet(srcIP, dstIP, ProtoUDP, u))
}

func udpHeader(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(8+len(payload)))
	return append(u, payload...)
}

// sum6 is the upper-layer checksum of an IPv6 packet (RFC 8200 8.1).
func sum6(src, dst netip.Addr, proto uint8, upper []byte) uint16 {
	ph := make([]byte, 40, 40+len(upper))
	s, d := src.As16(), dst.As16()
	copy(ph[0:16], s[:])
	copy(ph[16:32], d[:])
	binary.BigEndian.PutUint32(ph[32:36], uint32(len(upper)))
	ph[39] = proto
	return checksum(append(ph, upper...))
}

// IPv6Packet is an IPv6 header (hop limit 255, as ND needs) in front of
// payload, whose first header is next.
func IPv6Packet(src, dst netip.Addr, next uint8, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(len(payload)))
	h[6], h[7] = next, 255
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, payload...)
}

// ICMPv6Message is an ICMPv6 message (checksum set) of type and code with
// body after the 4-byte header.
func ICMPv6Message(src, dst netip.Addr, typ, code uint8, body []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:4], sum6(src, dst, ProtoICMPv6, m))
	return m
}

// ICMPv6 builds an Ethernet frame with an ICMPv6 message.
func ICMPv6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, typ, code uint8, body []byte) []byte {
	return EthernetFrame(dstMAC, srcMAC, EtherTypeIPv6, IPv6Packet(src, dst, ProtoICMPv6, ICMPv6Message(src, dst, typ, code, body)))
}

// UDP6Datagram is a UDP datagram with its IPv6 checksum.
func UDP6Datagram(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := udpHeader(sport, dport, payload)
	sum := sum6(src, dst, ProtoUDP, u)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], sum)
	return u
}

// UDP6 builds an Ethernet frame with an IPv6/UDP datagram.
func UDP6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return EthernetFrame(dstMAC, srcMAC, EtherTypeIPv6, IPv6Packet(src, dst, ProtoUDP, UDP6Datagram(src, dst, sport, dport, payload)))
}

// Fragment6 is an IPv6 fragment header (next, offset in bytes, a multiple
// of 8, more fragments) followed by data.
func Fragment6(next uint8, offset int, more bool, id uint32, data []byte) []byte {
	h := make([]byte, 8, 8+len(data))
	h[0] = next
	off := uint16(offset) &^ 7
	if more {
		off |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], off)
	binary.BigEndian.PutUint32(h[4:8], id)
	return append(h, data...)
}

// EUI64Addr is the address with prefix's upper 64 bits and the modified
// EUI-64 interface ID of mac (SLAAC, default link-local).
func EUI64Addr(prefix netip.Addr, mac net.HardwareAddr) netip.Addr {
	b := prefix.As16()
	copy(b[8:], []byte{mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	return netip.AddrFrom16(b)
}

// MulticastMAC6 is the Ethernet address of an IPv6 multicast group.
func MulticastMAC6(group netip.Addr) net.HardwareAddr {
	b := group.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}
