package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/virtap/virtap/internal/ifname"
	"github.com/virtap/virtap/internal/ipam"
)

// resolve merges the host's overrides over the base network, applies
// defaults and validates the result.
func (p *Policy) resolve(host, name string) (*Network, error) {
	base := p.base[name]
	keyOf := func(k ...string) []string { return p.keyOf(host, name, k...) }
	v := validator{p: p, keyOf: keyOf}
	r := merge(base, p.hosts[host][name])
	n := &Network{Name: name, Host: host}
	v.common(r, n)
	v.kindOnly(r, n.Kind)
	switch n.Kind {
	case KindMacvtap:
		v.macvtap(r, n)
	case KindIpvtap:
		v.ipvtap(r, n)
	case KindBridge:
		v.bridge(r)
	case KindPassthrough:
		v.passthrough(r, n)
	}
	v.ifnames(n)
	v.vlan(r, n)
	v.guestAccess(r, n)
	v.addresses(r, n)
	if r.VirtualPort != nil {
		n.VirtualPort = v.virtualPort(r.VirtualPort, n)
	}
	if r.Bandwidth != nil {
		n.Bandwidth = v.bandwidth(r.Bandwidth)
	}
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return n, nil
}

// keyOf names a network key where it was set: the host section wins.
func (p *Policy) keyOf(host, name string, k ...string) []string {
	hk := append([]string{"hosts", host, "networks", name}, k...)
	if _, ok := p.loc[strings.Join(hk, ".")]; ok || p.base[name] == nil {
		return hk
	}
	return append([]string{"networks", name}, k...)
}

// common reads the keys every kind has, with their defaults.
func (v *validator) common(r *rawNetwork, n *Network) {
	n.Kind = v.oneOf(r.Kind, "kind", "", Kinds)
	if r.Kind == nil {
		v.fail([]string{"kind"}, "is required; allowed: %s", strings.Join(Kinds, ", "))
	}
	n.Parent = derefOr(r.Parent, "")
	n.Bridge = derefOr(r.Bridge, "")
	n.PF = derefOr(r.PF, "")
	if r.Devices != nil {
		n.Devices = *r.Devices
	}
	n.Vhost = v.oneOf(r.Vhost, "vhost", "auto", VhostValues)
	if r.Queues != nil {
		n.Queues = r.Queues.n
		if !r.Queues.auto && n.Queues < 1 || n.Queues > 256 {
			v.fail([]string{"queues"}, "must be \"auto\" or a number from 1 to 256, not %d", n.Queues)
		}
	}
	if r.MTU != nil {
		n.MTU = *r.MTU
		if n.MTU < 68 || n.MTU > 65535 {
			v.fail([]string{"mtu"}, "must be from 68 to 65535, not %d", n.MTU)
		}
	}
	n.Model = "virtio"
	if r.Model != nil {
		n.Model = *r.Model
		if !modelRE().MatchString(n.Model) {
			v.fail([]string{"model"}, "%q is not a NIC model name such as virtio, e1000e, rtl8139", n.Model)
		}
	}
	defTrust := TrustTrusted
	if n.Kind == KindIpvtap {
		defTrust = TrustUntrusted
	}
	n.Trust = v.oneOf(r.Trust, "trust", defTrust, TrustValues)
	n.MaxMACs = DefaultMaxMACs
	if r.MaxMACs != nil {
		n.MaxMACs = *r.MaxMACs
		if n.MaxMACs < 1 || n.MaxMACs > 65536 {
			v.fail([]string{"max_macs"}, "must be from 1 to 65536, not %d", n.MaxMACs)
		}
	}
	if n.Kind == KindMacvtap || n.Kind == KindIpvtap {
		n.MaxExtraAddresses = DefaultMaxExtraAddresses
	}
	if r.MaxExtraAddresses != nil {
		n.MaxExtraAddresses = *r.MaxExtraAddresses
		if n.MaxExtraAddresses < 0 || n.MaxExtraAddresses > 65536 {
			v.fail([]string{"max_extra_addresses"}, "must be from 0 (none) to 65536, not %d", n.MaxExtraAddresses)
		}
	}
	n.SpoofChk = true
}

func (v *validator) macvtap(r *rawNetwork, n *Network) {
	n.Mode = v.oneOf(r.Mode, "mode", "bridge", MacvtapModes)
	n.Learn = v.oneOf(r.Learn, "learn", LearnDHCP, LearnValues)
	v.required(r.Parent, "parent", "the host NIC the guests share, e.g. parent = \"eth0\"")
}

func (v *validator) ipvtap(r *rawNetwork, n *Network) {
	n.Mode = v.oneOf(r.Mode, "mode", "l2", IpvtapModes)
	n.Flag = v.oneOf(r.Flag, "flag", "bridge", IpvtapFlags)
	// With an address pool virtap leases the addresses itself.
	learn := LearnDHCP
	if r.Addresses != nil {
		learn = LearnNone
	}
	n.Learn = v.oneOf(r.Learn, "learn", learn, LearnValues)
	if n.Mode == "l3s" {
		v.fail([]string{"mode"}, "\"l3s\" hands a guest's inbound packets to the host's IP stack instead of its tap queue, so an ipvtap guest receives nothing from outside (measured, see README); use mode = \"l3\"")
	}
	v.required(r.Parent, "parent", "the host NIC the guests share, e.g. parent = \"eth0\"")
	if r.ParentMAC != nil {
		hw, err := net.ParseMAC(*r.ParentMAC)
		if err != nil || len(hw) != 6 {
			v.fail([]string{"parent_mac"}, "%q is not a MAC address such as \"52:54:00:12:34:56\"", *r.ParentMAC)
		} else {
			n.ParentMAC = hw.String()
		}
	}
}

func (v *validator) bridge(r *rawNetwork) {
	if r.Mode != nil {
		v.fail([]string{"mode"}, "does not apply to kind \"bridge\" (the Linux bridge forwards); remove it")
	}
	v.required(r.Bridge, "bridge", "the host's Linux bridge, e.g. bridge = \"br0\"")
}

func (v *validator) passthrough(r *rawNetwork, n *Network) {
	n.Mode = v.oneOf(r.Mode, "mode", "passthrough", PoolModes)
	if (r.PF == nil) == (r.Devices == nil) {
		v.fail([]string{"pf"}, "a passthrough pool needs exactly one of pf = \"PF\" (its VFs) or devices = [\"...\"]")
	}
	if r.Devices != nil && len(n.Devices) == 0 {
		v.fail([]string{"devices"}, "is empty; list the pool's lower devices, e.g. devices = [\"enp3s0f0v0\", \"enp3s0f0v1\"]")
	}
	dup := map[string]bool{}
	for _, d := range n.Devices {
		v.ifname("devices", d)
		if dup[d] {
			v.fail([]string{"devices"}, "%q is listed twice", d)
		}
		dup[d] = true
	}
	if r.SpoofChk != nil {
		n.SpoofChk = *r.SpoofChk
	}
	if n.Trust == TrustUntrusted && !n.SpoofChk {
		v.fail([]string{"spoofchk"}, "cannot be off for an untrusted network; set trust = \"trusted\" or remove spoofchk")
	}
	if r.MaxTxRate != nil {
		n.MaxTxRate = *r.MaxTxRate
		if n.MaxTxRate < 0 {
			v.fail([]string{"max_tx_rate"}, "must be 0 (no limit) or a rate in Mbit/s, not %d", n.MaxTxRate)
		}
	}
	if n.Mode == PoolModeHostdev {
		if r.Devices != nil {
			v.fail([]string{"devices"}, "mode \"hostdev\" hands the pool to libvirt, which needs pf = \"PF\"; use mode = \"passthrough\" for a devices list")
		}
		if r.SpoofChk != nil || r.MaxTxRate != nil {
			v.fail([]string{"mode"}, "with mode \"hostdev\" libvirt programs the VF (MAC, VLAN); spoofchk and max_tx_rate apply to mode \"passthrough\" only")
		}
	}
}

// ifnames checks the interface names of a network.
func (v *validator) ifnames(n *Network) {
	for _, f := range []struct{ key, val string }{{"parent", n.Parent}, {"bridge", n.Bridge}, {"pf", n.PF}} {
		if f.val != "" {
			v.ifname(f.key, f.val)
		}
	}
}

// ifname fails key unless name can be a Linux interface name.
func (v *validator) ifname(key, name string) {
	if err := ifname.Validate(name); err != nil {
		v.fail([]string{key}, "%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", name)
	}
}

func (v *validator) vlan(r *rawNetwork, n *Network) {
	if r.VLAN == nil {
		return
	}
	n.VLAN = *r.VLAN
	switch n.Kind {
	case KindPassthrough, KindMacvtap, KindIpvtap:
		// A VF (kind passthrough, or macvtap mode passthrough) carries the
		// tag itself; other macvtap and ipvtap networks sit on an 802.1Q
		// device PARENT.N that the hook makes and shares.
		if n.VLAN < 1 || n.VLAN > 4094 {
			v.fail([]string{"vlan"}, "must be from 1 to 4094, not %d", n.VLAN)
		}
	default:
		v.fail([]string{"vlan"}, "kind %q cannot carry a VLAN tag (kinds macvtap, ipvtap and passthrough can); for a bridge, make the bridge's port a VLAN device", n.Kind)
	}
}

// guestAccess reads trust_guest_rx_filters and host_access.
func (v *validator) guestAccess(r *rawNetwork, n *Network) {
	if r.TrustGuestRxFilters != nil {
		n.TrustGuestRxFilters = *r.TrustGuestRxFilters
		if n.TrustGuestRxFilters && n.Trust == TrustUntrusted {
			v.fail([]string{"trust_guest_rx_filters"}, "cannot be true for an untrusted network; set trust = \"trusted\" or remove it")
		}
	}
	if r.OnLink != nil {
		n.OnLink = *r.OnLink
		if n.OnLink && n.Mode != "l3" {
			v.fail([]string{"on_link"}, "is for mode \"l3\" (in %s the guests answer ARP themselves and are on-link already)", n.Mode)
		}
	}
	if r.HostAccess != nil {
		n.HostAccess = *r.HostAccess
		if pfx, err := netip.ParsePrefix(n.HostAccess); err != nil || pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < pfx.Addr().BitLen() {
			v.fail([]string{"host_access"}, "%q must be the host's address on the guests' subnet in CIDR form, e.g. \"192.0.2.1/24\"", n.HostAccess)
		}
		if n.Kind == KindMacvtap && (n.Mode == "private" || n.Mode == "passthrough") {
			v.fail([]string{"host_access"}, "needs mode \"bridge\" or \"vepa\" (a %s macvtap never talks to a sibling such as the host shim)", n.Mode)
		}
		if n.Kind == KindIpvtap && n.Flag == "private" {
			v.fail([]string{"host_access"}, "needs flag \"bridge\" or \"vepa\" (ipvlan's private flag keeps guests from the host shim, a sibling on the same parent)")
		}
	}
}

func (v *validator) bandwidth(b *Bandwidth) *Bandwidth {
	for _, f := range []struct {
		key string
		val *int
	}{{"inbound_average", b.InboundAverage}, {"inbound_peak", b.InboundPeak}, {"inbound_burst", b.InboundBurst},
		{"outbound_average", b.OutboundAverage}, {"outbound_peak", b.OutboundPeak}, {"outbound_burst", b.OutboundBurst}} {
		if f.val != nil && (*f.val < 1 || *f.val > 1<<30) {
			v.fail([]string{"bandwidth", f.key}, "must be a positive number (KiB/s for average and peak, KiB for burst), not %d", *f.val)
		}
	}
	if (b.InboundPeak != nil || b.InboundBurst != nil) && b.InboundAverage == nil {
		v.fail([]string{"bandwidth", "inbound_average"}, "is required when inbound_peak or inbound_burst is set")
	}
	if (b.OutboundPeak != nil || b.OutboundBurst != nil) && b.OutboundAverage == nil {
		v.fail([]string{"bandwidth", "outbound_average"}, "is required when outbound_peak or outbound_burst is set")
	}
	return b
}

func (v *validator) addresses(r *rawNetwork, n *Network) {
	if r.Addresses == nil {
		if r.Range != nil || r.Gateway != nil {
			v.fail([]string{"addresses"}, "is required when range or gateway is set, e.g. addresses = \"192.0.2.0/24\"")
		}
		return
	}
	n.Addresses = *r.Addresses
	pfx, err := netip.ParsePrefix(n.Addresses)
	if err != nil || pfx != pfx.Masked() {
		v.fail([]string{"addresses"}, "%q must be a network in CIDR form, e.g. \"192.0.2.0/24\"", n.Addresses)
		return
	}
	if r.Range != nil {
		n.Range = *r.Range
		a, b, err := ipam.ParseRange(n.Range)
		if err != nil || !pfx.Contains(a) || !pfx.Contains(b) || b.Less(a) {
			v.fail([]string{"range"}, "%q must be \"FIRST-LAST\" inside %s, e.g. \"192.0.2.100-192.0.2.199\"", n.Range, n.Addresses)
		}
	}
	if r.Gateway != nil {
		n.Gateway = *r.Gateway
		if g, err := netip.ParseAddr(n.Gateway); err != nil || !pfx.Contains(g) {
			v.fail([]string{"gateway"}, "%q must be an address inside %s", n.Gateway, n.Addresses)
		}
	}
}

type validator struct {
	p     *Policy
	keyOf func(k ...string) []string
	errs  Errors
}

func (v *validator) fail(key []string, format string, args ...any) {
	k := v.keyOf(key...)
	v.errs = append(v.errs, &Error{File: v.p.File, Line: v.p.loc.line(k...), Key: strings.Join(k, "."), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(val *string, key, def string, allowed []string) string {
	if val == nil {
		return def
	}
	for _, a := range allowed {
		if *val == a {
			return a
		}
	}
	v.fail([]string{key}, "%q is not allowed; allowed: %s", *val, strings.Join(allowed, ", "))
	return def
}

func (v *validator) required(val *string, key, hint string) {
	if val == nil || *val == "" {
		v.fail([]string{key}, "is required: %s", hint)
	}
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
