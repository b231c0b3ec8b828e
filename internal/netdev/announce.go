package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Announcements: when an address moves to a new MAC (an ipvtap guest on a
// new host, or after prepare), neighbours keep the old entry until it goes
// stale. A gratuitous ARP (IPv4) and an unsolicited neighbour
// advertisement with the override flag (IPv6, RFC 4861 7.2.6) make them
// update it at once.

// GratuitousARP is a broadcast ARP request for ip from ip at mac (the form
// Linux's arping -U and QEMU send; every stack updates an existing entry).
func GratuitousARP(mac net.HardwareAddr, ip net.IP) []byte {
	a := ARP{Op: 1, SenderMAC: mac, SenderIP: ip.To4(), TargetMAC: make(net.HardwareAddr, 6), TargetIP: ip.To4()}
	return EthernetFrame(Broadcast, mac, EtherTypeARP, a.marshal())
}

// allNodes is ff02::1, where unsolicited advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// UnsolicitedNA is a neighbour advertisement for addr at mac to all nodes,
// override set, solicited not, with the target link-layer address option.
func UnsolicitedNA(mac net.HardwareAddr, addr netip.Addr) []byte {
	t := addr.As16()
	body := make([]byte, 0, 28)
	body = append(body, 0x20, 0, 0, 0) // O flag
	body = append(body, t[:]...)
	body = append(body, 2, 1) // option: target link-layer address, 8 bytes
	body = append(body, mac...)
	return ICMPv6(mac, MulticastMAC6(allNodes), addr, allNodes, 136, 0, body)
}

// AnnounceFrames are the announcements for addrs at mac: a gratuitous ARP
// for each IPv4 address, an unsolicited NA for each IPv6 one.
func AnnounceFrames(mac net.HardwareAddr, addrs []netip.Addr) [][]byte {
	var out [][]byte
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			out = append(out, GratuitousARP(mac, a.AsSlice()))
		} else if a.Is6() && !a.IsLinkLocalUnicast() {
			out = append(out, UnsolicitedNA(mac, a))
		}
	}
	return out
}

// SendFrames writes raw Ethernet frames out of the link with index ifindex
// through an AF_PACKET socket, in the network namespace of the calling
// thread (the hook's: the host's). The frames leave as they are, without
// passing the host's IP stack.
func SendFrames(ifindex int, frames [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	// Protocol 0: a socket that only sends receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	var errs []error
	for _, f := range frames {
		sa := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(uint16(f[12])<<8 | uint16(f[13])), Halen: 6}
		copy(sa.Addr[:], f[0:6])
		if err := unix.Sendto(fd, f, 0, sa); err != nil {
			errs = append(errs, fmt.Errorf("send on ifindex %d: %w", ifindex, err))
		}
	}
	return errors.Join(errs...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Announce sends the announcements for addrs out of the device called
// name, from that device's MAC (for ipvtap: the parent's, which is the
// guest's).
func (m *Manager) Announce(name string, addrs []netip.Addr) error {
	l, err := m.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	return SendFrames(l.Attrs().Index, AnnounceFrames(l.Attrs().HardwareAddr, addrs))
}
