package host

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
)

// Claim is an address (or prefix) a guest interface holds on a network:
// what `virtap addr add` must not give to another guest.
type Claim struct {
	Domain  string
	UUID    string
	MAC     string
	Network string
	What    string // address, fixed, leased, extra (policy), added (run time), lease (store)
	Prefix  netip.Prefix
}

// ClaimsOfRecord lists what a domain's record claims.
func ClaimsOfRecord(name string, u uuid.UUID, rec *domain.Record) []Claim {
	if rec == nil {
		return nil
	}
	var out []Claim
	for _, ir := range rec.Interfaces {
		add := func(what, list string) {
			for _, f := range strings.Fields(list) {
				if p, err := ParsePrefixes(f); err == nil {
					out = append(out, Claim{Domain: name, UUID: u.String(), MAC: strings.ToLower(ir.MAC), Network: ir.Network, What: what, Prefix: p[0]})
				}
			}
		}
		add("address", ir.Address)
		add("leased", ir.Leased)
		add("fixed", ir.Fixed)
		add("extra", ir.Extra)
		add("added", ir.Added)
	}
	return out
}

// ClaimsOfStore lists the leases of a network and every run-time extra in
// the store.
func ClaimsOfStore(st *store.Store, network string) ([]Claim, error) {
	ls, err := st.Leases(network)
	if err != nil {
		return nil, err
	}
	var out []Claim
	for _, l := range ls {
		if l.Addr.IsValid() {
			out = append(out, Claim{UUID: l.Holder.UUID, MAC: l.Holder.MAC, Network: network, What: "lease", Prefix: netip.PrefixFrom(l.Addr, l.Addr.BitLen())})
		}
	}
	es, err := st.AllExtras()
	for _, e := range es {
		ps, _ := ParsePrefixes(strings.Join(e.Prefixes, " "))
		for _, p := range ps {
			out = append(out, Claim{Domain: e.Name, UUID: e.UUID, MAC: e.MAC, Network: e.Network, What: "added", Prefix: p})
		}
	}
	return out, err
}

// Conflict reports the first claim of another interface on network that
// overlaps p (claims of the interface self/mac itself are fine).
func Conflict(p netip.Prefix, network, self, mac string, claims []Claim) error {
	for _, c := range claims {
		if c.Network != network || (c.UUID == self && strings.EqualFold(c.MAC, mac)) {
			continue
		}
		if c.Prefix.Overlaps(p) {
			who := c.UUID
			if c.Domain != "" {
				who = fmt.Sprintf("%s (%s)", c.Domain, c.UUID)
			}
			return fmt.Errorf("%s overlaps %s, already guest %s's (%s, interface %s on network %q); pick another address, or take it from that guest first",
				p, c.Prefix, who, c.What, c.MAC, network)
		}
	}
	return nil
}
