package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"
	"github.com/virtap/virtap/internal/ipam"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/suggest"
)

// Parse decodes and validates policy text; file names the source in errors.
func Parse(file string, data []byte) (*Policy, error) {
	src := string(data)
	loc := newLocator(src)
	var raw rawPolicy
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return nil, decodeError(file, loc, err)
	}
	ps := &parser{file: file, loc: loc, raw: &raw}
	ps.unknownKeys(md.Undecoded())
	p := &Policy{File: file, StateDir: paths.StateDir, base: raw.Networks, hosts: map[string]map[string]*rawNetwork{}, guests: map[string]*Guest{}, loc: loc}
	ps.guests(p)
	ps.top(p)
	ps.fleet(p)
	ps.names(p)
	ps.networks(p)
	if len(ps.errs) == 0 {
		ps.pools(p)
	}
	if len(ps.errs) > 0 {
		sort.SliceStable(ps.errs, func(i, j int) bool { return ps.errs[i].Line < ps.errs[j].Line })
		return nil, ps.errs
	}
	return p, nil
}

// parser collects the problems of one policy file.
type parser struct {
	file string
	loc  locator
	raw  *rawPolicy
	errs Errors
}

func (ps *parser) add(key []string, format string, args ...any) {
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: ps.loc.line(key...), Key: strings.Join(key, "."), Msg: fmt.Sprintf(format, args...)})
}

// guests checks the [guests.NAME] sections and keys them by UUID or name.
func (ps *parser) guests(p *Policy) {
	for name, g := range ps.raw.Guests {
		if g == nil {
			continue
		}
		if g.Trust != "" && g.Trust != TrustTrusted && g.Trust != TrustUntrusted {
			ps.add([]string{"guests", name, "trust"}, "%q is not allowed; allowed: %s", g.Trust, strings.Join(TrustValues, ", "))
		}
		for nw, as := range g.Addresses {
			ps.fixedAddresses([]string{"guests", name, "addresses", nw}, nw, as)
		}
		for nw, as := range g.ExtraAddresses {
			ps.extraAddresses([]string{"guests", name, "extra_addresses", nw}, nw, as)
		}
		key := name
		if u, err := uuid.Parse(name); err == nil {
			key = u.String()
		}
		if g.UUID != "" {
			if u, err := uuid.Parse(g.UUID); err != nil {
				ps.add([]string{"guests", name, "uuid"}, "%q is not a UUID", g.UUID)
			} else if key != name && u.String() != key {
				ps.add([]string{"guests", name, "uuid"}, "%q differs from the section's own UUID %s", g.UUID, key)
			}
		}
		p.guests[key] = g
	}
}

// fixedAddresses checks one guest's fixed addresses on network nw: unicast
// addresses, none twice, on a macvtap or ipvtap network; on an ipvtap
// network with an address pool, exactly one, inside the pool's CIDR,
// outside its dynamic range, not its gateway.
func (ps *parser) fixedAddresses(key []string, nw string, as AddrList) {
	base, ok := ps.raw.Networks[nw]
	if !ok {
		names := make([]string, 0, len(ps.raw.Networks))
		for n := range ps.raw.Networks {
			names = append(names, n)
		}
		ps.add(key, "fixed addresses need a macvtap or ipvtap network %q in [networks], and the policy has none of that name;%s", nw, suggest.DidYouMean(nw, names))
		return
	}
	if base.Kind == nil || (*base.Kind != KindIpvtap && *base.Kind != KindMacvtap) {
		ps.add(key, "fixed addresses need a macvtap or ipvtap network %q in [networks]", nw)
		return
	}
	if len(as) == 0 {
		ps.add(key, "is empty; give \"ADDRESS\" or [\"ADDRESS\", ...], or remove the key")
	}
	seen := map[netip.Addr]bool{}
	for _, a := range as {
		addr, err := netip.ParseAddr(a)
		switch {
		case err != nil || addr.Zone() != "":
			ps.add(key, "%q is not an IP address such as \"192.0.2.21\" or \"2001:db8::21\"", a)
			continue
		case !addr.IsGlobalUnicast() && !addr.IsLinkLocalUnicast() && !addr.IsPrivate():
			ps.add(key, "%s cannot be a guest's source address (unspecified, loopback, multicast or broadcast)", a)
		case addr.Is4() && addr.IsLinkLocalUnicast():
			ps.add(key, "%s is IPv4 link-local; give the guest's routable address", a)
		case seen[addr.Unmap()]:
			ps.add(key, "%s is listed twice", a)
		}
		seen[addr.Unmap()] = true
	}
	if *base.Kind == KindIpvtap && base.Addresses != nil {
		if len(as) != 1 {
			ps.add(key, "network %q leases from an address pool: give exactly one address, not %d", nw, len(as))
			return
		}
		ps.poolAddress(key, nw, base, as[0])
	}
}

// poolAddress checks a fixed address against an ipvtap network's pool.
func (ps *parser) poolAddress(key []string, nw string, base *rawNetwork, a string) {
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return
	}
	if pfx, err := netip.ParsePrefix(*base.Addresses); err == nil && !pfx.Contains(addr) {
		ps.add(key, "%s is outside network %q's addresses %s", a, nw, *base.Addresses)
	}
	if rng := derefOr(base.Range, ""); !strings.Contains(rng, "-") {
		ps.add(key, "network %q needs a range = \"FIRST-LAST\" for its dynamic leases, and fixed addresses outside it", nw)
	} else if first, last, err := ipam.ParseRange(rng); err == nil && ipam.InRange(addr, first, last) {
		ps.add(key, "%s lies inside network %q's dynamic range %s; give fixed addresses outside it", addr, nw, rng)
	}
	if base.Gateway != nil && *base.Gateway == addr.String() {
		ps.add(key, "%s is the network's gateway", a)
	}
}

// top checks the top-level keys.
func (ps *parser) top(p *Policy) {
	if sd := ps.raw.StateDir; sd != nil {
		if !strings.HasPrefix(*sd, "/") {
			ps.add([]string{"state_dir"}, "must be an absolute path, not %q", *sd)
		}
		p.StateDir = *sd
	}
	if mp := ps.raw.MACPrefix; mp != nil {
		if err := checkMACPrefix(*mp); err != nil {
			ps.add([]string{"mac_prefix"}, "%v", err)
		}
		p.MACPrefix = strings.ToLower(*mp)
	}
	if p.base == nil {
		p.base = map[string]*rawNetwork{}
	}
}

// names checks network and host names and files the host sections.
func (ps *parser) names(p *Policy) {
	const names = "names use letters, digits, '_', '.', '-' (at most 64)"
	for name := range ps.raw.Networks {
		if !nameRE().MatchString(name) {
			ps.add([]string{"networks", name}, "network "+names)
		}
	}
	for host, h := range ps.raw.Hosts {
		if !nameRE().MatchString(host) {
			ps.add([]string{"hosts", host}, "host "+names)
		}
		if h == nil {
			continue
		}
		p.hosts[host] = h.Networks
		for name := range h.Networks {
			if _, ok := ps.raw.Networks[name]; !ok && !nameRE().MatchString(name) {
				ps.add([]string{"hosts", host, "networks", name}, "network "+names)
			}
		}
	}
}

// networks validates every network as every host named in the file sees
// it, and as any other host (no overrides) sees it; a problem several
// hosts share is reported once.
func (ps *parser) networks(p *Policy) {
	hosts := append([]string{""}, p.Hosts()...)
	seen := map[string]bool{}
	for _, h := range hosts {
		var nets []*Network
		for _, name := range p.names(h) {
			nw, err := p.resolve(h, name)
			if err == nil {
				nets = append(nets, nw)
			}
			var es Errors
			if !errors.As(err, &es) {
				continue
			}
			for _, e := range es {
				if !seen[e.Error()] {
					seen[e.Error()] = true
					ps.errs = append(ps.errs, e)
				}
			}
		}
		for _, e := range p.parentConflicts(h, nets) {
			if !seen[e.Error()] {
				seen[e.Error()] = true
				if h != "" {
					e.Msg += " (host " + h + ")"
				}
				ps.errs = append(ps.errs, e)
			}
		}
	}
}

func checkMACPrefix(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) < 1 || len(parts) > 3 {
		return fmt.Errorf("%q must be 1 to 3 octets such as \"52:54:00\"", s)
	}
	for i, p := range parts {
		b, err := strconv.ParseUint(p, 16, 8)
		if err != nil || len(p) != 2 {
			return fmt.Errorf("%q must be 1 to 3 hex octets such as \"52:54:00\"", s)
		}
		if i == 0 && (b&1 != 0 || b&2 == 0) {
			return fmt.Errorf("%q must start with a locally administered unicast octet (second-lowest bit set, lowest clear: 02, 06, 0a, 0e, ..., 52)", s)
		}
	}
	return nil
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
