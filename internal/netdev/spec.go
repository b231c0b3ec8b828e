package netdev

import (
	"fmt"
	"net"

	"github.com/virtap/virtap/internal/ifname"
	"github.com/vishvananda/netlink"
)

// Spec describes a device to create.
type Spec struct {
	Name   string // at most 15 characters
	Kind   string // "macvtap" | "macvlan" | "ipvtap" | "ipvlan" | "vlan"
	Parent string // lower device
	// Mode: macvtap/macvlan "bridge"|"vepa"|"private"|"passthrough";
	// ipvtap/ipvlan "l2"|"l3"|"l3s". Required: no kernel default is used.
	Mode string
	// Flag: ipvtap/ipvlan only, "bridge" (default)|"private"|"vepa".
	Flag   string
	VLANID int              // vlan only: the 802.1Q VLAN ID, 1 to 4094
	MAC    net.HardwareAddr // optional; macvtap/macvlan only
	MTU    int              // 0: inherit
	TxQLen int              // 0: kernel default
	Tag    Tag              // required
	Up     bool
	// Index optionally asks for this interface index (0: kernel picks).
	// Mainly for tests: /dev/tap<index> lives in the global devtmpfs, so
	// macvtaps in different namespaces with equal indexes collide there.
	Index int
}

// Validate checks the spec without touching the system.
func (s Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if err := ValidateName(s.Parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	if err := s.Tag.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	switch s.Kind {
	case KindMacvtap, KindMacvlan:
		if _, ok := macvlanModes[s.Mode]; !ok {
			return fmt.Errorf("%w: %s mode %q: want bridge, vepa, private or passthrough", ErrInvalidSpec, s.Kind, s.Mode)
		}
		if s.Flag != "" {
			return fmt.Errorf("%w: flag %q is for ipvtap/ipvlan only", ErrInvalidSpec, s.Flag)
		}
		if s.MAC != nil && (len(s.MAC) != 6 || s.MAC[0]&1 == 1) {
			return fmt.Errorf("%w: MAC %s is not a unicast Ethernet address", ErrInvalidSpec, s.MAC)
		}
	case KindIPvtap, KindIPvlan:
		if _, ok := ipvlanModes[s.Mode]; !ok {
			return fmt.Errorf("%w: %s mode %q: want l2, l3 or l3s", ErrInvalidSpec, s.Kind, s.Mode)
		}
		if _, ok := ipvlanFlags[s.Flag]; s.Flag != "" && !ok {
			return fmt.Errorf("%w: %s flag %q: want bridge, private or vepa", ErrInvalidSpec, s.Kind, s.Flag)
		}
		if s.MAC != nil {
			return fmt.Errorf("%w: %s shares its parent's MAC; MAC must be empty", ErrInvalidSpec, s.Kind)
		}
	case KindVLAN:
		if s.Mode != "" || s.Flag != "" || s.MAC != nil {
			return fmt.Errorf("%w: a vlan device takes no mode, flag or MAC", ErrInvalidSpec)
		}
		if s.VLANID < 1 || s.VLANID > 4094 {
			return fmt.Errorf("%w: vlan id %d: want 1 to 4094", ErrInvalidSpec, s.VLANID)
		}
	default:
		return fmt.Errorf("%w: kind %q: want macvtap, macvlan, ipvtap, ipvlan or vlan", ErrInvalidSpec, s.Kind)
	}
	if s.Kind != KindVLAN && s.VLANID != 0 {
		return fmt.Errorf("%w: vlan id is for kind vlan only", ErrInvalidSpec)
	}
	if s.MTU < 0 || s.TxQLen < 0 || s.Index < 0 {
		return fmt.Errorf("%w: negative MTU, txqlen or index", ErrInvalidSpec)
	}
	return nil
}

// ValidateName checks a Linux interface name (ifname.Validate); the error
// wraps ErrInvalidSpec.
func ValidateName(name string) error {
	if err := ifname.Validate(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	return nil
}

var macvlanModes = map[string]netlink.MacvlanMode{
	"bridge":      netlink.MACVLAN_MODE_BRIDGE,
	"vepa":        netlink.MACVLAN_MODE_VEPA,
	"private":     netlink.MACVLAN_MODE_PRIVATE,
	"passthrough": netlink.MACVLAN_MODE_PASSTHRU, // the kernel's "passthru"
}

var ipvlanModes = map[string]netlink.IPVlanMode{
	"l2": netlink.IPVLAN_MODE_L2, "l3": netlink.IPVLAN_MODE_L3, "l3s": netlink.IPVLAN_MODE_L3S,
}

var ipvlanFlags = map[string]netlink.IPVlanFlag{
	"bridge": netlink.IPVLAN_FLAG_BRIDGE, "private": netlink.IPVLAN_FLAG_PRIVATE, "vepa": netlink.IPVLAN_FLAG_VEPA,
}

func macvlanModeName(m netlink.MacvlanMode) string {
	for k, v := range macvlanModes {
		if v == m {
			return k
		}
	}
	if m == netlink.MACVLAN_MODE_SOURCE {
		return "source"
	}
	return ""
}

func ipvlanModeName(m netlink.IPVlanMode) string {
	for k, v := range ipvlanModes {
		if v == m {
			return k
		}
	}
	return ""
}

func ipvlanFlagName(f netlink.IPVlanFlag) string {
	for k, v := range ipvlanFlags {
		if v == f {
			return k
		}
	}
	return ""
}
