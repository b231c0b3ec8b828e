package netdev

import "github.com/vishvananda/netlink"

// Handle is the netlink handle the Manager works through, for callers that
// need a read or an address change on a device it made.
func (m *Manager) Handle() *netlink.Handle { return m.h }
