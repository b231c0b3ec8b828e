package provision

import (
	"fmt"
	"net/netip"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/mac"
	"github.com/virtap/virtap/provision/policy"
)

// Fleet lets provisioning register MACs and lease pool addresses in a
// store shared by a fleet of hosts ([fleet] in the policy). Provisioning
// stays pure: the caller (virtap provision/define) supplies the calls.
type Fleet struct {
	// ClaimMAC registers mac as this domain's, fleet-wide. owner is empty
	// when the claim holds (also when the domain already had the MAC), else
	// it names the domain and host that own the MAC.
	ClaimMAC func(mac string) (owner string, err error)
	// Lease leases the plan's pool address fleet-wide (ipvtap networks with
	// addresses); the address goes into virtap's record, so the hook needs
	// no fleet store to start the guest.
	Lease func(p Plan) (netip.Addr, error)
}

// maxMACTries bounds how many derived MACs a fleet may refuse for one
// interface before provisioning gives up.
const maxMACTries = 64

// pickMAC keeps the interface's MAC, or derives one no other interface of
// the domain uses and, in a fleet, no other domain owns.
func (o *Options) pickMAC(p *Plan, seed string, prefix []byte, used map[string]bool) error {
	claim := func(m string) (string, error) { return "", nil }
	if o.Fleet != nil && o.Fleet.ClaimMAC != nil && p.Network.Kind != policy.KindIpvtap {
		claim = o.Fleet.ClaimMAC // ipvtap guests share their parent's MAC
	}
	if p.MAC != "" {
		owner, err := claim(p.MAC)
		if err != nil {
			return err
		}
		if owner != "" {
			return fmt.Errorf("mac %s is already used by %s in the fleet; remove <mac address='%s'/> and virtap derives a free one", p.MAC, owner, p.MAC)
		}
		used[p.MAC] = true
		return nil
	}
	var taken []string
	for attempt := 0; len(taken) < maxMACTries; attempt++ {
		m := mac.Derive(seed, p.Index, attempt, prefix).String()
		if used[m] {
			continue
		}
		owner, err := claim(m)
		if err != nil {
			return err
		}
		if owner != "" {
			taken = append(taken, m+" ("+owner+")")
			continue
		}
		p.MAC = m
		used[m] = true
		return nil
	}
	return fmt.Errorf("the fleet's MAC registry refused %d derived MACs (%v); shorten mac_prefix so more MACs are possible", len(taken), taken)
}

// lease takes the plan's fleet-wide pool address, when there is a fleet
// and the network leases from a pool.
// Without the lease call (a dry run such as --diff) an address leased
// before is kept from the record.
func (o *Options) lease(p *Plan, d *domain.Doc) error {
	nw := p.Network
	if nw.Kind != policy.KindIpvtap || nw.Addresses == "" {
		return nil
	}
	if o.Fleet == nil || o.Fleet.Lease == nil {
		if r, ok := d.Record.ByMAC(p.MAC); ok && o.Policy.Fleet != nil && r.Network == nw.Name {
			p.Leased = r.Leased
		}
		return nil
	}
	a, err := o.Fleet.Lease(*p)
	if err != nil {
		return err
	}
	p.Leased = a.String()
	return nil
}
