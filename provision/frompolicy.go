package provision

import (
	"fmt"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// FromPolicy rebuilds a domain's virtap record from the current policy.
// The record in the XML is written by whoever can define the domain; it
// only says which policy network each interface (by MAC) joins and which
// device name it got. Every value that matters for security (kind, trust,
// parent, mode, pool members, VLAN, spoofchk, host_access, addresses) is
// taken from the policy as host sees it now, with the guest's own
// [guests.X] override. A device name must be the one virtap derives for
// this guest and MAC. Anything the policy does not back is an error that
// names the interface and the fix.
func FromPolicy(d *domain.Doc, pol *policy.Policy, host string) (*domain.Record, error) {
	if d.Record == nil {
		return nil, nil
	}
	if err := pol.CheckGuest(d.UUID, d.Name); err != nil {
		return nil, err
	}
	out := &domain.Record{XMLName: d.Record.XMLName, Host: d.Record.Host}
	pv := &provisioner{d: d, opts: Options{Policy: pol, Host: host}}
	for _, ir := range d.Record.Interfaces {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("virtap record of domain %q, interface %s: %s", d.Name, ir.MAC, fmt.Sprintf(format, args...))
		}
		nw, ok, err := pol.Network(host, ir.Network)
		if err != nil {
			return nil, fail("network %q: %v", ir.Network, err)
		}
		if !ok {
			return nil, fail("network %q is not in %s (for host %q); add it to the policy or provision the domain again", ir.Network, pol.File, host)
		}
		nw = pv.forGuest(nw)
		if nw.Kind != ir.Kind {
			return nil, fail("network %q is kind %q in %s, but the domain was provisioned as %q; provision the domain again", ir.Network, nw.Kind, pol.File, ir.Kind)
		}
		p := &Plan{Network: nw, MAC: ir.MAC}
		if needsDevice(nw) {
			if !derivedDevice(nw, d, ir.MAC, ir.Device) {
				return nil, fail("device %q is not the name virtap gives this guest's interface on network %q; provision the domain again", ir.Device, ir.Network)
			}
			p.Device = ir.Device
		} else if ir.Device != "" {
			return nil, fail("network %q (kind %q) has no device of virtap's, yet the record names %q; provision the domain again", ir.Network, nw.Kind, ir.Device)
		}
		guestAddresses(p, pol, d)
		// A fleet lease is a fact about this domain, not a policy value: it
		// stays, and the hook checks it against the current pool (host/fleet.go).
		p.Leased = ir.Leased
		if pol.Fleet != nil && nw.Kind == policy.KindIpvtap && nw.Addresses != "" && p.Leased == "" {
			// This host's own store would hand out an address another host
			// of the fleet may hold: the lease must come from etcd, at
			// define time.
			return nil, fail("network %q leases its addresses fleet-wide ([fleet] in %s), but the record has no fleet lease (provisioned before [fleet]?); run 'virtap define --domain %s' to lease one", ir.Network, pol.File, d.Name)
		}
		r := record(p, d)
		if err := checkAdded(nw, r); err != nil {
			return nil, fail("%v", err)
		}
		out.Interfaces = append(out.Interfaces, r)
	}
	return out, nil
}

// needsDevice: the kinds whose host device virtap creates itself.
func needsDevice(nw *policy.Network) bool {
	return nw.Kind == policy.KindIpvtap || nw.Kind == policy.KindPassthrough && nw.Mode != policy.PoolModeHostdev
}

// derivedDevice says whether dev is DeviceName for this guest: seeded by
// its UUID, or by its name when it was provisioned before it had one.
func derivedDevice(nw *policy.Network, d *domain.Doc, mac, dev string) bool {
	for _, seed := range []string{d.UUID, "name:" + d.Name} {
		if seed != "" && seed != "name:" && dev == DeviceName(nw.Kind, seed, mac, nw.Name) {
			return true
		}
	}
	return false
}
