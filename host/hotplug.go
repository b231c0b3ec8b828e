package host

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Hot-plug: libvirt runs no hook when an interface is attached to or
// detached from a running guest, so `virtap attach` and `virtap detach`
// call these themselves, around their libvirt calls.

// PrepareIface does for one interface of g's record (by MAC) what Prepare
// does for all: devices virtap makes, pool reservation and VF programming,
// anti-spoofing on virtap's own devices, host shim, address lease and the
// state record. On failure it undoes what it made and returns an *Error.
func (r *Realiser) PrepareIface(g *Guest, mac string) (err error) {
	ir, ok := g.Doc.Record.ByMAC(mac)
	if !ok {
		return &Error{Domain: g.Name, MAC: mac, Msg: "not in virtap's record"}
	}
	undo := &revert{kept: map[string]bool{}}
	prev, _, err := r.Store.GetDomain(g.UUID.String())
	if err != nil {
		return err
	}
	for _, p := range prev.Interfaces {
		undo.kept[strings.ToLower(p.MAC)] = true
	}
	defer func() {
		if err != nil {
			r.Log.Error("prepare of hot-plugged interface failed, rolling back", "domain", g.Name, "mac", mac, "error", err)
			undo.run()
		}
	}()
	plain, err := r.prepareIface(g, ir, undo)
	if err != nil || !plain {
		return err
	}
	return r.Store.PutIface(g.UUID.String(), g.Name, store.Iface{MAC: ir.MAC, Network: ir.Network, Kind: ir.Kind,
		Mode: ir.Mode, Parent: ir.Parent, State: store.StateReady})
}

// FilterIface binds the anti-spoofing filter of one untrusted interface of
// a running guest to the device libvirt made for it (the live XML's
// <target dev/>), after a hot-plug. Devices virtap makes itself got theirs
// in PrepareIface; trusted interfaces get none.
func (r *Realiser) FilterIface(g *Guest, mac string) error {
	ir, ok := g.Doc.Record.ByMAC(mac)
	if !ok {
		return &Error{Domain: g.Name, MAC: mac, Msg: "not in virtap's record"}
	}
	if !Untrusted(ir) || ir.Kind != policy.KindMacvtap {
		return nil
	}
	device := liveTarget(g, ir.MAC)
	if device == "" {
		return &Error{Domain: g.Name, MAC: mac, Msg: "anti-spoofing: the live XML names no <target dev/> for this interface"}
	}
	if err := r.checkFilterDevice(g, ir, device); err != nil {
		return &Error{Domain: g.Name, MAC: mac, Msg: "anti-spoofing: " + err.Error(), Err: err}
	}
	if err := r.applyFilter(g, ir, device, nil); err != nil {
		return &Error{Domain: g.Name, MAC: mac, Msg: fmt.Sprintf("anti-spoofing on %s: %v", device, err), Err: err}
	}
	return nil
}

// ReleaseIface removes what virtap holds on this host for one interface
// of a guest (ir: its record entry): its device (only if tagged for the
// guest, or claimed by its write-ahead record), pool reservation (VF
// settings restored), anti-spoofing chains, address lease and state
// record, and the network's host shim when no one else uses it. Nothing
// there is success; problems are returned joined.
func (r *Realiser) ReleaseIface(g *Guest, ir domain.IfaceRecord) error {
	u := g.UUID.String()
	log := r.Log.With("domain", g.Name, "uuid", u, "mac", ir.MAC)
	var errs []error
	dom, _, err := r.Store.GetDomain(u)
	if err != nil {
		errs = append(errs, err)
	}
	device, claim := ir.Device, ""
	for _, ifc := range dom.Interfaces {
		if strings.EqualFold(ifc.MAC, ir.MAC) && ifc.Device != "" {
			device = ifc.Device
			if ifc.State != store.StateReady { // a write-ahead claim (netdev.OwnedBy)
				claim = deviceKind(ifc.Kind)
			}
			if err := r.Store.SetIfaceState(u, ifc.MAC, store.StateReleasing); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if device != "" {
		if err := r.Net.DeleteFor(device, g.UUID, claim); errors.Is(err, netdev.ErrNotOurs) {
			log.Warn("device is not virtap's; left alone", "device", device)
		} else if err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", device, err))
		}
	}
	if ir.Kind == policy.KindPassthrough {
		p := &passthrough.Pool{Name: ir.Network, SysfsRoot: r.sysfsRoot(), Linker: passthrough.NetlinkVF{Handle: r.Net.Handle()}, Log: r.Log}
		if _, err := p.ReleaseIface(r.Store, u, ir.MAC); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", ir.Network, err))
		}
	}
	if hw, err := net.ParseMAC(ir.MAC); err == nil {
		if err := r.filters().RemoveInterface(g.UUID, hw); err != nil {
			errs = append(errs, err)
		}
	}
	if l, ok, err := r.Store.ReleaseLease(ir.Network, u, ir.MAC); err != nil {
		errs = append(errs, err)
	} else if ok {
		log.Info("address lease freed", "network", ir.Network, "addr", l.Addr.String())
	}
	if err := r.Store.RemoveIface(u, ir.MAC); err != nil {
		errs = append(errs, err)
	}
	if ir.Kind == policy.KindMacvtap && ir.HostAccess != "" {
		if err := r.dropShimIfUnused(ir.Network, ir.Parent); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
