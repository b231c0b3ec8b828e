package host

import (
	"errors"
	"fmt"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// A network with vlan = N (macvtap other than mode passthrough, ipvtap)
// sits on an 802.1Q device PARENT.N in the host's namespace, which the
// hook makes at prepare, tagged "virtap:vlan:PARENT.N". Guests share it.
// Its reference count is the interface records in the state store: every
// record of an interface on it names it (Extra[vlanKey]), written before
// the device is made (a write-ahead intent, like a guest's own device),
// so release, rollback and gc delete it exactly when no record names it
// any more. An 802.1Q device of that name that virtap did not make (an
// operator's eth0.10) is used if it is VLAN N on the parent, never deleted.

// vlanKey is the key in a store.Iface's Extra that names its VLAN device.
const vlanKey = "vlan_device"

// usesVLANDevice says whether the interface's device sits on an 802.1Q
// device of virtap's (a VF carries its VLAN tag itself).
func usesVLANDevice(ir domain.IfaceRecord) bool {
	return ir.VLAN > 0 && ir.Parent != "" &&
		(ir.Kind == policy.KindIpvtap || ir.Kind == policy.KindMacvtap && ir.Mode != "passthrough")
}

// lowerOf is the device a guest interface's device sits on: the VLAN
// device for a network with a vlan, else the network's parent.
func lowerOf(ir domain.IfaceRecord) string {
	if usesVLANDevice(ir) {
		return netdev.VLANName(ir.Parent, ir.VLAN)
	}
	return ir.Parent
}

// ifaceExtra is the Extra of a store record: the shared devices the
// interface uses (its VLAN device, its lower's on-link responder), each
// a reference that keeps the device (nil: none).
func ifaceExtra(ir domain.IfaceRecord) map[string]string {
	var m map[string]string
	set := func(k, v string) {
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	if usesVLANDevice(ir) {
		set(vlanKey, lowerOf(ir))
	}
	if usesOnLink(ir) {
		set(onLinkKey, lowerOf(ir))
	}
	return m
}

// ensureVLAN makes (or adopts) the interface's VLAN device, after
// recording that the interface uses it.
func (r *Realiser) ensureVLAN(g *Guest, ir domain.IfaceRecord, undo *revert) error {
	if !usesVLANDevice(ir) {
		return nil
	}
	name := lowerOf(ir)
	if err := r.record(g, ir, store.Iface{Parent: name, Extra: ifaceExtra(ir)}, undo); err != nil {
		return err
	}
	d, existed, err := r.Net.Find(name)
	if err != nil {
		return err
	}
	if existed && !d.Ours() {
		if d.Kind == netdev.KindVLAN && d.Parent == ir.Parent && d.VLANID == ir.VLAN {
			r.Log.Named("vlan").Debug("using the host's own vlan device", "device", name)
			return nil
		}
		return fmt.Errorf("%s exists and is not VLAN %d on %s (it is a %s on %q, vlan %d), and it is not virtap's; rename or remove it", name, ir.VLAN, ir.Parent, d.Kind, d.Parent, d.VLANID)
	}
	if _, err := r.Net.Create(netdev.Spec{Name: name, Kind: netdev.KindVLAN, Parent: ir.Parent, VLANID: ir.VLAN,
		Tag: netdev.VLANTag(ir.Parent, ir.VLAN), Up: true}); err != nil {
		return fmt.Errorf("vlan %d on %s (module 8021q): %w", ir.VLAN, ir.Parent, err)
	}
	if !existed {
		// Made by this call, under the state lock: no other guest uses it.
		undo.add(func() { _ = r.Net.Delete(name) })
		r.Log.Named("vlan").Info("vlan device created", "device", name, "parent", ir.Parent, "vlan", ir.VLAN)
	}
	return nil
}

// extraUsers counts, per value of Extra[key] (a shared device), the
// interface records that use it, leaving out the domains skip accepts.
func (r *Realiser) extraUsers(key string, skip func(store.Domain) bool) (map[string]int, error) {
	doms, err := r.Store.Domains()
	if err != nil {
		return nil, err
	}
	used := map[string]int{}
	for _, d := range doms {
		if skip != nil && skip(d) {
			continue
		}
		for _, ifc := range d.Interfaces {
			if n := ifc.Extra[key]; n != "" {
				used[n]++
			}
		}
	}
	return used, nil
}

// dropVLANsIfUnused deletes those of names that are virtap's VLAN devices
// and that no interface record uses any more.
func (r *Realiser) dropVLANsIfUnused(names map[string]bool) error {
	if len(names) == 0 {
		return nil
	}
	used, err := r.extraUsers(vlanKey, nil)
	if err != nil {
		return err
	}
	var errs []error
	for name := range names {
		if used[name] > 0 {
			continue
		}
		d, ok, err := r.Net.Find(name)
		if err != nil || !ok || d.Tag.Purpose() != netdev.VLANPurpose {
			errs = append(errs, err)
			continue
		}
		if err := r.Net.Delete(name); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Log.Named("vlan").Info("vlan device removed with its last guest", "device", name)
	}
	return errors.Join(errs...)
}
