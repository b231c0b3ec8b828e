package provision

import (
	"net"

	"github.com/vishvananda/netlink"
)

// LocalParentMAC reads a host link's MAC address through netlink.
func LocalParentMAC(ifname string) (net.HardwareAddr, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}
