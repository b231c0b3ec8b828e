package host

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Release removes what virtap made for the guest and frees its records.
// g.Doc may be nil (only the UUID and name are known); with a document,
// its record says which interfaces are filtered (untrusted) and which
// networks have a host shim, so the rest is not looked up. Without a store
// (r.Store nil: its lock could not be had) it removes the devices and
// anti-spoofing filters tagged for the guest, which the tags alone prove
// are the guest's; records, reservations and VF settings to restore stay
// for gc. It never fails for a guest that was never prepared or released
// twice; problems are returned joined for the caller to log.
func (r *Realiser) Release(g *Guest) error {
	if r.Store == nil {
		return r.releaseDevices(g.UUID)
	}
	var rec *domain.Record
	if g.Doc != nil {
		rec = g.Doc.Record
	}
	return r.release(g.UUID, g.Name, true, rec)
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
	vlans, onLink := map[string]bool{}, map[string]bool{}
	for _, ifc := range dom.Interfaces {
		if n := ifc.Extra[vlanKey]; n != "" {
			vlans[n] = true
		}
		if l := ifc.Extra[onLinkKey]; l != "" && ifc.Device != "" {
			// While the device still holds the guest's addresses.
			onLink[l] = true
			if err := r.releaseOnLink(l, ifc.Device); err != nil {
				errs = append(errs, err)
			}
		}
		if ifc.Device != "" {
			// A record that is not ready is a write-ahead claim made at
			// prepare: only then may an untagged device of virtap's name be
			// a crash leftover of this guest (netdev.OwnedBy).
			claim := ""
			if ifc.State != store.StateReady {
				claim = deviceKind(ifc.Kind)
			}
			if err := r.Store.SetIfaceState(u.String(), ifc.MAC, store.StateReleasing); err != nil {
				errs = append(errs, err) // the delete below still runs: the tag proves the device is the guest's
			}
			if err := r.Net.DeleteFor(ifc.Device, u, claim); err != nil && !errors.Is(err, netdev.ErrNotOurs) {
				errs = append(errs, fmt.Errorf("delete %s: %w", ifc.Device, err))
				continue
			} else if err != nil {
				log.Warn("device is not virtap's; left alone", "device", ifc.Device)
			}
		}
		if (ifc.Kind == policy.KindMacvtap || ifc.Kind == policy.KindIpvtap) && (rec == nil || hostAccess(rec, ifc.Network)) {
			shimNets[ifc.Network] = ifc.Parent
		}
	}
	// Every device virtap makes is recorded before it exists, so with a
	// record the records name them all. Without one (state lost, or a
	// domain never prepared here) the tags are the truth: one link dump.
	if !had && sweep {
		if _, err := r.Net.DeleteTagged(func(t netdev.Tag) bool { return t.For(u) }, 4); err != nil {
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
		if err := r.Store.DeleteDomain(u.String()); err != nil {
			errs = append(errs, err)
		}
	}
	for nw, parent := range shimNets {
		if err := r.dropShimIfUnused(nw, parent); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.dropRespondersIfUnused(onLink); err != nil {
		errs = append(errs, err)
	}
	if err := r.dropVLANsIfUnused(vlans); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		log.Debug("released")
	}
	return errors.Join(errs...)
}

// releaseDevices removes the devices and anti-spoofing filters tagged for
// a domain without the state store.
func (r *Realiser) releaseDevices(u uuid.UUID) error {
	_, err := r.Net.DeleteTagged(func(t netdev.Tag) bool { return t.For(u) }, 4)
	return errors.Join(err, r.removeFilters(u))
}

// deviceKind is the link kind of the device virtap makes for a network kind.
func deviceKind(kind string) string {
	if kind == policy.KindIpvtap {
		return netdev.KindIPvtap
	}
	return netdev.KindMacvtap
}

func anyUntrusted(rec *domain.Record) bool {
	for _, i := range rec.Interfaces {
		if Untrusted(i) {
			return true
		}
	}
	return false
}
