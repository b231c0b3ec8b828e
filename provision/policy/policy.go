// Package policy decodes and validates virtap's TOML host policy.
//
// A policy names networks; a guest interface joins one by name. Per-host
// sections override any key of a network for one host, so a fleet shares one
// file. Decoding is strict: unknown keys, wrong types, bad values and
// contradictions are errors that name the file, the line, the key and the
// allowed values.
package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"
)

// Kinds of network.
const (
	KindMacvtap     = "macvtap"
	KindIpvtap      = "ipvtap"
	KindBridge      = "bridge"
	KindPassthrough = "passthrough"
)

// Allowed values, in the order the error messages list them.
var (
	Kinds          = []string{KindMacvtap, KindIpvtap, KindBridge, KindPassthrough}
	MacvtapModes   = []string{"bridge", "vepa", "private", "passthrough"}
	IpvtapModes    = []string{"l2", "l3", "l3s"}
	IpvtapFlags    = []string{"bridge", "private", "vepa"}
	PoolModes      = []string{"passthrough", "hostdev"}
	VhostValues    = []string{"auto", "on", "off"}
	TrustValues    = []string{"trusted", "untrusted"}
	VirtualPorts   = []string{"802.1Qbg", "802.1Qbh"}
	DefaultMaxMACs = 16
)

// Policy is a decoded, validated policy file.
type Policy struct {
	File      string
	StateDir  string
	MACPrefix string // "" or 1-3 octets, e.g. "52:54:00"

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

	VLAN      int  `json:"vlan,omitempty"`
	SpoofChk  bool `json:"spoofchk"`
	MaxTxRate int  `json:"max_tx_rate,omitempty"`
	MaxMACs   int  `json:"max_macs"`

	Addresses string `json:"addresses,omitempty"`
	Range     string `json:"range,omitempty"`
	Gateway   string `json:"gateway,omitempty"`

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
type rawNetwork struct {
	Kind                *string      `toml:"kind"`
	Parent              *string      `toml:"parent"`
	ParentMAC           *string      `toml:"parent_mac"`
	Mode                *string      `toml:"mode"`
	Flag                *string      `toml:"flag"`
	Bridge              *string      `toml:"bridge"`
	PF                  *string      `toml:"pf"`
	Devices             *[]string    `toml:"devices"`
	Vhost               *string      `toml:"vhost"`
	Queues              *queues      `toml:"queues"`
	MTU                 *int         `toml:"mtu"`
	Model               *string      `toml:"model"`
	Trust               *string      `toml:"trust"`
	TrustGuestRxFilters *bool        `toml:"trust_guest_rx_filters"`
	HostAccess          *string      `toml:"host_access"`
	VLAN                *int         `toml:"vlan"`
	SpoofChk            *bool        `toml:"spoofchk"`
	MaxTxRate           *int         `toml:"max_tx_rate"`
	MaxMACs             *int         `toml:"max_macs"`
	Addresses           *string      `toml:"addresses"`
	Range               *string      `toml:"range"`
	Gateway             *string      `toml:"gateway"`
	VirtualPort         *VirtualPort `toml:"virtualport"`
	Bandwidth           *Bandwidth   `toml:"bandwidth"`
}

type rawHost struct {
	Networks map[string]*rawNetwork `toml:"networks"`
}

type rawPolicy struct {
	StateDir  *string                `toml:"state_dir"`
	MACPrefix *string                `toml:"mac_prefix"`
	Networks  map[string]*rawNetwork `toml:"networks"`
	Hosts     map[string]*rawHost    `toml:"hosts"`
	Guests    map[string]*Guest      `toml:"guests"`
}

// Guest holds per-guest overrides, keyed in the policy by the domain's UUID
// or name ([guests."web1"] or [guests."3c7a5a53-..."]); the UUID wins.
type Guest struct {
	Trust string `toml:"trust" json:"trust,omitempty"`
	// Addresses are fixed addresses per network (ipvtap networks with an
	// address pool): { edge = "198.51.100.50" }. They may lie outside the
	// pool's range but inside its CIDR.
	Addresses map[string]string `toml:"addresses" json:"addresses,omitempty"`
}

// queues is "auto" or a number.
type queues struct {
	n    int
	auto bool
}

func (q *queues) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		if x == "auto" {
			q.n, q.auto = 0, true
			return nil
		}
		if n, err := strconv.Atoi(x); err == nil {
			q.n = n
			return nil
		}
	case int64:
		q.n = int(x)
		return nil
	}
	return fmt.Errorf("queues must be \"auto\" or a number from 1 to 256, not %v", v)
}

// Error is a policy error: file, line, key, what is wrong and how to fix it.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Errors is every problem found in one policy, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w (give the path with --policy or VIRTAP_POLICY)", err)
	}
	return Parse(path, data)
}

// The regexps compile on first use: the hook links this package, and most
// hook runs never load a policy.
var (
	nameRE    = lazyRE(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	modelRE   = lazyRE(`^[a-z0-9_-]{1,32}$`)
	typeErrRE = lazyRE(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)
	badTypeRE = lazyRE(`incompatible types: TOML value has type (\S+); destination has type (\S+)`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// Parse decodes and validates policy text; file names the source in errors.
func Parse(file string, data []byte) (*Policy, error) {
	src := string(data)
	loc := newLocator(src)
	var raw rawPolicy
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return nil, decodeError(file, loc, err)
	}
	var errs Errors
	add := func(key []string, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: loc.line(key...), Key: strings.Join(key, "."), Msg: fmt.Sprintf(format, args...)})
	}
	for _, k := range md.Undecoded() {
		add(k, "unknown key; %s", allowedHere(k))
	}
	p := &Policy{File: file, StateDir: "/var/lib/virtap", base: raw.Networks, hosts: map[string]map[string]*rawNetwork{}, guests: map[string]*Guest{}, loc: loc}
	for name, g := range raw.Guests {
		if g == nil {
			continue
		}
		if g.Trust != "" && g.Trust != "trusted" && g.Trust != "untrusted" {
			add([]string{"guests", name, "trust"}, "%q is not allowed; allowed: %s", g.Trust, strings.Join(TrustValues, ", "))
		}
		for nw, a := range g.Addresses {
			addr, err := netip.ParseAddr(a)
			base, ok := raw.Networks[nw]
			switch {
			case err != nil:
				add([]string{"guests", name, "addresses", nw}, "%q is not an IP address", a)
			case !ok || base.Kind == nil || *base.Kind != KindIpvtap || base.Addresses == nil:
				add([]string{"guests", name, "addresses", nw}, "fixed addresses need an ipvtap network %q with addresses = \"CIDR\"", nw)
			default:
				if pfx, err := netip.ParsePrefix(*base.Addresses); err == nil && !pfx.Contains(addr) {
					add([]string{"guests", name, "addresses", nw}, "%s is outside network %q's addresses %s", a, nw, *base.Addresses)
				}
				if lo, hi, ok := strings.Cut(derefOr(base.Range, ""), "-"); !ok {
					add([]string{"guests", name, "addresses", nw}, "network %q needs a range = \"FIRST-LAST\" for its dynamic leases, and fixed addresses outside it", nw)
				} else if a, e1 := netip.ParseAddr(strings.TrimSpace(lo)); e1 == nil {
					if b, e2 := netip.ParseAddr(strings.TrimSpace(hi)); e2 == nil && !addr.Less(a) && !b.Less(addr) {
						add([]string{"guests", name, "addresses", nw}, "%s lies inside network %q's dynamic range %s; give fixed addresses outside it", addr, nw, *base.Range)
					}
				}
				if base.Gateway != nil && *base.Gateway == addr.String() {
					add([]string{"guests", name, "addresses", nw}, "%s is the network's gateway", a)
				}
			}
		}
		key := name
		if u, err := uuid.Parse(name); err == nil {
			key = u.String()
		}
		p.guests[key] = g
	}
	if raw.StateDir != nil {
		if !strings.HasPrefix(*raw.StateDir, "/") {
			add([]string{"state_dir"}, "must be an absolute path, not %q", *raw.StateDir)
		}
		p.StateDir = *raw.StateDir
	}
	if raw.MACPrefix != nil {
		if err := checkMACPrefix(*raw.MACPrefix); err != nil {
			add([]string{"mac_prefix"}, "%v", err)
		}
		p.MACPrefix = strings.ToLower(*raw.MACPrefix)
	}
	if p.base == nil {
		p.base = map[string]*rawNetwork{}
	}
	for name := range raw.Networks {
		if !nameRE().MatchString(name) {
			add([]string{"networks", name}, "network names use letters, digits, '_', '.', '-' (at most 64)")
		}
	}
	for host, h := range raw.Hosts {
		if !nameRE().MatchString(host) {
			add([]string{"hosts", host}, "host names use letters, digits, '_', '.', '-' (at most 64)")
		}
		if h == nil {
			continue
		}
		p.hosts[host] = h.Networks
		for name := range h.Networks {
			if _, ok := raw.Networks[name]; !ok && !nameRE().MatchString(name) {
				add([]string{"hosts", host, "networks", name}, "network names use letters, digits, '_', '.', '-' (at most 64)")
			}
		}
	}
	// Validate every network as every host named in the file sees it, and as
	// any other host (no overrides) sees it.
	hosts := append([]string{""}, p.Hosts()...)
	seen := map[string]bool{}
	for _, h := range hosts {
		for _, name := range p.names(h) {
			if _, err := p.resolve(h, name); err != nil {
				for _, e := range err.(Errors) {
					if !seen[e.Error()] {
						seen[e.Error()] = true
						errs = append(errs, e)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return p, nil
}

func decodeError(file string, loc locator, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Usage != "" {
			msg += " (" + strings.TrimSpace(pe.Usage) + ")"
		}
		line := pe.Position.Line
		if line == 0 {
			line = pe.Line
		}
		key := pe.LastKey
		if line == 0 && key != "" {
			line = loc.line(splitKey(key)...)
		}
		return Errors{{File: file, Line: line, Key: key, Msg: msg}}
	}
	if m := typeErrRE().FindStringSubmatch(err.Error()); m != nil {
		key := m[2]
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = loc.line(splitKey(key)...)
		}
		msg := m[3]
		if t := badTypeRE().FindStringSubmatch(msg); t != nil {
			msg = fmt.Sprintf("has the wrong type: expected %s, found %s", t[2], t[1])
		}
		return Errors{{File: file, Line: line, Key: key, Msg: msg}}
	}
	return Errors{{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
}

func allowedHere(k toml.Key) string {
	switch {
	case len(k) == 1:
		return "allowed at the top: state_dir, mac_prefix, [networks.NAME], [hosts.NAME.networks.NAME], [guests.NAME]"
	case k[0] == "guests":
		return "allowed in a guest section: trust, addresses = { NETWORK = \"ADDRESS\" }"
	case k[0] == "hosts" && len(k) == 3:
		return "a host section holds only [hosts.NAME.networks.NAME]"
	case len(k) >= 4 && k[len(k)-2] == "virtualport":
		return "allowed in virtualport: type, managerid, typeid, typeidversion, instanceid, profileid"
	case len(k) >= 4 && k[len(k)-2] == "bandwidth":
		return "allowed in bandwidth: inbound_average, inbound_peak, inbound_burst, outbound_average, outbound_peak, outbound_burst"
	default:
		return "allowed in a network: " + strings.Join(NetworkKeys(), ", ")
	}
}

// NetworkKeys lists every key a network table may hold.
func NetworkKeys() []string {
	return []string{"kind", "parent", "parent_mac", "mode", "flag", "bridge", "pf", "devices", "vhost", "queues",
		"mtu", "model", "trust", "trust_guest_rx_filters", "host_access", "vlan", "spoofchk", "max_tx_rate",
		"max_macs", "addresses", "range", "gateway", "[virtualport]", "[bandwidth]"}
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

// resolve merges the host's overrides over the base network, applies
// defaults and validates the result.
func (p *Policy) resolve(host, name string) (*Network, error) {
	base := p.base[name]
	over := p.hosts[host][name]
	keyOf := func(k ...string) []string {
		// Name the key where it was set: the host section wins.
		hk := append([]string{"hosts", host, "networks", name}, k...)
		if _, ok := p.loc[strings.Join(hk, ".")]; ok || base == nil {
			return hk
		}
		return append([]string{"networks", name}, k...)
	}
	v := validator{p: p, keyOf: keyOf}
	r := merge(base, over)
	n := &Network{Name: name, Host: host}
	n.Kind = v.oneOf(r.Kind, "kind", "", Kinds)
	if r.Kind == nil {
		v.fail([]string{"kind"}, "is required; allowed: %s", strings.Join(Kinds, ", "))
	}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	n.Parent = str(r.Parent)
	n.Bridge = str(r.Bridge)
	n.PF = str(r.PF)
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
	defTrust := "trusted"
	if n.Kind == KindIpvtap {
		defTrust = "untrusted"
	}
	n.Trust = v.oneOf(r.Trust, "trust", defTrust, TrustValues)
	n.MaxMACs = DefaultMaxMACs
	if r.MaxMACs != nil {
		n.MaxMACs = *r.MaxMACs
		if n.MaxMACs < 1 || n.MaxMACs > 65536 {
			v.fail([]string{"max_macs"}, "must be from 1 to 65536, not %d", n.MaxMACs)
		}
	}
	n.SpoofChk = true

	// Keys that belong to some kinds only.
	only := func(set bool, key string, kinds ...string) {
		if !set || n.Kind == "" {
			return
		}
		for _, k := range kinds {
			if k == n.Kind {
				return
			}
		}
		v.fail([]string{key}, "does not apply to kind %q; it belongs to kind %s", n.Kind, strings.Join(quoteAll(kinds), " or "))
	}
	only(r.Parent != nil, "parent", KindMacvtap, KindIpvtap)
	only(r.ParentMAC != nil, "parent_mac", KindIpvtap)
	only(r.Flag != nil, "flag", KindIpvtap)
	only(r.Bridge != nil, "bridge", KindBridge)
	only(r.PF != nil, "pf", KindPassthrough)
	only(r.Devices != nil, "devices", KindPassthrough)
	only(r.SpoofChk != nil, "spoofchk", KindPassthrough)
	only(r.MaxTxRate != nil, "max_tx_rate", KindPassthrough)
	only(r.TrustGuestRxFilters != nil, "trust_guest_rx_filters", KindMacvtap)
	only(r.HostAccess != nil, "host_access", KindMacvtap)
	only(r.VirtualPort != nil, "virtualport", KindMacvtap)
	only(r.Addresses != nil, "addresses", KindIpvtap)
	only(r.Range != nil, "range", KindIpvtap)
	only(r.Gateway != nil, "gateway", KindIpvtap)
	only(r.MaxMACs != nil, "max_macs", KindMacvtap, KindIpvtap)

	switch n.Kind {
	case KindMacvtap:
		n.Mode = v.oneOf(r.Mode, "mode", "bridge", MacvtapModes)
		v.required(r.Parent, "parent", "the host NIC the guests share, e.g. parent = \"eth0\"")
	case KindIpvtap:
		n.Mode = v.oneOf(r.Mode, "mode", "l2", IpvtapModes)
		n.Flag = v.oneOf(r.Flag, "flag", "bridge", IpvtapFlags)
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
	case KindBridge:
		if r.Mode != nil {
			v.fail([]string{"mode"}, "does not apply to kind \"bridge\" (the Linux bridge forwards); remove it")
		}
		v.required(r.Bridge, "bridge", "the host's Linux bridge, e.g. bridge = \"br0\"")
	case KindPassthrough:
		n.Mode = v.oneOf(r.Mode, "mode", "passthrough", PoolModes)
		if (r.PF == nil) == (r.Devices == nil) {
			v.fail([]string{"pf"}, "a passthrough pool needs exactly one of pf = \"PF\" (its VFs) or devices = [\"...\"]")
		}
		if r.Devices != nil && len(n.Devices) == 0 {
			v.fail([]string{"devices"}, "is empty; list the pool's lower devices, e.g. devices = [\"enp3s0f0v0\", \"enp3s0f0v1\"]")
		}
		dup := map[string]bool{}
		for _, d := range n.Devices {
			if !ifnameOK(d) {
				v.fail([]string{"devices"}, "%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", d)
			}
			if dup[d] {
				v.fail([]string{"devices"}, "%q is listed twice", d)
			}
			dup[d] = true
		}
		if r.SpoofChk != nil {
			n.SpoofChk = *r.SpoofChk
		}
		if n.Trust == "untrusted" && !n.SpoofChk {
			v.fail([]string{"spoofchk"}, "cannot be off for an untrusted network; set trust = \"trusted\" or remove spoofchk")
		}
		if r.MaxTxRate != nil {
			n.MaxTxRate = *r.MaxTxRate
			if n.MaxTxRate < 0 {
				v.fail([]string{"max_tx_rate"}, "must be 0 (no limit) or a rate in Mbit/s, not %d", n.MaxTxRate)
			}
		}
		if n.Mode == "hostdev" {
			if r.Devices != nil {
				v.fail([]string{"devices"}, "mode \"hostdev\" hands the pool to libvirt, which needs pf = \"PF\"; use mode = \"passthrough\" for a devices list")
			}
			if r.SpoofChk != nil || r.MaxTxRate != nil {
				v.fail([]string{"mode"}, "with mode \"hostdev\" libvirt programs the VF (MAC, VLAN); spoofchk and max_tx_rate apply to mode \"passthrough\" only")
			}
		}
	}
	if n.Parent != "" && !ifnameOK(n.Parent) {
		v.fail([]string{"parent"}, "%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", n.Parent)
	}
	if n.Bridge != "" && !ifnameOK(n.Bridge) {
		v.fail([]string{"bridge"}, "%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", n.Bridge)
	}
	if n.PF != "" && !ifnameOK(n.PF) {
		v.fail([]string{"pf"}, "%q is not an interface name (1 to 15 characters, no '/', ':' or spaces)", n.PF)
	}
	if r.VLAN != nil {
		n.VLAN = *r.VLAN
		switch {
		case n.Kind == KindPassthrough, n.Kind == KindMacvtap && n.Mode == "passthrough":
			if n.VLAN < 1 || n.VLAN > 4094 {
				v.fail([]string{"vlan"}, "must be from 1 to 4094, not %d", n.VLAN)
			}
		default:
			v.fail([]string{"vlan"}, "kind %q mode %q cannot carry a VLAN tag (only an SR-IOV VF can: kind \"passthrough\", or macvtap mode \"passthrough\" on a VF); use a VLAN device as parent instead", n.Kind, n.Mode)
		}
	}
	if r.TrustGuestRxFilters != nil {
		n.TrustGuestRxFilters = *r.TrustGuestRxFilters
		if n.TrustGuestRxFilters && n.Trust == "untrusted" {
			v.fail([]string{"trust_guest_rx_filters"}, "cannot be true for an untrusted network; set trust = \"trusted\" or remove it")
		}
	}
	if r.HostAccess != nil {
		n.HostAccess = *r.HostAccess
		if pfx, err := netip.ParsePrefix(n.HostAccess); err != nil || pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < pfx.Addr().BitLen() {
			v.fail([]string{"host_access"}, "%q must be the host's address on the guests' subnet in CIDR form, e.g. \"192.0.2.1/24\"", n.HostAccess)
		}
		if n.Mode == "private" || n.Mode == "passthrough" {
			v.fail([]string{"host_access"}, "needs mode \"bridge\" or \"vepa\" (a %s macvtap never talks to a sibling such as the host shim)", n.Mode)
		}
	}
	v.addresses(r, n)
	if r.VirtualPort != nil {
		n.VirtualPort = v.virtualPort(r.VirtualPort, n)
	}
	if r.Bandwidth != nil {
		n.Bandwidth = r.Bandwidth
		b := r.Bandwidth
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
	}
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return n, nil
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
		lo, hi, ok := strings.Cut(n.Range, "-")
		a, e1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, e2 := netip.ParseAddr(strings.TrimSpace(hi))
		if !ok || e1 != nil || e2 != nil || !pfx.Contains(a) || !pfx.Contains(b) || b.Less(a) {
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

func (v *validator) virtualPort(vp *VirtualPort, n *Network) *VirtualPort {
	out := *vp
	rng := func(key string, val *int, max int) {
		if val != nil && (*val < 0 || *val > max) {
			v.fail([]string{"virtualport", key}, "must be from 0 to %d, not %d", max, *val)
		}
	}
	switch vp.Type {
	case "802.1Qbg":
		for key, val := range map[string]*int{"managerid": vp.ManagerID, "typeid": vp.TypeID, "typeidversion": vp.TypeIDVersion} {
			if val == nil {
				v.fail([]string{"virtualport", key}, "is required for 802.1Qbg (managerid 0-255, typeid 0-16777215, typeidversion 0-255)")
			}
		}
		rng("managerid", vp.ManagerID, 255)
		rng("typeid", vp.TypeID, 16777215)
		rng("typeidversion", vp.TypeIDVersion, 255)
		if vp.InstanceID != "" {
			if _, err := uuid.Parse(vp.InstanceID); err != nil {
				v.fail([]string{"virtualport", "instanceid"}, "%q is not a UUID; remove it and virtap derives a stable one per guest interface", vp.InstanceID)
			}
		}
		if vp.ProfileID != "" {
			v.fail([]string{"virtualport", "profileid"}, "belongs to 802.1Qbh, not 802.1Qbg")
		}
		if n.Mode != "vepa" {
			v.fail([]string{"virtualport", "type"}, "802.1Qbg needs mode = \"vepa\", not %q", n.Mode)
		}
	case "802.1Qbh":
		if vp.ProfileID == "" || len(vp.ProfileID) > 39 {
			v.fail([]string{"virtualport", "profileid"}, "802.1Qbh needs a profileid of 1 to 39 characters")
		}
		if vp.ManagerID != nil || vp.TypeID != nil || vp.TypeIDVersion != nil || vp.InstanceID != "" {
			v.fail([]string{"virtualport", "type"}, "managerid, typeid, typeidversion and instanceid belong to 802.1Qbg, not 802.1Qbh")
		}
	default:
		v.fail([]string{"virtualport", "type"}, "%q is not a virtual port type; allowed: %s", vp.Type, strings.Join(VirtualPorts, ", "))
	}
	return &out
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

func ifnameOK(s string) bool {
	return len(s) >= 1 && len(s) <= 15 && !strings.ContainsAny(s, "/: \t\n") && s != "." && s != ".."
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// merge overlays the keys set in over onto base.
func merge(base, over *rawNetwork) *rawNetwork {
	out := &rawNetwork{}
	if base != nil {
		*out = *base
	}
	if over == nil {
		return out
	}
	o := *over
	set := func(dst **string, src *string) {
		if src != nil {
			*dst = src
		}
	}
	set(&out.Kind, o.Kind)
	set(&out.Parent, o.Parent)
	set(&out.ParentMAC, o.ParentMAC)
	set(&out.Mode, o.Mode)
	set(&out.Flag, o.Flag)
	set(&out.Bridge, o.Bridge)
	set(&out.PF, o.PF)
	set(&out.Vhost, o.Vhost)
	set(&out.Model, o.Model)
	set(&out.Trust, o.Trust)
	set(&out.HostAccess, o.HostAccess)
	set(&out.Addresses, o.Addresses)
	set(&out.Range, o.Range)
	set(&out.Gateway, o.Gateway)
	if o.Devices != nil {
		out.Devices = o.Devices
	}
	if o.Queues != nil {
		out.Queues = o.Queues
	}
	seti := func(dst **int, src *int) {
		if src != nil {
			*dst = src
		}
	}
	seti(&out.MTU, o.MTU)
	seti(&out.VLAN, o.VLAN)
	seti(&out.MaxTxRate, o.MaxTxRate)
	seti(&out.MaxMACs, o.MaxMACs)
	if o.TrustGuestRxFilters != nil {
		out.TrustGuestRxFilters = o.TrustGuestRxFilters
	}
	if o.SpoofChk != nil {
		out.SpoofChk = o.SpoofChk
	}
	if o.VirtualPort != nil {
		out.VirtualPort = o.VirtualPort
	}
	if o.Bandwidth != nil {
		out.Bandwidth = o.Bandwidth
	}
	return out
}

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
	return g, ok
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
