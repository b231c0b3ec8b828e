// Package policy decodes and validates virtap's TOML host policy.
//
// A policy names networks; a guest interface joins one by name. Per-host
// sections override any key of a network for one host, so a fleet shares one
// file. Decoding is strict: unknown keys, wrong types, bad values and
// contradictions are errors that name the file, the line, the key and the
// allowed values.
package policy

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// Kinds of network.
const (
	KindMacvtap     = "macvtap"
	KindIpvtap      = "ipvtap"
	KindBridge      = "bridge"
	KindPassthrough = "passthrough"
)

// Trust levels of a network.
const (
	TrustTrusted   = "trusted"
	TrustUntrusted = "untrusted"
)

// Modes of a passthrough pool: virtap hands out VFs (as macvtap passthrough
// devices), or libvirt's hostdev network does.
const (
	PoolModePassthrough = "passthrough"
	PoolModeHostdev     = "hostdev"
)

// Allowed values, in the order the error messages list them.
var (
	Kinds          = []string{KindMacvtap, KindIpvtap, KindBridge, KindPassthrough}
	MacvtapModes   = []string{"bridge", "vepa", "private", "passthrough"}
	IpvtapModes    = []string{"l2", "l3", "l3s"}
	IpvtapFlags    = []string{"bridge", "private", "vepa"}
	PoolModes      = []string{PoolModePassthrough, PoolModeHostdev}
	VhostValues    = []string{"auto", "on", "off"}
	TrustValues    = []string{TrustTrusted, TrustUntrusted}
	VirtualPorts   = []string{VirtualPortQbg, VirtualPortQbh}
	DefaultMaxMACs = 16
	LearnValues    = []string{LearnDHCP, LearnNone, LearnOpen}
)

// Values of a network's learn key.
const (
	LearnDHCP = "dhcp"
	LearnNone = "none"
	LearnOpen = "open"
)

// Policy is a decoded, validated policy file.
type Policy struct {
	File      string
	StateDir  string
	MACPrefix string // "" or 1-3 octets, e.g. "52:54:00"
	Fleet     *Fleet // nil: leases stay in this host's store

	base   map[string]*rawNetwork
	hosts  map[string]map[string]*rawNetwork
	guests map[string]*Guest
	loc    locator
}

// Network is one network as a given host sees it, with defaults applied.
type Network struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Kind string `json:"kind"`

	Parent    string   `json:"parent,omitempty"`
	ParentMAC string   `json:"parent_mac,omitempty"`
	Mode      string   `json:"mode,omitempty"`
	Flag      string   `json:"flag,omitempty"`
	Bridge    string   `json:"bridge,omitempty"`
	PF        string   `json:"pf,omitempty"`
	Devices   []string `json:"devices,omitempty"`

	Vhost  string `json:"vhost"`
	Queues int    `json:"queues"` // 0: auto
	MTU    int    `json:"mtu,omitempty"`
	Model  string `json:"model"`

	Trust               string `json:"trust"`
	TrustGuestRxFilters bool   `json:"trust_guest_rx_filters"`
	HostAccess          string `json:"host_access,omitempty"`
	// OnLink: the host answers ARP and NDP on the parent for an l3
	// ipvtap network's guests (see host/onlink.go), so the LAN reaches
	// them on-link.
	OnLink bool `json:"on_link,omitempty"`

	VLAN      int  `json:"vlan,omitempty"`
	SpoofChk  bool `json:"spoofchk"`
	MaxTxRate int  `json:"max_tx_rate,omitempty"`
	MaxMACs   int  `json:"max_macs"`
	// MaxExtraAddresses caps the extra addresses of one guest interface
	// (policy-fixed and run-time together; a prefix counts its size).
	MaxExtraAddresses int `json:"max_extra_addresses,omitempty"`

	Addresses string `json:"addresses,omitempty"`
	Range     string `json:"range,omitempty"`
	// Learn says how an untrusted interface's addresses are known besides
	// the fixed ones: "dhcp" (snooped DHCPACKs), "none", or "open" (not
	// bound at all). Empty for kinds virtap does not filter.
	Learn   string `json:"learn,omitempty"`
	Gateway string `json:"gateway,omitempty"`

	VirtualPort *VirtualPort `json:"virtualport,omitempty"`
	Bandwidth   *Bandwidth   `json:"bandwidth,omitempty"`
}

// VirtualPort is an 802.1Qbg or 802.1Qbh port profile.
type VirtualPort struct {
	Type          string `toml:"type" json:"type"`
	ManagerID     *int   `toml:"managerid" json:"managerid,omitempty"`
	TypeID        *int   `toml:"typeid" json:"typeid,omitempty"`
	TypeIDVersion *int   `toml:"typeidversion" json:"typeidversion,omitempty"`
	InstanceID    string `toml:"instanceid" json:"instanceid,omitempty"`
	ProfileID     string `toml:"profileid" json:"profileid,omitempty"`
}

// Bandwidth limits in libvirt's units: average and peak in KiB/s, burst in KiB.
type Bandwidth struct {
	InboundAverage  *int `toml:"inbound_average" json:"inbound_average,omitempty"`
	InboundPeak     *int `toml:"inbound_peak" json:"inbound_peak,omitempty"`
	InboundBurst    *int `toml:"inbound_burst" json:"inbound_burst,omitempty"`
	OutboundAverage *int `toml:"outbound_average" json:"outbound_average,omitempty"`
	OutboundPeak    *int `toml:"outbound_peak" json:"outbound_peak,omitempty"`
	OutboundBurst   *int `toml:"outbound_burst" json:"outbound_burst,omitempty"`
}

// rawNetwork is a network table as written: nil means "not set here".

// Guest holds per-guest overrides, keyed in the policy by the domain's UUID
// or name ([guests."web1"] or [guests."3c7a5a53-..."]); the UUID wins.
type Guest struct {
	// UUID, in a section keyed by name, pins it to that domain: a domain
	// of that name with another UUID (renamed, or another guest) is
	// refused rather than given this guest's trust and addresses.
	UUID  string `toml:"uuid" json:"uuid,omitempty"`
	Trust string `toml:"trust" json:"trust,omitempty"`
	// Addresses are the fixed addresses per network, one or a list, IPv4
	// or IPv6: { lan = ["192.0.2.21", "2001:db8::21"], edge = "198.51.100.50" }.
	// On an untrusted network they are the sources the guest may use. On
	// an ipvtap network with an address pool it is exactly one address,
	// inside the pool's CIDR and outside its range: the guest's lease.
	Addresses map[string]AddrList `toml:"addresses" json:"addresses,omitempty"`
	// ExtraAddresses are addresses or small prefixes per network the
	// guest may use besides its own, for containers it runs on ipvlan:
	// { lan = ["192.0.2.48/28", "2001:db8::50"] }. Run-time ones are added
	// with virtap addr add.
	ExtraAddresses map[string]AddrList `toml:"extra_addresses" json:"extra_addresses,omitempty"`
}

// AddrList is one address or a list of them.
type AddrList []string

// UnmarshalTOML accepts "ADDR" or ["ADDR", ...].
func (a *AddrList) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*a = AddrList{x}
		return nil
	case []any:
		out := AddrList{}
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("addresses must be \"ADDRESS\" or [\"ADDRESS\", ...], found %v", e)
			}
			out = append(out, s)
		}
		*a = out
		return nil
	}
	return fmt.Errorf("addresses must be \"ADDRESS\" or [\"ADDRESS\", ...], not %v", v)
}

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w (give the path with --policy or VIRTAP_POLICY)", err)
	}
	return Parse(path, data)
}

// Hosts lists the hosts that have their own section, sorted.
func (p *Policy) Hosts() []string {
	var hs []string
	for h := range p.hosts {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	return hs
}

// names lists the networks host sees, sorted.
func (p *Policy) names(host string) []string {
	set := map[string]bool{}
	for n := range p.base {
		set[n] = true
	}
	for n := range p.hosts[host] {
		set[n] = true
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Networks returns every network as host sees it, sorted by name.
func (p *Policy) Networks(host string) ([]*Network, error) {
	var out []*Network
	for _, n := range p.names(host) {
		nw, err := p.resolve(host, n)
		if err != nil {
			return nil, err
		}
		out = append(out, nw)
	}
	return out, nil
}

// Network returns one network as host sees it; ok is false when the policy
// has no such network (for that host).
func (p *Policy) Network(host, name string) (*Network, bool, error) {
	_, inBase := p.base[name]
	_, inHost := p.hosts[host][name]
	if !inBase && !inHost {
		return nil, false, nil
	}
	nw, err := p.resolve(host, name)
	return nw, err == nil, err
}

// NetworkNames lists the network names host sees.
func (p *Policy) NetworkNames(host string) []string { return p.names(host) }

// ResolveHost picks the host section that applies: the name given, else
// this machine's name (or its short form, when only that has a section).
// local says whether that host is this machine.
func (p *Policy) ResolveHost(given string) (host string, local bool) {
	me, err := os.Hostname()
	if err != nil {
		me = "localhost"
	}
	short, _, _ := strings.Cut(me, ".")
	if given != "" {
		return given, given == me || given == short
	}
	if _, ok := p.hosts[me]; ok {
		return me, true
	}
	if _, ok := p.hosts[short]; ok {
		return short, true
	}
	return me, true
}

// GuestOverride returns the per-guest section for a domain: by UUID first,
// then by name.
func (p *Policy) GuestOverride(uuidStr, name string) (*Guest, bool) {
	if u, err := uuid.Parse(uuidStr); err == nil {
		if g, ok := p.guests[u.String()]; ok {
			return g, true
		}
	}
	g, ok := p.guests[name]
	if ok && CheckGuest(g, uuidStr) != nil {
		return nil, false
	}
	return g, ok
}

// CheckGuest refuses a domain that a [guests.NAME] section matches by name
// while the section pins another UUID.
func (p *Policy) CheckGuest(uuidStr, name string) error {
	if u, err := uuid.Parse(uuidStr); err == nil {
		if _, ok := p.guests[u.String()]; ok {
			return nil
		}
	}
	g, ok := p.guests[name]
	if !ok {
		return nil
	}
	if err := CheckGuest(g, uuidStr); err != nil {
		return fmt.Errorf("%s: [guests.%s]: %v; it was renamed or is another guest: fix uuid there, or key the section by the domain's UUID", p.File, name, err)
	}
	return nil
}

// CheckGuest says whether a section pinned by UUID applies to a domain.
func CheckGuest(g *Guest, uuidStr string) error {
	if g.UUID == "" {
		return nil
	}
	want, _ := uuid.Parse(g.UUID)
	got, err := uuid.Parse(uuidStr)
	if err != nil || got != want {
		return fmt.Errorf("uuid = %q, but the domain of that name has UUID %q", g.UUID, uuidStr)
	}
	return nil
}
