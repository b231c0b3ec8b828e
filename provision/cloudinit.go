package provision

import (
	"fmt"
	"net/netip"
	"strings"
)

// Lease gives the address of one planned interface (the host's lease for
// this domain and MAC).
type Lease func(p Plan) (netip.Addr, error)

// CloudInit renders a cloud-init NoCloud seed for the provisioned domain:
// "meta-data" and a version 2 "network-config" that gives each interface
// with an address pool (ipvtap) its leased address, matched by MAC. ipvlan
// delivers by address, so the guest must use exactly the leased one.
func CloudInit(res *Result, lease Lease) (map[string][]byte, error) {
	d := res.Doc
	if d.UUID == "" {
		return nil, fmt.Errorf("domain %q has no <uuid>: leases are kept per domain UUID; add one (uuidgen) or define the domain first", d.Name)
	}
	var nc strings.Builder
	nc.WriteString("# cloud-init NoCloud network-config, written by virtap provision --cloud-init\nversion: 2\nethernets:\n")
	n := 0
	for _, p := range res.Plans {
		nw := p.Network
		if nw.Addresses == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(nw.Addresses)
		if err != nil {
			return nil, err
		}
		addr, err := lease(p)
		if err != nil {
			return nil, fmt.Errorf("interface #%d (network %q): %w", p.Index+1, nw.Name, err)
		}
		fmt.Fprintf(&nc, "  virtap%d:\n    match:\n      macaddress: %q\n    addresses:\n      - %s/%d\n", n, p.MAC, addr, pfx.Bits())
		if nw.Gateway != "" {
			def := "0.0.0.0/0"
			if addr.Is6() {
				def = "::/0"
			}
			fmt.Fprintf(&nc, "    routes:\n      - to: %s\n        via: %s\n        on-link: true\n", def, nw.Gateway)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no interface of domain %q joins a network with an address pool (addresses = \"CIDR\"); nothing to configure", d.Name)
	}
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", d.UUID, hostnameOf(d.Name)) + extrasMeta(res)
	return map[string][]byte{"network-config": []byte(nc.String()), "meta-data": []byte(meta)}, nil
}

// hostnameOf keeps the letters, digits and dashes of a domain name.
func hostnameOf(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if h == "" {
		h = "guest"
	}
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// extrasMeta lists each interface's extra addresses (for containers the
// guest runs on ipvlan: the policy's and those added with virtap addr) in
// the meta-data, by MAC, for the guest's own tooling to read
// (cloud-init query ds.meta_data.virtap_extra_addresses). They are not
// put on the guest's interface: they belong to the containers.
func extrasMeta(res *Result) string {
	if res.Record == nil {
		return ""
	}
	var b strings.Builder
	for _, ir := range res.Record.Interfaces {
		as := strings.Fields(ir.Extra + " " + ir.Added)
		if len(as) == 0 {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("virtap_extra_addresses:\n")
		}
		fmt.Fprintf(&b, "  %q: [\"%s\"]\n", ir.MAC, strings.Join(as, "\", \""))
	}
	return b.String()
}
