package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/virtap/virtap/internal/ifname"
)

// parentConflicts finds networks that one host cannot run side by side on
// one parent NIC:
//   - macvtap and ipvtap: a NIC carries macvlan-type or ipvlan-type
//     devices, never both (the kernel answers EBUSY);
//   - ipvtap networks of different modes: ipvlan's mode belongs to the
//     parent, so creating an l3 ipvtap switches the parent's l2 ones to l3.
//
// Networks with a vlan sit on PARENT.N: they conflict only with networks
// on the same VLAN device.
func (p *Policy) parentConflicts(host string, nets []*Network) Errors {
	byParent := map[string][]*Network{}
	for _, n := range nets {
		if (n.Kind == KindMacvtap || n.Kind == KindIpvtap) && n.Parent != "" {
			// A network with a vlan sits on PARENT.N, its own lower device.
			lower := n.Parent
			if n.VLAN > 0 && (n.Kind == KindIpvtap || n.Mode != "passthrough") {
				lower = ifname.VLAN(n.Parent, n.VLAN)
			}
			byParent[lower] = append(byParent[lower], n)
		}
	}
	parents := make([]string, 0, len(byParent))
	for parent := range byParent {
		parents = append(parents, parent)
	}
	sort.Strings(parents)
	var errs Errors
	for _, parent := range parents {
		var macvtap, ipvtap *Network
		for _, n := range byParent[parent] { // sorted by name
			switch {
			case n.Kind == KindMacvtap && macvtap == nil:
				macvtap = n
			case n.Kind == KindIpvtap && ipvtap == nil:
				ipvtap = n
			case n.Kind == KindIpvtap && n.Mode != ipvtap.Mode:
				errs = append(errs, p.errAt(host, n.Name, "mode", fmt.Sprintf(
					"ipvtap networks %q (mode %s) and %q (mode %s) share parent %s, and ipvlan's mode belongs to the parent: creating one switches every ipvtap on it; give both the same mode or give one another parent",
					ipvtap.Name, ipvtap.Mode, n.Name, n.Mode, parent)))
			}
		}
		if macvtap != nil && ipvtap != nil {
			errs = append(errs, p.errAt(host, ipvtap.Name, "parent", fmt.Sprintf(
				"macvtap network %q and ipvtap network %q share parent %s, and a NIC carries macvtap or ipvtap devices, never both (the kernel refuses the second with EBUSY); give one of them another parent",
				macvtap.Name, ipvtap.Name, parent)))
		}
	}
	return errs
}

// errAt is an error about key of network name as host sees it, at the line
// where that key was set (the host's section wins).
func (p *Policy) errAt(host, name, key, msg string) *Error {
	k := []string{"hosts", host, "networks", name, key}
	if _, ok := p.loc[strings.Join(k, ".")]; !ok {
		k = []string{"networks", name, key}
	}
	return &Error{File: p.File, Line: p.loc.line(k...), Key: strings.Join(k, "."), Msg: msg}
}
