package netdev

import (
	"encoding/binary"
	"errors"
	"net"
)

// EtherTypes used by the frame helpers.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	// EtherTypeLocalExp1 is IEEE 802's "local experimental" EtherType 1,
	// for test and probe frames nothing else will claim.
	EtherTypeLocalExp1 = 0x88b5
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// EthernetFrame builds an untagged Ethernet II frame, padded to the 60-byte
// minimum (without FCS).
func EthernetFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	n := 14 + len(payload)
	if n < 60 {
		n = 60
	}
	b := make([]byte, n)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[14:], payload)
	return b
}

// ARP is an Ethernet/IPv4 ARP packet.
type ARP struct {
	Op                   uint16 // 1 request, 2 reply
	SenderMAC, TargetMAC net.HardwareAddr
	SenderIP, TargetIP   net.IP
}

func (a ARP) marshal() []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(b[2:4], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:8], a.Op)
	copy(b[8:14], a.SenderMAC)
	copy(b[14:18], a.SenderIP.To4())
	copy(b[18:24], a.TargetMAC)
	copy(b[24:28], a.TargetIP.To4())
	return b
}

// ARPRequest builds a broadcast "who has targetIP, tell srcIP".
func ARPRequest(srcMAC net.HardwareAddr, srcIP, targetIP net.IP) []byte {
	a := ARP{Op: 1, SenderMAC: srcMAC, SenderIP: srcIP, TargetMAC: make(net.HardwareAddr, 6), TargetIP: targetIP}
	return EthernetFrame(Broadcast, srcMAC, EtherTypeARP, a.marshal())
}

// ARPReply builds a unicast "srcIP is at srcMAC" to dstMAC/dstIP.
func ARPReply(srcMAC net.HardwareAddr, srcIP net.IP, dstMAC net.HardwareAddr, dstIP net.IP) []byte {
	a := ARP{Op: 2, SenderMAC: srcMAC, SenderIP: srcIP, TargetMAC: dstMAC, TargetIP: dstIP}
	return EthernetFrame(dstMAC, srcMAC, EtherTypeARP, a.marshal())
}

// IPv4 is the part of an IPv4 header the helpers use.
type IPv4 struct {
	Src, Dst net.IP
	Protocol uint8
	TTL      uint8
	Payload  []byte
}

// ICMP is an ICMP message; for echo, ID and Seq are set.
type ICMP struct {
	Type, Code uint8
	ID, Seq    uint16
	Data       []byte
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

func ipv4Packet(src, dst net.IP, proto uint8, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8] = 64
	b[9] = proto
	copy(b[12:16], src.To4())
	copy(b[16:20], dst.To4())
	binary.BigEndian.PutUint16(b[10:12], checksum(b[:20]))
	copy(b[20:], payload)
	return b
}

// ICMPEcho builds an Ethernet frame carrying an ICMP echo request
// (reply=false) or echo reply (reply=true).
func ICMPEcho(srcMAC, dstMAC net.HardwareAddr, srcIP, dstIP net.IP, reply bool, id, seq uint16, data []byte) []byte {
	m := make([]byte, 8+len(data))
	if !reply {
		m[0] = 8
	}
	binary.BigEndian.PutUint16(m[4:6], id)
	binary.BigEndian.PutUint16(m[6:8], seq)
	copy(m[8:], data)
	binary.BigEndian.PutUint16(m[2:4], checksum(m))
	return EthernetFrame(dstMAC, srcMAC, EtherTypeIPv4, ipv4Packet(srcIP, dstIP, 1, m))
}

// Frame is a parsed Ethernet frame; ARP, IPv4 and ICMP are set when the
// frame carries them.
type Frame struct {
	Dst, Src  net.HardwareAddr
	EtherType uint16
	Payload   []byte // after the Ethernet header (may include padding)
	ARP       *ARP
	IPv4      *IPv4
	ICMP      *ICMP
}

// ErrShortFrame: the frame is too short for what its headers claim.
var ErrShortFrame = errors.New("short frame")

// ParseFrame decodes an untagged Ethernet frame and, if present, an
// Ethernet/IPv4 ARP packet or an IPv4 header and ICMP message.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < 14 {
		return Frame{}, ErrShortFrame
	}
	f := Frame{
		Dst: net.HardwareAddr(append([]byte(nil), b[0:6]...)), Src: net.HardwareAddr(append([]byte(nil), b[6:12]...)),
		EtherType: binary.BigEndian.Uint16(b[12:14]), Payload: b[14:],
	}
	p := f.Payload
	switch f.EtherType {
	case EtherTypeARP:
		if len(p) < 28 || p[4] != 6 || p[5] != 4 {
			return f, ErrShortFrame
		}
		f.ARP = &ARP{
			Op:        binary.BigEndian.Uint16(p[6:8]),
			SenderMAC: net.HardwareAddr(append([]byte(nil), p[8:14]...)), SenderIP: net.IP(append([]byte(nil), p[14:18]...)),
			TargetMAC: net.HardwareAddr(append([]byte(nil), p[18:24]...)), TargetIP: net.IP(append([]byte(nil), p[24:28]...)),
		}
	case EtherTypeIPv4:
		if len(p) < 20 || p[0]>>4 != 4 {
			return f, ErrShortFrame
		}
		hl := int(p[0]&0x0f) * 4
		tl := int(binary.BigEndian.Uint16(p[2:4]))
		if hl < 20 || tl < hl || tl > len(p) {
			return f, ErrShortFrame
		}
		f.IPv4 = &IPv4{
			Src: net.IP(append([]byte(nil), p[12:16]...)), Dst: net.IP(append([]byte(nil), p[16:20]...)),
			Protocol: p[9], TTL: p[8], Payload: p[hl:tl],
		}
		if f.IPv4.Protocol == 1 && len(f.IPv4.Payload) >= 8 {
			m := f.IPv4.Payload
			f.ICMP = &ICMP{
				Type: m[0], Code: m[1],
				ID: binary.BigEndian.Uint16(m[4:6]), Seq: binary.BigEndian.Uint16(m[6:8]), Data: m[8:],
			}
		}
	}
	return f, nil
}
