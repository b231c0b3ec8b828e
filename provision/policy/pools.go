package policy

import (
	"fmt"
	"strings"
)

// pools refuses passthrough networks that share a lower device: the store
// reserves per pool, so two pools listing one device (or one PF) could
// both hand it to a guest. Checked for every host the file names and for
// any other host; a device named by two pools is reported once per pair.
// The policy cannot see which VFs a PF has (that is sysfs, at run time),
// so a devices list naming a PF that another pool uses as pf, or two
// pools on one PF, is what is caught here; virtap doctor and the hook
// check VF membership on the host.
func (ps *parser) pools(p *Policy) {
	seen := map[string]bool{}
	for _, h := range append([]string{""}, p.Hosts()...) {
		owner := map[string]*Network{} // lower device or PF -> first pool naming it
		for _, name := range p.names(h) {
			n, err := p.resolve(h, name)
			if err != nil || n.Kind != KindPassthrough {
				continue
			}
			for _, dev := range poolLowers(n) {
				first, ok := owner[dev]
				if !ok {
					owner[dev] = n
					continue
				}
				msg := fmt.Sprintf("%q is also in passthrough network %q (%s); a device may be in one pool only, or both pools could hand it out; remove it from one of them",
					dev, first.Name, ps.where(p, first))
				if !seen[first.Name+"\x00"+n.Name+"\x00"+dev] {
					seen[first.Name+"\x00"+n.Name+"\x00"+dev] = true
					ps.add(p.keyOf(h, n.Name, poolKey(n)), "%s", msg)
				}
			}
		}
	}
}

// poolLowers is what a pool hands out, by name: its devices, or its PF
// (standing for all of the PF's VFs).
func poolLowers(n *Network) []string {
	if n.PF != "" {
		return []string{n.PF}
	}
	return n.Devices
}

func poolKey(n *Network) string {
	if n.PF != "" {
		return "pf"
	}
	return "devices"
}

// where is "FILE:LINE: KEY" of a pool's pf or devices key.
func (ps *parser) where(p *Policy, n *Network) string {
	k := p.keyOf(n.Host, n.Name, poolKey(n))
	return fmt.Sprintf("%s:%d: %s", ps.file, ps.loc.line(k...), strings.Join(k, "."))
}
