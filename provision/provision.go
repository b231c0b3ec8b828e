// Package provision turns a domain XML plus virtap's host policy into the
// concrete domain XML: policy -> plan per interface -> rewritten interfaces
// and virtap's metadata record.
package provision

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/ifname"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/suggest"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/mac"
	"github.com/virtap/virtap/provision/policy"
)

// MaxQueues caps automatic multiqueue.
const MaxQueues = 8

// Options say for which host a document is provisioned and what may be
// looked up on this machine.
type Options struct {
	Policy *policy.Policy
	Host   string // the host whose policy section applies
	// Local is true when Host is this machine: vhost "auto" then looks at
	// DevRoot/vhost-net and ipvtap reads its parent's MAC through ParentMAC.
	Local     bool
	DevRoot   string                                        // default "/dev"
	ParentMAC func(ifname string) (net.HardwareAddr, error) // nil: parent_mac must be in the policy
	Fleet     *Fleet                                        // nil: no fleet-wide MACs and leases
	// Taken are MACs in use that the document does not show (at hot-plug:
	// the other of the live and the persistent definition); derived MACs
	// step past them.
	Taken []string
}

// Plan is what virtap decided for one managed interface.
type Plan struct {
	Index   int
	Network *policy.Network
	MAC     string
	Backend string // direct | ethernet | bridge | network (hostdev pool)
	Device  string // ethernet: the host device the hook creates
	Driver  string // "vhost", "qemu" or "" (libvirt picks)
	Queues  uint
	Address string   // a fixed address from the policy's [guests.NAME] addresses (ipvtap pool)
	Fixed   []string // the other fixed addresses from there
	Leased  string   // fleet: the pool address leased fleet-wide at define time
	MTU     int      // the guest's own <mtu>, else the policy's
	// Explicit are the settings the guest's XML gave itself (driver,
	// queues, mtu): they win over the policy's automatic values.
	Explicit []string
	Extra    []string // the policy's extra addresses on this network (nested containers)
}

// Error is a provisioning error about one interface.
type Error struct {
	Line      int
	Index     int
	Network   string
	Msg       string
	PolicyRef string
	Hint      string // said after Msg, e.g. " did you mean 'lan'?"
}

func (e *Error) Error() string {
	where := fmt.Sprintf("interface #%d", e.Index+1)
	if e.Line > 0 {
		where = fmt.Sprintf("line %d: %s", e.Line, where)
	}
	if e.Network != "" {
		where += fmt.Sprintf(" (network %q)", e.Network)
	}
	return fmt.Sprintf("domain XML %s: %s%s", where, e.Msg, e.Hint)
}

// Result is a provisioned document with its plans.
type Result struct {
	XML    []byte
	Plans  []Plan
	Record *domain.Record
	Doc    *domain.Doc
	// Unknown are the interfaces of type 'network' whose network the
	// policy does not define: libvirt networks, or typos (the message has
	// the closest policy network). The caller checks libvirt's networks.
	Unknown []*Error
}

// Provision rewrites raw for opts.Host. Interfaces that name no policy
// network are kept as they are; so is every other element.
func Provision(raw []byte, opts Options) (*Result, error) {
	d, err := domain.Parse(raw)
	if err != nil {
		return nil, err
	}
	return ProvisionDoc(d, opts)
}

// ProvisionDoc is Provision on an already parsed document.
func ProvisionDoc(d *domain.Doc, opts Options) (*Result, error) {
	pl, err := plan(d, opts)
	if err != nil {
		return nil, err
	}
	out, err := d.Render(pl.repl, pl.rec)
	if err != nil {
		return nil, err
	}
	return &Result{XML: out, Plans: pl.plans, Record: pl.rec, Doc: d, Unknown: pl.unknown}, nil
}

// planned is every managed interface of a document decided: the rendered
// interfaces by index, the plans, virtap's new record, and the interfaces
// on networks the policy lacks.
type planned struct {
	repl    map[int]*libvirtxml.DomainInterface
	plans   []Plan
	rec     *domain.Record
	unknown []*Error
}

func plan(d *domain.Doc, opts Options) (*planned, error) {
	pv, err := newProvisioner(d, opts)
	if err != nil {
		return nil, err
	}
	pl := &planned{repl: map[int]*libvirtxml.DomainInterface{}, rec: &domain.Record{Host: opts.Host}}
	for _, ifc := range d.Interfaces {
		p, def, err := pv.iface(ifc)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue // not managed by virtap
		}
		pl.repl[ifc.Index] = def
		pl.plans = append(pl.plans, *p)
		pl.rec.Interfaces = append(pl.rec.Interfaces, record(p, d))
	}
	pl.unknown = pv.unknown
	return pl, nil
}

// newProvisioner starts planning d: every MAC of the document and of
// opts.Taken counts as used.
func newProvisioner(d *domain.Doc, opts Options) (*provisioner, error) {
	if opts.Policy == nil {
		return nil, fmt.Errorf("no policy")
	}
	if err := opts.Policy.CheckGuest(d.UUID, d.Name); err != nil {
		return nil, err
	}
	if opts.DevRoot == "" {
		opts.DevRoot = paths.Dev
	}
	prefix, err := mac.ParsePrefix(opts.Policy.MACPrefix)
	if err != nil {
		return nil, err
	}
	pv := &provisioner{d: d, opts: opts, prefix: prefix, used: map[string]bool{}, holders: map[string][]*domain.Interface{}, ipvtapParents: map[string]int{}}
	for _, m := range opts.Taken {
		if m, err := mac.Normalize(m); err == nil {
			pv.used[m] = true
		}
	}
	for _, ifc := range d.Interfaces {
		if ifc.MAC != "" {
			if m, err := mac.Normalize(ifc.MAC); err == nil {
				pv.used[m] = true
				pv.holders[m] = append(pv.holders[m], ifc)
			}
		}
	}
	return pv, nil
}

// provisioner is the state of one ProvisionDoc call.
type provisioner struct {
	d             *domain.Doc
	opts          Options
	prefix        net.HardwareAddr
	used          map[string]bool                // MACs in the document or handed out
	holders       map[string][]*domain.Interface // MAC -> the interfaces that give it
	ipvtapParents map[string]int                 // parent -> index of the ipvtap interface on it
	unknown       []*Error                       // interfaces on networks the policy lacks
}

// iface plans and renders one interface; a nil plan means that virtap does
// not manage it.
func (pv *provisioner) iface(ifc *domain.Interface) (*Plan, *libvirtxml.DomainInterface, error) {
	d, opts := pv.d, pv.opts
	netName, prior := managedNetwork(d, ifc)
	if netName == "" {
		return nil, nil, nil
	}
	fail := func(format string, args ...any) error {
		return &Error{Line: ifc.Line, Index: ifc.Index, Network: netName, Msg: fmt.Sprintf(format, args...)}
	}
	nw, ok, err := opts.Policy.Network(opts.Host, netName)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if !prior {
			// A libvirt network virtap does not manage, or a typo.
			u := &Error{Line: ifc.Line, Index: ifc.Index, Network: netName,
				Msg: fmt.Sprintf("network %q is not in %s for host %q", netName, opts.Policy.File, opts.Host)}
			if h := suggest.DidYouMean(netName, opts.Policy.NetworkNames(opts.Host)); h != "" {
				u.Hint = ";" + h
			}
			pv.unknown = append(pv.unknown, u)
			return nil, nil, nil
		}
		return nil, nil, fail("was provisioned from network %q, which %s does not define for host %q; add [networks.%s] (or a [hosts.%s.networks.%s] section) or give the interface another network",
			netName, opts.Policy.File, opts.Host, netName, opts.Host, netName)
	}
	p := &Plan{Index: ifc.Index, Network: pv.forGuest(nw)}
	guestAddresses(p, opts.Policy, d)
	if err := pv.chooseMAC(p, ifc); err != nil {
		return nil, nil, fail("%v", err)
	}
	if err := opts.lease(p, d); err != nil {
		return nil, nil, fail("%v", err)
	}
	orig, err := ifc.Load()
	if err != nil {
		return nil, nil, err
	}
	p.Explicit = explicitSettings(orig, ifc, d)
	if err := planIface(p, orig, d, opts); err != nil {
		return nil, nil, fail("%v", err)
	}
	return p, render(orig, *p, d), nil
}

// guestAddresses puts the guest's own addresses on network p.Network
// (its [guests.X] addresses) into the plan.
func guestAddresses(p *Plan, pol *policy.Policy, d *domain.Doc) {
	nw := p.Network
	if g, ok := pol.GuestOverride(d.UUID, d.Name); ok {
		if as := g.Addresses[nw.Name]; nw.Kind == policy.KindIpvtap && nw.Addresses != "" && len(as) == 1 {
			p.Address = as[0] // the guest's lease from the pool
		} else {
			p.Fixed = as
		}
		p.Extra = g.ExtraAddresses[nw.Name]
	}
}

// forGuest applies the guest's own trust override to a network.
func (pv *provisioner) forGuest(nw *policy.Network) *policy.Network {
	g, ok := pv.opts.Policy.GuestOverride(pv.d.UUID, pv.d.Name)
	if !ok || g.Trust == "" || g.Trust == nw.Trust {
		return nw
	}
	c := *nw
	c.Trust = g.Trust
	if c.Trust == policy.TrustUntrusted {
		c.TrustGuestRxFilters = false // never for an untrusted guest
	}
	return &c
}

// chooseMAC keeps a given MAC, uses the parent's for ipvtap, else derives
// one no other interface of the document has.
func (pv *provisioner) chooseMAC(p *Plan, ifc *domain.Interface) error {
	nw := p.Network
	if ifc.MAC != "" {
		m, err := pv.givenMAC(ifc)
		if err != nil {
			return err
		}
		p.MAC = m
	}
	if nw.Kind == policy.KindIpvtap {
		pm, err := ipvtapMAC(nw, pv.opts)
		if err != nil {
			return err
		}
		if p.MAC != "" && p.MAC != pm {
			return fmt.Errorf("an ipvtap guest must use its parent's MAC (%s has %s) because ipvlan shares one MAC; remove <mac address='%s'/> and virtap writes the right one", nw.Parent, pm, p.MAC)
		}
		if prev, dup := pv.ipvtapParents[nw.Parent]; dup {
			return fmt.Errorf("interfaces #%d and #%d are both ipvtap on parent %s and would share its MAC; give the guest one interface with several addresses", prev+1, ifc.Index+1, nw.Parent)
		}
		pv.ipvtapParents[nw.Parent] = ifc.Index
		p.MAC = pm
	}
	return pv.opts.pickMAC(p, pv.d.Seed(), pv.prefix, pv.used)
}

// givenMAC checks the MAC an interface gives: a unicast address that no
// other interface of the domain has.
func (pv *provisioner) givenMAC(ifc *domain.Interface) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(ifc.MAC))
	switch {
	case err != nil || len(hw) != 6:
		return "", fmt.Errorf("<mac address='%s'/> is not a MAC address such as 52:54:00:12:34:56; correct it, or remove it and virtap derives one", ifc.MAC)
	case hw[0]&1 != 0:
		return "", fmt.Errorf("<mac address='%s'/> is a multicast (group) address, and a NIC needs a unicast one (lowest bit of the first octet clear, e.g. 52:54:00:...); remove it and virtap derives one", ifc.MAC)
	case bytes.Equal(hw, make(net.HardwareAddr, 6)):
		return "", fmt.Errorf("<mac address='%s'/> is all zeros, which no NIC may use; remove it and virtap derives one", ifc.MAC)
	}
	m := hw.String()
	if hs := pv.holders[m]; len(hs) > 1 {
		var where []string
		for _, h := range hs {
			where = append(where, fmt.Sprintf("#%d (line %d)", h.Index+1, h.Line))
		}
		return "", fmt.Errorf("MAC %s is given by interfaces %s; each interface needs its own: remove all but one <mac address='%s'/> and virtap derives the others", m, strings.Join(where, " and "), ifc.MAC)
	}
	return m, nil
}

// managedNetwork returns the policy network an interface joins: from
// <source network=...> on a type='network' interface, or from virtap's record
// (prior=true) for an interface virtap provisioned before.
func managedNetwork(d *domain.Doc, ifc *domain.Interface) (string, bool) {
	if ifc.MAC != "" {
		if r, ok := d.Record.ByMAC(ifc.MAC); ok {
			return r.Network, true
		}
	}
	if ifc.Type == "network" && ifc.SourceNetwork != "" {
		return ifc.SourceNetwork, false
	}
	return "", false
}

func ipvtapMAC(nw *policy.Network, opts Options) (string, error) {
	if nw.ParentMAC != "" {
		return nw.ParentMAC, nil
	}
	if opts.Local && opts.ParentMAC != nil {
		hw, err := opts.ParentMAC(nw.Parent)
		if err != nil {
			return "", fmt.Errorf("ipvtap guests use their parent's MAC, and parent %s cannot be read on this host: %v; set parent_mac in the policy", nw.Parent, err)
		}
		return hw.String(), nil
	}
	return "", fmt.Errorf("ipvtap guests use their parent's MAC, which virtap cannot read for host %q from here; set parent_mac = \"...\" for %s in [hosts.%s.networks.%s]", opts.Host, nw.Parent, opts.Host, nw.Name)
}

// explicitSettings lists the interface settings the guest gave itself. On
// an interface virtap provisioned before, its record says which they were
// (the others in the XML are virtap's own and follow the policy); else
// every one the XML has is the guest's.
func explicitSettings(orig *libvirtxml.DomainInterface, ifc *domain.Interface, d *domain.Doc) []string {
	if ifc.MAC != "" {
		if r, ok := d.Record.ByMAC(ifc.MAC); ok {
			return strings.Fields(r.Explicit)
		}
	}
	var out []string
	if orig.Driver != nil && orig.Driver.Name != "" {
		out = append(out, "driver")
	}
	if orig.Driver != nil && orig.Driver.Queues > 0 {
		out = append(out, "queues")
	}
	if orig.MTU != nil && orig.MTU.Size > 0 {
		out = append(out, "mtu")
	}
	return out
}

// planIface completes a plan: how the interface is realised (Backend,
// Device) and, for a virtio NIC, its driver and queues.
func planIface(p *Plan, orig *libvirtxml.DomainInterface, d *domain.Doc, opts Options) error {
	nw := p.Network
	explicit := func(s string) bool { return slices.Contains(p.Explicit, s) }
	p.MTU = nw.MTU
	if explicit("mtu") {
		p.MTU = int(orig.MTU.Size)
	}
	switch {
	case nw.Kind == policy.KindMacvtap:
		p.Backend = "direct"
	case nw.Kind == policy.KindBridge:
		p.Backend = "bridge"
	case nw.Kind == policy.KindPassthrough && nw.Mode == policy.PoolModeHostdev:
		// libvirt's hostdev network picks a free VF at start and frees it
		// at stop; the guest owns the whole VF through vfio.
		p.Backend = "network"
		return nil
	case nw.Kind == policy.KindPassthrough, nw.Kind == policy.KindIpvtap:
		p.Backend = "ethernet"
		p.Device = DeviceName(nw.Kind, d.Seed(), p.MAC, nw.Name)
	default:
		return fmt.Errorf("kind %q is not supported", nw.Kind)
	}
	model := nw.Model
	if orig.Model != nil {
		model = orig.Model.Type
	}
	if model != "virtio" { // vhost and queues apply to virtio only
		return nil
	}
	if orig.Driver != nil {
		p.Driver = orig.Driver.Name
	}
	switch nw.Vhost {
	case "on":
		p.Driver = "vhost"
	case "off":
		p.Driver = "qemu"
	case "auto":
		if explicit("driver") {
			break // the guest's own choice wins over the automatic one
		}
		p.Driver = "" // libvirt uses vhost-net at start when the host has it
		if opts.Local {
			p.Driver = "qemu"
			if _, err := os.Stat(filepath.Join(opts.DevRoot, "vhost-net")); err == nil {
				p.Driver = "vhost"
			}
		}
	}
	q := nw.Queues
	switch {
	case q == 0 && explicit("queues"):
		q = int(orig.Driver.Queues)
	case q == 0:
		q = min(d.VCPUs, MaxQueues)
	}
	if q > 1 {
		p.Queues = uint(q)
	}
	return nil
}

// render writes the concrete interface for a complete plan. It keeps what
// virtap does not decide (address, boot, alias, rom, link, ...) and changes
// neither orig nor the plan.
func render(orig *libvirtxml.DomainInterface, p Plan, d *domain.Doc) *libvirtxml.DomainInterface {
	nw := p.Network
	def := *orig // shallow copy
	def.MAC = &libvirtxml.DomainInterfaceMAC{Address: p.MAC}
	def.VirtualPort, def.VLan, def.TrustGuestRXFilters, def.Managed = nil, nil, "", ""
	vlan := func() {
		if nw.VLAN > 0 {
			def.VLan = &libvirtxml.DomainInterfaceVLan{Tags: []libvirtxml.DomainInterfaceVLanTag{{ID: uint(nw.VLAN)}}}
		}
	}
	switch p.Backend {
	case "direct":
		dev := nw.Parent
		if nw.VLAN > 0 && nw.Mode != "passthrough" {
			// The hook makes PARENT.N (8021q) at prepare; libvirt's macvtap
			// sits on it. Only a VF carries the tag itself (<vlan>).
			dev = ifname.VLAN(nw.Parent, nw.VLAN)
		}
		def.Source = &libvirtxml.DomainInterfaceSource{Direct: &libvirtxml.DomainInterfaceSourceDirect{Dev: dev, Mode: nw.Mode}}
		if def.Target != nil && def.Target.Managed == "no" {
			def.Target = nil
		}
		if nw.TrustGuestRxFilters {
			def.TrustGuestRXFilters = "yes"
		}
		if nw.VirtualPort != nil {
			def.VirtualPort = virtualPort(nw.VirtualPort, d.Seed(), p.MAC)
		}
		if nw.Mode == "passthrough" {
			vlan()
		}
	case "bridge":
		def.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: nw.Bridge}}
		if def.Target != nil && def.Target.Managed == "no" {
			def.Target = nil
		}
	case "network":
		def.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: HostdevNetwork(nw.Name)}}
		def.Target, def.Driver = nil, nil
		vlan()
		return &def
	case "ethernet":
		def.Source = &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}}
		def.Target = &libvirtxml.DomainInterfaceTarget{Dev: p.Device, Managed: "no"}
	}
	if def.Model == nil {
		def.Model = &libvirtxml.DomainInterfaceModel{Type: nw.Model}
	}
	if def.Model.Type == "virtio" {
		drv := libvirtxml.DomainInterfaceDriver{}
		if orig.Driver != nil {
			drv = *orig.Driver
		}
		drv.Name, drv.Queues = p.Driver, p.Queues
		def.Driver = nil
		if drv != (libvirtxml.DomainInterfaceDriver{}) {
			def.Driver = &drv
		}
	}
	def.MTU = nil
	if p.MTU > 0 {
		def.MTU = &libvirtxml.DomainInterfaceMTU{Size: uint(p.MTU)}
	}
	def.Bandwidth = bandwidth(nw.Bandwidth, def.Bandwidth)
	return &def
}

// bandwidth is the policy's limits as libvirt's element; with none in the
// policy the document's own (have) stays.
func bandwidth(b *policy.Bandwidth, have *libvirtxml.DomainInterfaceBandwidth) *libvirtxml.DomainInterfaceBandwidth {
	if b == nil {
		return have
	}
	bw := &libvirtxml.DomainInterfaceBandwidth{}
	if b.InboundAverage != nil {
		bw.Inbound = &libvirtxml.DomainInterfaceBandwidthParams{Average: b.InboundAverage, Peak: b.InboundPeak, Burst: b.InboundBurst}
	}
	if b.OutboundAverage != nil {
		bw.Outbound = &libvirtxml.DomainInterfaceBandwidthParams{Average: b.OutboundAverage, Peak: b.OutboundPeak, Burst: b.OutboundBurst}
	}
	return bw
}

func record(p *Plan, d *domain.Doc) domain.IfaceRecord {
	nw := p.Network
	r := domain.IfaceRecord{
		MAC: p.MAC, Network: nw.Name, Kind: nw.Kind, Mode: nw.Mode, Flag: nw.Flag, Parent: nw.Parent,
		Bridge: nw.Bridge, Device: p.Device, PF: nw.PF, Devices: strings.Join(nw.Devices, " "), VLAN: nw.VLAN,
		Trust: nw.Trust, HostAccess: nw.HostAccess, OnLink: nw.OnLink, Vhost: nw.Vhost, MTU: p.MTU, Addresses: nw.Addresses, Range: nw.Range, Gateway: nw.Gateway,
		Address: p.Address, Leased: p.Leased, Explicit: strings.Join(p.Explicit, " "),
	}
	if nw.Trust == policy.TrustUntrusted && (nw.Kind == policy.KindMacvtap || nw.Kind == policy.KindIpvtap) {
		r.Fixed = strings.Join(p.Fixed, " ")
		r.Learn = nw.Learn
	}
	if nw.Kind == policy.KindMacvtap || nw.Kind == policy.KindIpvtap {
		r.Extra = strings.Join(p.Extra, " ")
		// Run-time extras (virtap addr) stay with the interface, and so
		// travel with the guest when it migrates.
		if prior, ok := d.Record.ByMAC(p.MAC); ok && prior.Network == nw.Name {
			r.Added = prior.Added
		}
	}
	if nw.Kind == policy.KindPassthrough {
		r.SpoofChk = "off"
		if nw.SpoofChk {
			r.SpoofChk = "on"
		}
		r.MaxTxRate = nw.MaxTxRate
	}
	return r
}
