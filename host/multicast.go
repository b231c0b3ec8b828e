package host

import (
	"errors"
	"fmt"

	"github.com/virtap/virtap/provision/policy"
)

// IPv6 on macvtap without trusting the guest's RX filter: a macvtap passes
// a multicast frame from the parent to the guest only when the group's MAC
// is in the macvtap's own multicast list, and libvirt copies the guest's
// list there only with trustGuestRxFilters (which also lets the guest
// change its MAC). So neighbour solicitations to a guest address's
// solicited-node group (33:33:ff:xx:xx:xx) never reach the guest, and its
// IPv6 neighbours cannot resolve it (measured: host/multicast_test.go). The
// fix LXD also uses: ALLMULTI on the host side of the macvtap, which fills
// macvlan's multicast filter. The guest then receives all multicast of the
// segment, the same as with a trusted filter that listens to everything,
// and its MAC stays fixed.

// allowMulticast sets ALLMULTI on the guest's macvtaps that libvirt made
// (named in the live XML), after checking each is the guest's.
func (r *Realiser) allowMulticast(g *Guest) error {
	if g.Doc == nil || g.Doc.Record == nil {
		return nil
	}
	var errs []error
	for _, ir := range g.Doc.Record.Interfaces {
		if ir.Kind != policy.KindMacvtap || ir.Mode == "passthrough" {
			continue
		}
		device := liveTarget(g, ir.MAC)
		if device == "" {
			continue // not named yet (start): started does it
		}
		if err := r.checkFilterDevice(g, ir, device); err != nil {
			errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: "multicast: " + err.Error()})
			continue
		}
		l, err := r.Net.Handle().LinkByName(device)
		if err == nil {
			err = r.Net.Handle().LinkSetAllmulticastOn(l)
		}
		if err != nil {
			errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("multicast: allmulti on %s: %v", device, err)})
		}
	}
	return errors.Join(errs...)
}
