package host

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Prepare makes everything the guest's managed interfaces need before QEMU
// starts. On any failure it undoes what this call made and returns an
// *Error naming the interface and the fix, wrapping the cause. Running it
// again is safe.
func (r *Realiser) Prepare(g *Guest) (err error) {
	rec := g.Doc.Record
	if rec == nil || len(rec.Interfaces) == 0 {
		return nil
	}
	log := r.Log.With("domain", g.Name, "uuid", g.UUID.String())
	// Interfaces already recorded (a re-run) keep their records on rollback.
	prev, _, err := r.Store.GetDomain(g.UUID.String())
	if err != nil {
		return err
	}
	undo := &revert{kept: map[string]bool{}}
	for _, p := range prev.Interfaces {
		undo.kept[strings.ToLower(p.MAC)] = true
	}
	defer func() {
		if err != nil {
			log.Error("prepare failed, rolling back", "error", err)
			undo.run()
		}
	}()
	// Interfaces that need no device of virtap's (libvirt makes macvtaps and
	// taps, or libvirt's hostdev network picks the VF) are recorded at the
	// end in one transaction: there is no host change to protect with a
	// write-ahead record, and one fsync instead of two per interface.
	if err := r.importExtras(g); err != nil {
		return err
	}
	var plain []store.Iface
	for _, ir := range rec.Interfaces {
		isPlain, err := r.prepareIface(g, ir, undo)
		if err != nil {
			return err
		}
		if isPlain {
			plain = append(plain, store.Iface{MAC: ir.MAC, Network: ir.Network, Kind: ir.Kind, Mode: ir.Mode,
				Parent: lowerOf(ir), State: store.StateReady, Extra: ifaceExtra(ir)})
		}
	}
	if err := r.Store.PutIfaces(g.UUID.String(), g.Name, plain); err != nil {
		return err
	}
	if aerr := r.Announce(g); aerr != nil {
		log.Warn("address announcement failed; neighbours learn the move when their entries expire", "error", aerr)
	}
	return nil
}

// prepareIface does one interface's host-side work. plain says that it
// needs no device of virtap's, only a record.
func (r *Realiser) prepareIface(g *Guest, ir domain.IfaceRecord, undo *revert) (plain bool, err error) {
	fail := func(cause error, format string, args ...any) error {
		return &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf(format, args...), Err: cause}
	}
	if err := r.checkVhost(g, ir); err != nil {
		return false, fail(err, "%v", err)
	}
	switch ir.Kind {
	case policy.KindMacvtap:
		if err := r.checkParent(ir.Parent); err != nil {
			return false, fail(err, "network %q: %v", ir.Network, err)
		}
		if err := r.ensureVLAN(g, ir, undo); err != nil {
			return false, fail(err, "network %q vlan: %v", ir.Network, err)
		}
		if ir.HostAccess != "" {
			if err := r.ensureShim(ir, undo); err != nil {
				return false, fail(err, "network %q host_access: %v", ir.Network, err)
			}
		}
		return true, nil
	case policy.KindBridge:
		if err := r.checkBridge(ir.Bridge); err != nil {
			return false, fail(err, "network %q: %v", ir.Network, err)
		}
		return true, nil
	case policy.KindIpvtap:
		if err := r.checkParent(ir.Parent); err != nil {
			return false, fail(err, "network %q: %v", ir.Network, err)
		}
		if err := r.ensureVLAN(g, ir, undo); err != nil {
			return false, fail(err, "network %q vlan: %v", ir.Network, err)
		}
		if err := r.makeDevice(g, ir, lowerOf(ir), undo); err != nil {
			return false, fail(err, "network %q: %v", ir.Network, err)
		}
		if err := r.prepareAddresses(g, ir, undo); err != nil {
			return false, fail(err, "network %q addresses: %v", ir.Network, err)
		}
		// The filter went on with the device, before the lease: again with it.
		if err := r.applyFilter(g, ir, ir.Device, nil); err != nil {
			return false, fail(err, "network %q: anti-spoofing filter on %s: %v", ir.Network, ir.Device, err)
		}
		if err := r.prepareExtras(g, ir); err != nil {
			return false, fail(err, "network %q extra addresses: %v", ir.Network, err)
		}
		if err := r.prepareOnLink(g, ir, undo); err != nil {
			return false, fail(err, "network %q on_link: %v", ir.Network, err)
		}
		if ir.HostAccess != "" {
			if err := r.ensureShim(ir, undo); err != nil {
				return false, fail(err, "network %q host_access: %v", ir.Network, err)
			}
		}
		return false, nil
	case policy.KindPassthrough:
		if ir.Mode == policy.PoolModeHostdev { // libvirt's hostdev network allocates the VF
			return true, nil
		}
		if err := r.preparePool(g, ir, undo); err != nil {
			if _, ok := errors.AsType[*store.PoolExhaustedError](err); ok {
				return false, fail(err, "%v; stop one of those guests or add devices to the pool", err)
			}
			return false, fail(err, "network %q: %v", ir.Network, err)
		}
		return false, nil
	}
	return false, fail(nil, "unknown kind %q in virtap's metadata; provision the domain again with this virtap", ir.Kind)
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
	if !undo.kept[strings.ToLower(ir.MAC)] {
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
	case policy.KindIpvtap:
		spec.Kind, spec.Mode, spec.Flag = netdev.KindIPvtap, ir.Mode, ir.Flag
	default:
		spec.Kind, spec.Mode, spec.MAC = netdev.KindMacvtap, "passthrough", hw
	}
	if !netdev.IsGuestDeviceName(ir.Device) {
		return fmt.Errorf("device %q in virtap's metadata is not a name virtap gives its devices; provision the domain again", ir.Device)
	}
	owner, _, claimed, err := r.Store.DeviceOwner(ir.Device)
	if err != nil {
		return err
	}
	claimed = claimed && owner == g.UUID.String()
	// Look before claiming: a device that exists and is not this guest's
	// is refused before any record names it, so no record ever claims a
	// device someone else made.
	d, existed, err := r.Net.Find(ir.Device)
	if err != nil {
		return err
	}
	if existed && !d.Tag.For(g.UUID) && !(claimed && !d.Ours()) {
		return fmt.Errorf("%w: %s exists and is not this guest's (tag %q); remove it by hand if it is a leftover (ip link del %s)",
			netdev.ErrNotOurs, ir.Device, d.Tag.String(), ir.Device)
	}
	if err := r.record(g, ir, store.Iface{Device: ir.Device, Parent: lower, Pool: poolName(ir), Extra: ifaceExtra(ir)}, undo); err != nil {
		return err
	}
	if existed && !d.Ours() {
		// An earlier run recorded this name before making the device: a
		// crash between creation and tagging left it untagged.
		if err := r.Net.DeleteFor(ir.Device, g.UUID, spec.Kind); err != nil {
			return err
		}
		existed = false
	}
	if _, err := r.Net.Create(spec); err != nil {
		return err
	}
	if !existed {
		undo.add(func() {
			if err := r.Net.DeleteFor(ir.Device, g.UUID, ""); err != nil {
				r.Log.Warn("rollback: delete device", "device", ir.Device, "error", err)
			}
		})
	}
	if err := r.applyFilter(g, ir, ir.Device, undo); err != nil {
		return fmt.Errorf("anti-spoofing filter on %s: %w", ir.Device, err)
	}
	return r.Store.SetIfaceState(g.UUID.String(), ir.MAC, store.StateReady)
}
