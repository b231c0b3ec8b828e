package netdev

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ParentInfo is what preflight checks want to know about a lower device.
type ParentInfo struct {
	Exists  bool
	Index   int
	Kind    string // link type ("veth", "device" for a plain NIC, ...)
	Up      bool   // administratively up (IFF_UP)
	Carrier bool   // lower layer up (IFF_LOWER_UP)
	MTU     int
	MAC     net.HardwareAddr
	// Master is the index of the device's master (a bridge or bond), 0 if none.
	Master int
}

// ParentStatus reports on a would-be parent device. A missing device is
// not an error: Exists is false.
func (m *Manager) ParentStatus(name string) (ParentInfo, error) {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return ParentInfo{}, nil
		}
		return ParentInfo{}, fmt.Errorf("look up %s: %w", name, err)
	}
	a := l.Attrs()
	return ParentInfo{
		Exists: true, Index: a.Index, Kind: l.Type(),
		Up:      a.Flags&net.FlagUp != 0,
		Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0,
		MTU:     a.MTU, MAC: a.HardwareAddr, Master: a.MasterIndex,
	}, nil
}

// ParentMAC returns the hardware address of the device called name.
func (m *Manager) ParentMAC(name string) (net.HardwareAddr, error) {
	p, err := m.ParentStatus(name)
	if err != nil {
		return nil, err
	}
	if !p.Exists {
		return nil, fmt.Errorf("%w: %s", ErrNoParent, name)
	}
	return p.MAC, nil
}

// MacvlanChildren lists the macvlan and macvtap devices whose lower device
// is parent, tagged or not, with their MACs (each uses one unicast filter
// slot of the parent's NIC). It only reads.
func (m *Manager) MacvlanChildren(parent string) ([]Device, error) {
	p, err := m.h.LinkByName(parent)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: %s", ErrNoParent, parent)
		}
		return nil, fmt.Errorf("look up %s: %w", parent, err)
	}
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{p.Attrs().Index: parent}
	var out []Device
	for _, l := range links {
		switch l.(type) {
		case *netlink.Macvlan, *netlink.Macvtap:
		default:
			continue
		}
		if l.Attrs().ParentIndex == p.Attrs().Index {
			out = append(out, m.device(l, names))
		}
	}
	return out, nil
}

// LinkMAC reads the MAC address of the host link called ifname, in the
// network namespace of the calling thread (provisioning for this host reads
// an ipvtap parent's MAC through it).
func LinkMAC(ifname string) (net.HardwareAddr, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}
