package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/policy"
)

// Anti-spoofing (SECURITY.md): an untrusted guest interface gets an
// nftables filter on the egress hook of its own host device, which sees
// every frame the guest sends (package internal/nft). Devices virtap makes
// (ipvtap, pool macvtaps) are filtered at prepare, as soon as they exist;
// libvirt's own macvtaps (type='direct') are filtered at start, from the
// device named in the live XML, before QEMU runs, and again at started.

// filters is the filter manager for the namespace of the calling thread
// (the one r.Net works in for the hook and its tests).
func (r *Realiser) filters() *nft.Manager { return nft.New(r.Log) }

// Untrusted reports whether an interface record gets anti-spoofing rules.
// Anything but an explicit "trusted" counts as untrusted (fail closed).
// Linux-bridge interfaces are left to libvirt's nwfilter, which works there.
func Untrusted(ir IfaceRecordAlias) bool {
	return ir.Kind != policy.KindBridge && ir.Trust != policy.TrustTrusted
}

// applyFilter installs anti-spoofing on the host side of a guest's device
// for untrusted networks. Called as soon as the device exists: at prepare
// for devices virtap makes, at start/started for libvirt's.
func (r *Realiser) applyFilter(g *Guest, ir IfaceRecordAlias, device string, undo *revert) error {
	if !Untrusted(ir) {
		return nil
	}
	spec, err := r.filterSpec(g, ir, device)
	if err != nil {
		return err
	}
	fm := r.filters()
	if err := fm.Apply(spec); err != nil {
		return err
	}
	if undo != nil {
		undo.add(func() {
			if err := fm.RemoveInterface(g.UUID, spec.MAC); err != nil {
				r.Log.Warn("rollback: remove filter", "device", device, "error", err)
			}
		})
	}
	r.Log.Debug("anti-spoofing filter on", "domain", g.Name, "uuid", g.UUID.String(), "mac", ir.MAC,
		"device", device, "addresses", len(spec.Addresses))
	return nil
}

// filterSpec builds the filter of one interface: its MAC, its fixed
// addresses, the addresses virtap leased to it, and how others are learned.
func (r *Realiser) filterSpec(g *Guest, ir IfaceRecordAlias, device string) (nft.Spec, error) {
	hw, err := net.ParseMAC(ir.MAC)
	if err != nil {
		return nft.Spec{}, fmt.Errorf("MAC %q: %v", ir.MAC, err)
	}
	addrs, err := r.leasedAddresses(g.UUID, ir)
	if err != nil {
		return nft.Spec{}, err
	}
	for _, f := range strings.Fields(ir.Fixed) {
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nft.Spec{}, fmt.Errorf("fixed address %q in virtap's record: %v", f, err)
		}
		addrs = append(addrs, a)
	}
	extras, err := r.extraPrefixes(g.UUID, ir)
	if err != nil {
		return nft.Spec{}, err
	}
	s := nft.Spec{Domain: g.UUID, MAC: hw, Device: device, Addresses: addrs, Learn: learnOf(ir), Extras: ExpandAll(extras)}
	return s, s.Validate()
}

// learnOf is the record's learn mode; records written before it existed
// get the policy's default for their kind (fail closed: never open).
func learnOf(ir IfaceRecordAlias) string {
	switch {
	case ir.Learn != "":
		return ir.Learn
	case ir.Kind == "ipvtap" && ir.Addresses != "":
		return nft.LearnNone
	default:
		return nft.LearnDHCP
	}
}

func (r *Realiser) leasedAddresses(u uuid.UUID, ir IfaceRecordAlias) ([]netip.Addr, error) {
	if r.Store == nil || ir.Network == "" {
		return nil, nil
	}
	ls, err := r.Store.Leases(ir.Network)
	if err != nil {
		return nil, fmt.Errorf("leases of %s: %w", ir.Network, err)
	}
	var out []netip.Addr
	for _, l := range ls {
		if l.Holder.UUID == u.String() && strings.EqualFold(l.Holder.MAC, ir.MAC) && l.Addr.IsValid() {
			out = append(out, l.Addr)
		}
	}
	return out, nil
}

// removeFilters removes every filter virtap installed for a domain.
func (r *Realiser) removeFilters(u uuid.UUID) error { return r.filters().Remove(u) }

// Started applies anti-spoofing to every untrusted interface of a running
// (or starting) guest: devices virtap made by their recorded name,
// libvirt's macvtaps by the <target dev='...'/> of the live XML. Filters
// are re-applied with the addresses leased by then. A live name that is
// missing, malformed, not a macvtap/ipvtap, carries another MAC or is
// tagged for another guest is an error: no filter is put on the wrong
// device.
//
// Both also let multicast reach libvirt's macvtaps (allowMulticast: IPv6
// neighbour discovery without a trusted RX filter).
func (r *Realiser) Started(g *Guest) error {
	if err := r.allowMulticast(g); err != nil {
		r.Log.Warn("multicast not opened on the guest's macvtap", "domain", g.Name, "error", err)
	}
	return r.startFilters(g, true)
}

// Starting is Started for libvirt's "start" operation (QEMU not yet
// running): an interface whose live device has no name yet is skipped
// (Started catches it), every other failure is an error that stops the
// guest's start.
func (r *Realiser) Starting(g *Guest) error {
	if err := r.allowMulticast(g); err != nil {
		// Only IPv6 neighbour discovery suffers: not a reason to stop the start.
		r.Log.Warn("multicast not opened on the guest's macvtap", "domain", g.Name, "error", err)
	}
	return r.startFilters(g, false)
}

func (r *Realiser) startFilters(g *Guest, strict bool) error {
	if g.Doc == nil || g.Doc.Record == nil {
		return nil
	}
	var errs []error
	for _, ir := range g.Doc.Record.Interfaces {
		if !Untrusted(ir) {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, &Error{Domain: g.Name, MAC: ir.MAC, Msg: "anti-spoofing: " + fmt.Sprintf(format, args...)})
		}
		device := ir.Device
		if ir.Kind == policy.KindMacvtap {
			device = liveTarget(g, ir.MAC)
			if device == "" {
				if strict {
					fail("the live XML names no <target dev/> for this interface; the guest runs unfiltered")
				} else {
					r.Log.Warn("no device named yet; filter waits for started", "domain", g.Name, "mac", ir.MAC)
				}
				continue
			}
		}
		if device == "" {
			fail("no device recorded for a %s interface", ir.Kind)
			continue
		}
		if err := r.checkFilterDevice(g, ir, device); err != nil {
			fail("%v", err)
			continue
		}
		if err := r.applyFilter(g, ir, device, nil); err != nil {
			fail("device %s: %v", device, err)
		}
	}
	return errors.Join(errs...)
}

// liveTarget is the device name libvirt gave the interface with that MAC.
func liveTarget(g *Guest, mac string) string {
	for _, ifc := range g.Doc.Interfaces {
		if !strings.EqualFold(ifc.MAC, mac) || ifc.TargetDev == "" {
			continue
		}
		return ifc.TargetDev
	}
	return ""
}

// checkFilterDevice makes sure a name from the XML is the guest's device
// before rules are bound to it.
func (r *Realiser) checkFilterDevice(g *Guest, ir IfaceRecordAlias, name string) error {
	if err := netdev.ValidateName(name); err != nil {
		return err
	}
	d, ok, err := r.Net.Find(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("device %s does not exist", name)
	}
	if d.Kind != netdev.KindMacvtap && d.Kind != netdev.KindIPvtap {
		return fmt.Errorf("device %s is a %s, not a macvtap or ipvtap", name, d.Kind)
	}
	if d.Ours() && !d.Tag.For(g.UUID) {
		return fmt.Errorf("device %s is tagged for another guest (%s)", name, d.Tag.String())
	}
	if ir.Kind == policy.KindMacvtap || ir.Kind == policy.KindPassthrough {
		// ipvtap devices carry their parent's MAC; macvtaps the guest's.
		if !strings.EqualFold(d.MAC.String(), ir.MAC) {
			return fmt.Errorf("device %s has MAC %s, not the guest's %s", name, d.MAC, ir.MAC)
		}
	}
	return nil
}
