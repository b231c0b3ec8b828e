package host

import (
	"errors"
	"fmt"
	"sort"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
)

// GCAction is one thing gc removed (or would remove, in a dry run).
type GCAction struct {
	What   string `json:"what"`   // device | record | reservation | shim | probe
	Name   string `json:"name"`   // device name, or domain UUID for records
	Domain string `json:"domain"` // the owner, when known
	Reason string `json:"reason"`
}

// GC removes what virtap owns and nothing uses any more: devices tagged for
// a domain that is not running, records and reservations of such domains,
// host shims no recorded guest needs, and leftover probe devices. It never
// touches a device without virtap's tag. running says whether a domain
// UUID is running on this host.
//
// Address leases outlive a guest's stop (the guest keeps its address); they
// are freed only when defined says the domain no longer exists. A nil
// defined (nothing known, e.g. at boot before libvirtd) frees none.
func (r *Realiser) GC(running func(uuid.UUID) bool, defined func(uuid.UUID) bool, dryRun bool) ([]GCAction, error) {
	var acts []GCAction
	var errs []error
	// 1. Records (and their devices) of domains that are not running.
	doms, err := r.Store.Domains()
	if err != nil {
		return nil, err
	}
	gone := map[uuid.UUID]bool{}
	for _, d := range doms {
		u, err := uuid.Parse(d.UUID)
		if err != nil || running(u) {
			continue
		}
		gone[u] = true
		for _, ifc := range d.Interfaces {
			if ifc.Device != "" {
				acts = append(acts, GCAction{What: "device", Name: ifc.Device, Domain: d.UUID, Reason: "its domain is not running"})
			}
		}
		acts = append(acts, GCAction{What: "record", Name: d.UUID, Domain: d.Name, Reason: "its domain is not running"})
	}
	// 2. Tagged devices whose domain is not running, recorded or not.
	devs, err := r.Net.List()
	if err != nil {
		return nil, err
	}
	for _, dv := range devs {
		if u, ok := dv.Tag.Domain(); ok && !running(u) {
			if !gone[u] {
				acts = append(acts, GCAction{What: "device", Name: dv.Name, Domain: u.String(), Reason: "tagged for a domain that is not running and has no record"})
			}
			gone[u] = true
		}
	}
	// 2b. Anti-spoofing tables of domains that are not running (a release
	// that never ran, e.g. after a host crash, leaves them).
	tables, err := r.filters().Domains()
	if err != nil {
		errs = append(errs, err)
	}
	for _, u := range tables {
		if !running(u) {
			acts = append(acts, GCAction{What: "filter", Name: nft.TableName(u), Domain: u.String(), Reason: "its domain is not running"})
			gone[u] = true
		}
	}
	// 3. Reservations held by domains that are not running.
	pools, err := r.Store.Pools()
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		res, err := r.Store.Reservations(p)
		if err != nil {
			return nil, err
		}
		for _, rv := range res {
			u, err := uuid.Parse(rv.Holder.UUID)
			if err == nil && !running(u) {
				acts = append(acts, GCAction{What: "reservation", Name: p + "/" + rv.Device, Domain: rv.Holder.UUID, Reason: "its holder is not running"})
				gone[u] = true
			}
		}
	}
	if !dryRun {
		ids := make([]uuid.UUID, 0, len(gone))
		for u := range gone {
			ids = append(ids, u)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
		for _, u := range ids {
			if err := r.release(u, "", false, nil); err != nil {
				errs = append(errs, err)
			}
		}
		// gc trusts the tags too, not only the records: one link dump and
		// parallel deletes for every domain that is gone.
		if _, err := r.Net.DeleteTagged(func(t netdev.Tag) bool {
			d, ok := t.Domain()
			return ok && gone[d]
		}, 16); err != nil {
			errs = append(errs, err)
		}
	}
	// 3b. Leases of domains that are no longer defined.
	if defined != nil {
		holders := map[uuid.UUID]bool{}
		for _, nw := range leaseNetworks(r) {
			ls, err := r.Store.Leases(nw)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, l := range ls {
				u, err := uuid.Parse(l.Holder.UUID)
				if err == nil && !defined(u) && !running(u) {
					acts = append(acts, GCAction{What: "lease", Name: nw + "/" + l.Addr.String(), Domain: l.Holder.UUID, Reason: "its domain is no longer defined"})
					holders[u] = true
				}
			}
		}
		if !dryRun {
			for u := range holders {
				if _, err := r.FreeLeases(u); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// 4. Host shims that no remaining record uses.
	left, err := r.Store.Domains()
	if err != nil {
		return acts, err
	}
	used := map[string]bool{}
	for _, d := range left {
		u, _ := uuid.Parse(d.UUID)
		if dryRun && gone[u] {
			continue
		}
		for _, ifc := range d.Interfaces {
			if ifc.Kind == "macvtap" {
				used[ShimName(ifc.Network, ifc.Parent)] = true
			}
		}
	}
	devs, err = r.Net.List()
	if err != nil {
		return acts, err
	}
	for _, dv := range devs {
		if dv.Tag.Purpose() == "shim" && !used[dv.Name] {
			acts = append(acts, GCAction{What: "shim", Name: dv.Name, Reason: fmt.Sprintf("no recorded guest uses network %q", dv.Tag.ID)})
			if !dryRun {
				if err := r.Net.Delete(dv.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// 5. Probe devices of dead doctor runs.
	if !dryRun {
		removed, err := r.Net.DeleteStaleProbes()
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range removed {
			acts = append(acts, GCAction{What: "probe", Name: n, Reason: "left by a probe that did not finish"})
		}
	}
	// 6. Repair indexes a crash may have left behind.
	if !dryRun {
		if _, err := r.Store.Repair(); err != nil {
			errs = append(errs, err)
		}
	}
	return acts, errors.Join(errs...)
}

// leaseNetworks lists the networks that hold leases.
func leaseNetworks(r *Realiser) []string {
	nws, err := r.Store.LeaseNetworks()
	if err != nil {
		r.Log.Warn("cannot list lease networks", "error", err)
	}
	return nws
}
