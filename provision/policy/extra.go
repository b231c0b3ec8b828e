package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/virtap/virtap/internal/ipam"
)

// Extra addresses (issue 16): addresses a guest interface may use besides
// its own, for containers nested in the guest (ipvlan inside the VM: one
// MAC, many IPs). Fixed per guest and network in the policy
// ([guests.NAME] extra_addresses), or added at run time (virtap addr add).

// DefaultMaxExtraAddresses caps the extra addresses of one interface when
// the network sets no max_extra_addresses: a /28 or a /124 at most.
const DefaultMaxExtraAddresses = 16

// ParseExtra reads "ADDRESS" or "ADDRESS/PREFIX" (a single address is a
// /32 or /128). The prefix is returned masked; an address with host bits
// set under its prefix is an error, so that "192.0.2.50/28" is not
// silently 192.0.2.48/28.
func ParseExtra(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%q is not an address or prefix such as \"192.0.2.50\", \"192.0.2.48/28\" or \"2001:db8::50\"", s)
		}
		if p.Masked() != p {
			return p, fmt.Errorf("%q has host bits set; the prefix is %s", s, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("%q is not an address or prefix such as \"192.0.2.50\", \"192.0.2.48/28\" or \"2001:db8::50\"", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-(p.Addr().BitLen()-p.Addr().Unmap().BitLen()))
	a := p.Addr()
	if !a.IsGlobalUnicast() && !a.IsPrivate() || a.IsLinkLocalUnicast() {
		return p, fmt.Errorf("%s cannot be a guest's source address (unspecified, loopback, link-local, multicast or broadcast)", s)
	}
	return p, nil
}

// ExtraSize is how many addresses p covers (huge prefixes count as 2^30).
func ExtraSize(p netip.Prefix) int {
	host := p.Addr().BitLen() - p.Bits()
	if host > 30 {
		return 1 << 30
	}
	return 1 << host
}

// CheckExtra checks an extra address or prefix against the network: a
// macvtap or ipvtap network, no more addresses than max_extra_addresses;
// on a network with an address pool, inside its CIDR, outside its dynamic
// range and not its gateway.
func (n *Network) CheckExtra(p netip.Prefix) error {
	if n.Kind != KindMacvtap && n.Kind != KindIpvtap {
		return fmt.Errorf("network %q is a %s network; extra addresses need a macvtap or ipvtap network", n.Name, n.Kind)
	}
	max := n.MaxExtraAddresses
	if ExtraSize(p) > max {
		return fmt.Errorf("%s covers %d addresses, more than network %q's max_extra_addresses = %d; give a smaller prefix or raise max_extra_addresses", p, ExtraSize(p), n.Name, max)
	}
	if n.Addresses == "" {
		return nil
	}
	pool, err := netip.ParsePrefix(n.Addresses)
	if err != nil {
		return err
	}
	if !pool.Contains(p.Addr()) || pool.Bits() > p.Bits() {
		return fmt.Errorf("%s is outside network %q's addresses %s", p, n.Name, n.Addresses)
	}
	last := lastOf(p)
	if n.Range != "" {
		if first, end, err := ipam.ParseRange(n.Range); err == nil && !(last.Less(first) || end.Less(p.Addr())) {
			return fmt.Errorf("%s overlaps network %q's dynamic range %s, whose addresses are leased to guests; give addresses outside it", p, n.Name, n.Range)
		}
	}
	if g, err := netip.ParseAddr(n.Gateway); err == nil && p.Contains(g) {
		return fmt.Errorf("%s contains network %q's gateway %s", p, n.Name, g)
	}
	return nil
}

// lastOf is the last address of a prefix.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Expand lists the addresses of a prefix (callers cap its size first).
func Expand(p netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for a := p.Masked().Addr(); p.Contains(a); a = a.Next() {
		out = append(out, a)
		if !a.Next().IsValid() {
			break
		}
	}
	return out
}

// extraAddresses checks one guest's policy-fixed extra addresses on
// network nw as the file's [networks] section defines it.
func (ps *parser) extraAddresses(key []string, nw string, as AddrList) {
	base, ok := ps.raw.Networks[nw]
	if !ok || base.Kind == nil {
		ps.add(key, "extra addresses need a macvtap or ipvtap network %q in [networks]", nw)
		return
	}
	n := &Network{Name: nw, Kind: *base.Kind, Addresses: derefOr(base.Addresses, ""), Range: derefOr(base.Range, ""), Gateway: derefOr(base.Gateway, ""),
		MaxExtraAddresses: DefaultMaxExtraAddresses}
	if base.MaxExtraAddresses != nil {
		n.MaxExtraAddresses = *base.MaxExtraAddresses
	}
	total := 0
	var seen []netip.Prefix
	for _, a := range as {
		p, err := ParseExtra(a)
		if err == nil {
			err = n.CheckExtra(p)
		}
		for _, o := range seen {
			if err == nil && o.Overlaps(p) {
				err = fmt.Errorf("%s overlaps %s, listed before", p, o)
			}
		}
		if err != nil {
			ps.add(key, "%v", err)
			continue
		}
		seen = append(seen, p)
		total += ExtraSize(p)
	}
	if total > n.MaxExtraAddresses {
		ps.add(key, "%d extra addresses on network %q, more than its max_extra_addresses = %d", total, nw, n.MaxExtraAddresses)
	}
}
