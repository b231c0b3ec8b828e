package netdev

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

func TestAnnounceFrames(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x21, 0x03, 0x01}
	v4, v6 := netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("2001:db8:21::20")
	fs := AnnounceFrames(mac, []netip.Addr{v4, v6, netip.MustParseAddr("fe80::1")})
	if len(fs) != 2 {
		t.Fatalf("%d frames, want a GARP and an NA (none for link-local)", len(fs))
	}
	f, err := ParseFrame(fs[0])
	if err != nil || f.ARP == nil || f.ARP.Op != 1 || !bytes.Equal(f.Dst, Broadcast) || !bytes.Equal(f.ARP.SenderMAC, mac) ||
		!f.ARP.SenderIP.Equal(v4.AsSlice()) || !f.ARP.TargetIP.Equal(v4.AsSlice()) {
		t.Errorf("gratuitous ARP: %+v %v", f.ARP, err)
	}
	na := fs[1]
	if binary.BigEndian.Uint16(na[12:14]) != EtherTypeIPv6 || !bytes.Equal(na[0:6], []byte{0x33, 0x33, 0, 0, 0, 1}) {
		t.Fatalf("NA Ethernet header % x", na[:14])
	}
	ip6 := na[14:]
	plen := int(binary.BigEndian.Uint16(ip6[4:6]))
	icmp := ip6[40 : 40+plen]
	src, _ := netip.AddrFromSlice(ip6[8:24])
	dst, _ := netip.AddrFromSlice(ip6[24:40])
	tgt, _ := netip.AddrFromSlice(icmp[8:24])
	if ip6[6] != ProtoICMPv6 || ip6[7] != 255 || icmp[0] != 136 || icmp[4] != 0x20 || tgt != v6 || src != v6 || dst != allNodes {
		t.Errorf("NA: next %d hop %d type %d flags %#x target %s src %s dst %s", ip6[6], ip6[7], icmp[0], icmp[4], tgt, src, dst)
	}
	if !bytes.Equal(icmp[24:26], []byte{2, 1}) || !bytes.Equal(icmp[26:32], mac) {
		t.Errorf("NA option % x, want the target link-layer address %s", icmp[24:], mac)
	}
	if sum6(src, dst, ProtoICMPv6, icmp) != 0 {
		t.Errorf("NA checksum does not verify")
	}
}
