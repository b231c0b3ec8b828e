// Package host realises and releases the host side of provisioned guest
// interfaces: the devices virtap creates itself (ipvtap, passthrough-pool
// macvtaps, host-access shims), pool reservations and their records. The
// hook calls it on the guest's lifecycle; gc calls it for leftovers.
//
// Every change is recorded before it is made (a write-ahead intent in the
// store) and every device carries virtap's tag, so a crash at any point
// leaves a state that Release or gc finishes.
package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision/domain"
)

// Realiser does the host-side work for one hook or gc run.
type Realiser struct {
	Log       hclog.Logger
	Net       *netdev.Manager
	Store     *store.Store
	DevRoot   string // "/dev" unless a test says otherwise
	SysfsRoot string // "/sys" unless a test says otherwise

	prior map[string]bool // MACs recorded before this Prepare (lower case)
}

// Error is a failure the user must fix before the guest can start.
type Error struct {
	Domain string
	MAC    string
	Msg    string
}

func (e *Error) Error() string {
	if e.MAC == "" {
		return fmt.Sprintf("virtap: domain %s: %s", e.Domain, e.Msg)
	}
	return fmt.Sprintf("virtap: domain %s interface %s: %s", e.Domain, e.MAC, e.Msg)
}

// Guest is what the hook knows of a domain: its UUID, name and document.
type Guest struct {
	UUID uuid.UUID
	Name string
	Doc  *domain.Doc
}

// NewGuest checks that a parsed document carries what the hook needs.
func NewGuest(d *domain.Doc) (*Guest, error) {
	if d.UUID == "" {
		return nil, fmt.Errorf("domain %q has no <uuid>; virtap keys its state by UUID", d.Name)
	}
	u, err := uuid.Parse(d.UUID)
	if err != nil {
		return nil, fmt.Errorf("domain %q: <uuid> %q: %v", d.Name, d.UUID, err)
	}
	return &Guest{UUID: u, Name: d.Name, Doc: d}, nil
}

func (r *Realiser) devRoot() string {
	if r.DevRoot == "" {
		return "/dev"
	}
	return r.DevRoot
}

func (r *Realiser) sysfsRoot() string {
	if r.SysfsRoot == "" {
		return "/sys"
	}
	return r.SysfsRoot
}

// revert is a stack of undo steps, run last-in first-out.
type revert []func()

func (rv *revert) add(f func()) { *rv = append(*rv, f) }
func (rv *revert) run() {
	for i := len(*rv) - 1; i >= 0; i-- {
		(*rv)[i]()
	}
	*rv = nil
}

// Prepare makes everything the guest's managed interfaces need before QEMU
// starts. On any failure it undoes what this call made and returns an
// error naming the interface and the fix. Running it again is safe.
func (r *Realiser) Prepare(g *Guest) (err error) {
	rec := g.Doc.Record
	if rec == nil || len(rec.Interfaces) == 0 {
		return nil
	}
	log := r.Log.With("domain", g.Name, "uuid", g.UUID.String())
	var undo revert
	defer func() {
		if err != nil {
			log.Error("prepare failed, rolling back", "error", err)
			undo.run()
		}
	}()
	// Interfaces already recorded (a re-run) keep their records on rollback.
	prev, _, err := r.Store.GetDomain(g.UUID.String())
	if err != nil {
		return err
	}
	r.prior = map[string]bool{}
	for _, p := range prev.Interfaces {
		r.prior[strings.ToLower(p.MAC)] = true
	}
	// Interfaces that need no device of virtap's (libvirt makes macvtaps and
	// taps, or libvirt's hostdev network picks the VF) are recorded at the
	// end in one transaction: there is no host change to protect with a
	// write-ahead record, and one fsync instead of two per interface.
	var plain []store.Iface
	plainIface := func(ir domain.IfaceRecord) {
		plain = append(plain, store.Iface{MAC: ir.MAC, Network: ir.Network, Kind: ir.Kind, Mode: ir.Mode,
			Parent: ir.Parent, State: store.StateReady})
	}
	for _, ir := range rec.Interfaces {
		fail := func(format string, args ...any) error {
			return &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf(format, args...)}
		}
		if err := r.checkVhost(g, ir); err != nil {
			return fail("%v", err)
		}
		switch ir.Kind {
		case "macvtap":
			if err := r.checkParent(ir.Parent); err != nil {
				return fail("network %q: %v", ir.Network, err)
			}
			plainIface(ir)
			if ir.HostAccess != "" {
				if err := r.ensureShim(ir, &undo); err != nil {
					return fail("network %q host_access: %v", ir.Network, err)
				}
			}
		case "bridge":
			if err := r.checkBridge(ir.Bridge); err != nil {
				return fail("network %q: %v", ir.Network, err)
			}
			plainIface(ir)
		case "ipvtap":
			if err := r.checkParent(ir.Parent); err != nil {
				return fail("network %q: %v", ir.Network, err)
			}
			if err := r.makeDevice(g, ir, ir.Parent, &undo); err != nil {
				return fail("network %q: %v", ir.Network, err)
			}
			if err := r.prepareAddresses(g, ir, &undo); err != nil {
				return fail("network %q addresses: %v", ir.Network, err)
			}
		case "passthrough":
			if ir.Mode == "hostdev" { // libvirt's hostdev network allocates the VF
				plainIface(ir)
				continue
			}
			if err := r.preparePool(g, ir, &undo); err != nil {
				var pe *store.PoolExhaustedError
				if errors.As(err, &pe) {
					return fail("%v; stop one of those guests or add devices to the pool", err)
				}
				return fail("network %q: %v", ir.Network, err)
			}
		default:
			return fail("unknown kind %q in virtap's metadata; provision the domain again with this virtap", ir.Kind)
		}
	}
	// Not fsynced: these record no host change of virtap's; after a power
	// cut the guest is gone too, and reconnect rebuilds them for a guest
	// that runs.
	if err := r.Store.WithoutSync(func() error { return r.Store.PutIfaces(g.UUID.String(), g.Name, plain) }); err != nil {
		return err
	}
	return nil
}

// record writes the interface's intent record (pending until the host
// change is made) and undoes it on rollback unless an earlier run made it.
func (r *Realiser) record(g *Guest, ir domain.IfaceRecord, ifc store.Iface, undo *revert) error {
	ifc.MAC = ir.MAC
	ifc.Network = ir.Network
	ifc.Kind = ir.Kind
	ifc.Mode = ir.Mode
	if ifc.Parent == "" {
		ifc.Parent = ir.Parent
	}
	if ifc.State == "" {
		ifc.State = store.StatePending
	}
	if err := r.Store.PutIface(g.UUID.String(), g.Name, ifc); err != nil {
		return err
	}
	if !r.prior[strings.ToLower(ir.MAC)] {
		undo.add(func() { _ = r.Store.RemoveIface(g.UUID.String(), ir.MAC) })
	}
	return nil
}

func (r *Realiser) checkVhost(g *Guest, ir domain.IfaceRecord) error {
	for _, ifc := range g.Doc.Interfaces {
		if !strings.EqualFold(ifc.MAC, ir.MAC) {
			continue
		}
		if ifc.DriverName == "vhost" {
			if _, err := os.Stat(filepath.Join(r.devRoot(), "vhost-net")); err != nil {
				return fmt.Errorf("the XML asks for <driver name='vhost'/> but this host has no /dev/vhost-net (modprobe vhost_net, or set vhost = \"auto\" and provision again)")
			}
		}
	}
	return nil
}

func (r *Realiser) checkParent(name string) error {
	info, err := r.Net.ParentStatus(name)
	if err != nil {
		return fmt.Errorf("parent %s: %v", name, err)
	}
	if !info.Exists {
		return fmt.Errorf("parent %s does not exist on this host; fix parent in the policy (or a [hosts.NAME] override) and provision the domain again", name)
	}
	if !info.Up {
		return fmt.Errorf("parent %s is down; bring it up (ip link set %s up)", name, name)
	}
	return nil
}

func (r *Realiser) checkBridge(name string) error {
	l, err := r.Net.Handle().LinkByName(name)
	if err != nil {
		return fmt.Errorf("bridge %s does not exist on this host; create it or fix bridge in the policy", name)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a Linux bridge", name, l.Type())
	}
	return nil
}

// makeDevice creates the guest's ipvtap or passthrough macvtap on lower.
func (r *Realiser) makeDevice(g *Guest, ir domain.IfaceRecord, lower string, undo *revert) error {
	hw, err := net.ParseMAC(ir.MAC)
	if err != nil {
		return err
	}
	spec := netdev.Spec{Name: ir.Device, Parent: lower, Tag: netdev.GuestTag(g.UUID, hw), Up: true, MTU: ir.MTU}
	switch ir.Kind {
	case "ipvtap":
		spec.Kind, spec.Mode, spec.Flag = netdev.KindIPvtap, ir.Mode, ir.Flag
	default:
		spec.Kind, spec.Mode, spec.MAC = netdev.KindMacvtap, "passthrough", hw
	}
	owner, _, claimed, err := r.Store.DeviceOwner(ir.Device)
	if err != nil {
		return err
	}
	claimed = claimed && owner == g.UUID.String()
	if err := r.record(g, ir, store.Iface{Device: ir.Device, Parent: lower, Pool: poolName(ir)}, undo); err != nil {
		return err
	}
	d, existed, err := r.Net.Find(ir.Device)
	if err != nil {
		return err
	}
	if existed && !d.Ours() && claimed {
		// An earlier run recorded this name before making the device: a
		// crash between creation and tagging left it untagged.
		if err := r.Net.DeleteClaimed(ir.Device, spec.Kind); err != nil {
			return err
		}
		existed = false
	}
	if _, err := r.Net.Create(spec); err != nil {
		return err
	}
	if !existed {
		undo.add(func() {
			if err := r.Net.Delete(ir.Device); err != nil {
				r.Log.Warn("rollback: delete device", "device", ir.Device, "error", err)
			}
		})
	}
	if err := r.applyFilter(g, ir, ir.Device, undo); err != nil {
		return fmt.Errorf("anti-spoofing filter on %s: %w", ir.Device, err)
	}
	return r.Store.SetIfaceState(g.UUID.String(), ir.MAC, store.StateReady)
}

func poolName(ir domain.IfaceRecord) string {
	if ir.Kind == "passthrough" {
		return ir.Network
	}
	return ""
}

func (r *Realiser) pool(ir domain.IfaceRecord) *passthrough.Pool {
	return &passthrough.Pool{Name: ir.Network, SysfsRoot: r.sysfsRoot(), PF: ir.PF, Devices: strings.Fields(ir.Devices),
		Linker: passthrough.NetlinkVF{Handle: r.Net.Handle()}, Log: r.Log}
}

// preparePool reserves a free lower device of the pool atomically, programs
// it when it is a real VF (MAC, VLAN, spoofchk, trust, rate; the previous
// settings are saved first) and creates the passthrough macvtap on it.
func (r *Realiser) preparePool(g *Guest, ir domain.IfaceRecord, undo *revert) error {
	pool := r.pool(ir)
	inUse, err := passthrough.LinkUsage(r.Net.Handle())
	if err != nil {
		return err
	}
	h := store.Holder{UUID: g.UUID.String(), MAC: ir.MAC, Name: g.Name}
	_, held, err := r.Store.ReservationOf(ir.Network, h.UUID, h.MAC)
	if err != nil {
		return err
	}
	vf, err := pool.Reserve(r.Store, h, inUse)
	if err != nil {
		return err
	}
	if !held {
		undo.add(func() {
			if _, err := pool.ReleaseIface(r.Store, h.UUID, h.MAC); err != nil {
				r.Log.Warn("rollback: release pool device", "pool", ir.Network, "error", err)
			}
		})
	}
	if vf.Netdev == "" {
		return fmt.Errorf("pool device %s has no network device (bound to another driver?)", vf.Key())
	}
	hw, _ := net.ParseMAC(ir.MAC)
	cfg := passthrough.VFConfig{MAC: hw}
	spoof := ir.SpoofChk != "off"
	trust := ir.Trust == "trusted"
	cfg.SpoofChk, cfg.Trust = &spoof, &trust
	if ir.VLAN > 0 {
		v := ir.VLAN
		cfg.VLAN = &v
	}
	if ir.MaxTxRate > 0 {
		v := ir.MaxTxRate
		cfg.MaxTxRate = &v
	}
	if err := pool.Program(r.Store, vf, h, cfg); err != nil {
		return err
	}
	return r.makeDevice(g, ir, vf.Netdev, undo)
}

// releasePools frees every pool device the domain holds, restoring the
// VF settings saved when it was programmed.
func (r *Realiser) releasePools(u string) error {
	rs, err := r.Store.HolderReservations(u)
	if err != nil {
		return err
	}
	var errs []error
	done := map[string]bool{}
	for _, rv := range rs {
		if done[rv.Pool] {
			continue
		}
		done[rv.Pool] = true
		p := &passthrough.Pool{Name: rv.Pool, SysfsRoot: r.sysfsRoot(), Linker: passthrough.NetlinkVF{Handle: r.Net.Handle()}, Log: r.Log}
		if _, err := p.ReleaseHolder(r.Store, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DiscoverVFs lists the net devices of a PF's virtual functions.
func DiscoverVFs(root, pf string) ([]string, error) {
	vfs, err := passthrough.Discover(root, pf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range vfs {
		if v.Netdev != "" {
			out = append(out, v.Netdev)
		}
	}
	return out, nil
}

// ShimName is the host-access shim's device name for a network on a parent.
func ShimName(network, parent string) string {
	sum := sha256.Sum256([]byte("virtap-shim\x00" + network + "\x00" + parent))
	return "vts" + hex.EncodeToString(sum[:])[:12]
}

// ensureShim makes the host-access macvlan (bridge mode) on the network's
// parent, with the host's address on the guests' subnet.
func (r *Realiser) ensureShim(ir domain.IfaceRecord, undo *revert) error {
	name := ShimName(ir.Network, ir.Parent)
	pfx, err := netip.ParsePrefix(ir.HostAccess)
	if err != nil {
		return err
	}
	_, existed, err := r.Net.Find(name)
	if err != nil {
		return err
	}
	dev, err := r.Net.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvlan, Parent: ir.Parent, Mode: "bridge",
		Tag: netdev.PurposeTag("shim", ir.Network), Up: true})
	if err != nil {
		return err
	}
	if !existed {
		undo.add(func() { _ = r.Net.Delete(name) })
	}
	link, err := r.Net.Handle().LinkByIndex(dev.Index)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if err := r.Net.Handle().AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %v", ir.HostAccess, name, err)
	}
	return nil
}

// Release removes what virtap made for the domain and frees its records.
// It never fails for a domain that was never prepared or released twice;
// problems are logged and returned joined for the caller to log.
func (r *Realiser) Release(u uuid.UUID, name string) error {
	return r.release(u, name, true, nil)
}

// ReleaseGuest is Release for a guest whose document the hook has: its
// record says which interfaces are filtered (untrusted) and which networks
// have a host shim, so the rest is not looked up.
func (r *Realiser) ReleaseGuest(g *Guest) error {
	return r.release(g.UUID, g.Name, true, g.Doc.Record)
}

// release is Release; sweep says whether to look for tagged devices no
// record names (gc sweeps once for all domains instead); rec, when known,
// narrows the filter and shim work to the interfaces that have them.
func (r *Realiser) release(u uuid.UUID, name string, sweep bool, rec *domain.Record) error {
	log := r.Log.With("domain", name, "uuid", u.String())
	var errs []error
	dom, had, err := r.Store.GetDomain(u.String())
	if err != nil {
		errs = append(errs, err)
	}
	shimNets := map[string]string{} // network -> parent
	for _, ifc := range dom.Interfaces {
		if ifc.Device != "" {
			_ = r.Store.SetIfaceState(u.String(), ifc.MAC, store.StateReleasing)
			if err := r.Net.DeleteClaimed(ifc.Device, deviceKind(ifc.Kind)); err != nil && !errors.Is(err, netdev.ErrNotOurs) {
				errs = append(errs, fmt.Errorf("delete %s: %w", ifc.Device, err))
				continue
			} else if err != nil {
				log.Warn("device is not virtap's; left alone", "device", ifc.Device)
			}
		}
		if ifc.Kind == "macvtap" && (rec == nil || hostAccess(rec, ifc.Network)) {
			shimNets[ifc.Network] = ifc.Parent
		}
	}
	// Every device virtap makes is recorded before it exists, so with a
	// record the records name them all. Without one (state lost, or a
	// domain never prepared here) the tags are the truth: one link dump.
	if !had && sweep {
		if _, err := r.Net.DeleteTagged(func(t netdev.Tag) bool {
			d, ok := t.Domain()
			return ok && d == u
		}, 4); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.releasePools(u.String()); err != nil {
		errs = append(errs, err)
	}
	if err := r.releaseAddresses(u); err != nil {
		errs = append(errs, err)
	}
	if rec == nil || anyUntrusted(rec) {
		if err := r.removeFilters(u); err != nil {
			errs = append(errs, err)
		}
	}
	if had {
		// Not fsynced: the devices are gone already, and a record that a
		// power cut brings back is dropped by gc at boot.
		if err := r.Store.WithoutSync(func() error { return r.Store.DeleteDomain(u.String()) }); err != nil {
			errs = append(errs, err)
		}
	}
	for nw, parent := range shimNets {
		if err := r.dropShimIfUnused(nw, parent); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		log.Debug("released")
	}
	return errors.Join(errs...)
}

// ReleaseDevices removes the devices and anti-spoofing filters tagged for
// a domain without the state store (its lock could not be had): the tags
// are enough to know what is the domain's. Records, reservations and the
// VF settings to restore stay for gc.
func (r *Realiser) ReleaseDevices(u uuid.UUID) error {
	_, err := r.Net.DeleteTagged(func(t netdev.Tag) bool {
		d, ok := t.Domain()
		return ok && d == u
	}, 4)
	return errors.Join(err, r.removeFilters(u))
}

// dropShimIfUnused deletes a network's host shim when no recorded guest
// uses that network any more.
func (r *Realiser) dropShimIfUnused(network, parent string) error {
	name := ShimName(network, parent)
	d, ok, err := r.Net.Find(name)
	if err != nil || !ok || d.Tag.Scope != "shim" {
		return err
	}
	doms, err := r.Store.Domains()
	if err != nil {
		return err
	}
	for _, dom := range doms {
		for _, ifc := range dom.Interfaces {
			if ifc.Network == network && ifc.Kind == "macvtap" {
				return nil
			}
		}
	}
	return r.Net.Delete(name)
}

// Verify checks that the devices virtap made for a running guest exist and
// are tagged for it. It returns one problem per interface.
func (r *Realiser) Verify(g *Guest) []error {
	var errs []error
	if g.Doc.Record == nil {
		return nil
	}
	for _, ir := range g.Doc.Record.Interfaces {
		if ir.Device == "" {
			continue
		}
		d, ok, err := r.Net.Find(ir.Device)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !ok:
			errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("device %s is gone", ir.Device)})
		case d.Tag.Scope != g.UUID.String():
			errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("device %s is not tagged for this guest (tag %q)", ir.Device, d.Tag.String())})
		}
	}
	return errs
}

// Reconnect re-records a running guest's interfaces after libvirtd
// restarted: records lost to a crash are rebuilt from the document and the
// tagged devices. It only fails when the guest cannot work (a device it
// needs is gone).
func (r *Realiser) Reconnect(g *Guest) error {
	if g.Doc.Record == nil {
		return nil
	}
	for _, ir := range g.Doc.Record.Interfaces {
		ifc := store.Iface{MAC: ir.MAC, Network: ir.Network, Kind: ir.Kind, Mode: ir.Mode, Parent: ir.Parent,
			Device: ir.Device, Pool: poolName(ir), State: store.StateReady}
		if ir.Device != "" {
			d, ok, err := r.Net.Find(ir.Device)
			if err != nil {
				return err
			}
			if !ok {
				return &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("device %s is gone; the guest's NIC has no link", ir.Device)}
			}
			ifc.Parent = d.Parent
			if ir.Kind == "passthrough" && d.Parent != "" {
				if err := r.rereserve(g, ir, d.Parent); err != nil {
					r.Log.Warn("reconnect: pool reservation could not be restored", "device", d.Parent, "error", err)
				}
			}
		}
		if err := r.Store.PutIface(g.UUID.String(), g.Name, ifc); err != nil {
			return err
		}
	}
	return nil
}

// rereserve records that the guest holds the pool member whose net device
// is lower (after a lost record); the store keys members by PCI address.
func (r *Realiser) rereserve(g *Guest, ir domain.IfaceRecord, lower string) error {
	members, err := r.pool(ir).Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Netdev == lower {
			h := store.Holder{UUID: g.UUID.String(), MAC: ir.MAC, Name: g.Name}
			_, err := r.Store.Reserve(ir.Network, []string{m.Key()}, h)
			return err
		}
	}
	return fmt.Errorf("%s is not a member of pool %q", lower, ir.Network)
}

// deviceKind is the link kind of the device virtap makes for a network kind.
func deviceKind(kind string) string {
	if kind == "ipvtap" {
		return netdev.KindIPvtap
	}
	return netdev.KindMacvtap
}

func hostAccess(rec *domain.Record, network string) bool {
	for _, i := range rec.Interfaces {
		if i.Network == network && i.HostAccess != "" {
			return true
		}
	}
	return false
}

func anyUntrusted(rec *domain.Record) bool {
	for _, i := range rec.Interfaces {
		if Untrusted(i) {
			return true
		}
	}
	return false
}
