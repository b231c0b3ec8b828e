package host

import (
	"errors"
	"fmt"

	"github.com/virtap/virtap/provision/policy"
)

// Announce sends a gratuitous ARP (IPv4) or an unsolicited neighbour
// advertisement (IPv6) for every address on the guest's ipvtap devices
// (the leased one and any extra, nested address) out of the device each
// sits on: after prepare and when the guest has started (on the new host
// after an incoming migration), so that neighbours move the addresses to
// this host's MAC at once instead of when their entries go stale. It works
// in the calling thread's network namespace (the hook's: the host's). A
// failure only delays reachability, so callers log it.
func (r *Realiser) Announce(g *Guest) error {
	if g.Doc == nil || g.Doc.Record == nil {
		return nil
	}
	var errs []error
	for _, ir := range g.Doc.Record.Interfaces {
		if ir.Kind != policy.KindIpvtap || ir.Device == "" {
			continue
		}
		addrs, err := GuestAddresses(r.Net.Handle(), ir.Device)
		if err != nil {
			errs = append(errs, fmt.Errorf("addresses of %s: %w", ir.Device, err))
			continue
		}
		if len(addrs) == 0 {
			continue
		}
		lower := lowerOf(ir)
		if err := r.Net.Announce(lower, addrs); err != nil {
			errs = append(errs, fmt.Errorf("announce %v on %s: %w", addrs, lower, err))
			continue
		}
		r.Log.Named("ipvtap").Debug("addresses announced", "domain", g.Name, "device", lower, "addrs", fmt.Sprint(addrs))
	}
	return errors.Join(errs...)
}

// Reach brings a running guest's reach up to date after its addresses
// changed (virtap addr add): on-link answers for every address now on its
// ipvtap devices (on_link networks), then the announcements. Answers for
// a removed address go with the guest (or its network's last guest).
func (r *Realiser) Reach(g *Guest) error {
	if g.Doc == nil || g.Doc.Record == nil {
		return nil
	}
	var errs []error
	for _, ir := range g.Doc.Record.Interfaces {
		if usesOnLink(ir) && ir.Device != "" {
			errs = append(errs, r.prepareOnLink(g, ir, &revert{}))
		}
	}
	return errors.Join(append(errs, r.Announce(g))...)
}
