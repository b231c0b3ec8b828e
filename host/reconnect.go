package host

import (
	"errors"
	"fmt"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

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
	var errs []error
	for _, ir := range g.Doc.Record.Interfaces {
		ifc := store.Iface{MAC: ir.MAC, Network: ir.Network, Kind: ir.Kind, Mode: ir.Mode, Parent: lowerOf(ir),
			Device: ir.Device, Pool: poolName(ir), State: store.StateReady, Extra: ifaceExtra(ir)}
		if ir.Device != "" {
			d, ok, owned, err := r.Net.FindFor(ir.Device, g.UUID)
			if err != nil {
				return err
			}
			if !ok {
				errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("device %s is gone; the guest's NIC has no link", ir.Device)})
				continue
			}
			if !owned {
				// The document names a device that is not tagged for this
				// guest: never adopt it (a later release would delete it).
				errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("device %s is not tagged for this guest (alias %q); not adopted", ir.Device, d.Tag.String())})
				continue
			}
			ifc.Parent = d.Parent
			if ir.Kind == policy.KindPassthrough && d.Parent != "" {
				if err := r.rereserve(g, ir, d.Parent); err != nil {
					r.Log.Warn("reconnect: pool reservation could not be restored", "device", d.Parent, "error", err)
				}
			}
		}
		if err := r.Store.PutIface(g.UUID.String(), g.Name, ifc); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
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
