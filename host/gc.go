package host

import (
	"errors"
	"fmt"
	"sort"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/policy"
)

// GCAction is one thing gc removed (or would remove, in a dry run).
type GCAction struct {
	What   string `json:"what"`   // device | record | filter | reservation | lease | extra | shim | onlink | vlan | probe
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
	g := &gcRun{r: r, running: running, defined: defined, dryRun: dryRun, gone: map[uuid.UUID]bool{}}
	// The first phases only find what is gone; an error there stops gc
	// before it changes anything.
	for _, find := range []func() error{g.records, g.taggedDevices, g.filterTables, g.reservations} {
		if err := find(); err != nil {
			return nil, err
		}
	}
	g.releaseGone()
	g.leases()
	g.extras()
	if err := g.shims(); err != nil {
		return g.acts, err
	}
	if err := g.onLink(); err != nil {
		return g.acts, err
	}
	if err := g.vlans(); err != nil {
		return g.acts, err
	}
	g.probes()
	g.repair()
	return g.acts, errors.Join(g.errs...)
}

// gcRun is the state of one GC call.
type gcRun struct {
	r       *Realiser
	running func(uuid.UUID) bool
	defined func(uuid.UUID) bool
	dryRun  bool
	gone    map[uuid.UUID]bool // domains whose things go
	acts    []GCAction
	errs    []error
}

func (g *gcRun) act(a GCAction) { g.acts = append(g.acts, a) }

// records: records (and their devices) of domains that are not running.
func (g *gcRun) records() error {
	doms, err := g.r.Store.Domains()
	if err != nil {
		return err
	}
	for _, d := range doms {
		u, err := uuid.Parse(d.UUID)
		if err != nil || g.running(u) {
			continue
		}
		g.gone[u] = true
		for _, ifc := range d.Interfaces {
			if ifc.Device != "" {
				g.act(GCAction{What: "device", Name: ifc.Device, Domain: d.UUID, Reason: "its domain is not running"})
			}
		}
		g.act(GCAction{What: "record", Name: d.UUID, Domain: d.Name, Reason: "its domain is not running"})
	}
	return nil
}

// taggedDevices: tagged devices whose domain is not running, recorded or not.
func (g *gcRun) taggedDevices() error {
	devs, err := g.r.Net.List()
	if err != nil {
		return err
	}
	for _, dv := range devs {
		if u, ok := dv.Tag.Domain(); ok && !g.running(u) {
			if !g.gone[u] {
				g.act(GCAction{What: "device", Name: dv.Name, Domain: u.String(), Reason: "tagged for a domain that is not running and has no record"})
			}
			g.gone[u] = true
		}
	}
	return nil
}

// filterTables: anti-spoofing tables of domains that are not running (a
// release that never ran, e.g. after a host crash, leaves them). Not being
// able to list them does not stop gc.
func (g *gcRun) filterTables() error {
	tables, err := g.r.filters().Domains()
	if err != nil {
		g.errs = append(g.errs, err)
	}
	for _, u := range tables {
		if !g.running(u) {
			g.act(GCAction{What: "filter", Name: nft.TableName(u), Domain: u.String(), Reason: "its domain is not running"})
			g.gone[u] = true
		}
	}
	return nil
}

// reservations: pool reservations held by domains that are not running.
func (g *gcRun) reservations() error {
	pools, err := g.r.Store.Pools()
	if err != nil {
		return err
	}
	for _, p := range pools {
		res, err := g.r.Store.Reservations(p)
		if err != nil {
			return err
		}
		for _, rv := range res {
			u, err := uuid.Parse(rv.Holder.UUID)
			if err == nil && !g.running(u) {
				g.act(GCAction{What: "reservation", Name: p + "/" + rv.Device, Domain: rv.Holder.UUID, Reason: "its holder is not running"})
				g.gone[u] = true
			}
		}
	}
	return nil
}

// releaseGone releases every domain found gone, then deletes whatever
// device is still tagged for one of them: gc trusts the tags too, not only
// the records (one link dump, parallel deletes).
func (g *gcRun) releaseGone() {
	if g.dryRun {
		return
	}
	ids := make([]uuid.UUID, 0, len(g.gone))
	for u := range g.gone {
		ids = append(ids, u)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, u := range ids {
		if err := g.r.release(u, "", false, nil); err != nil {
			g.errs = append(g.errs, err)
		}
	}
	if _, err := g.r.Net.DeleteTagged(func(t netdev.Tag) bool {
		d, ok := t.Domain()
		return ok && g.gone[d]
	}, 16); err != nil {
		g.errs = append(g.errs, err)
	}
}

// leases: address leases of domains that are no longer defined.
func (g *gcRun) leases() {
	if g.defined == nil {
		return
	}
	nws, err := g.r.Store.LeaseNetworks()
	if err != nil {
		g.errs = append(g.errs, err)
	}
	holders := map[uuid.UUID]bool{}
	for _, nw := range nws {
		ls, err := g.r.Store.Leases(nw)
		if err != nil {
			g.errs = append(g.errs, err)
			continue
		}
		for _, l := range ls {
			u, err := uuid.Parse(l.Holder.UUID)
			if err == nil && !g.defined(u) && !g.running(u) {
				g.act(GCAction{What: "lease", Name: nw + "/" + l.Addr.String(), Domain: l.Holder.UUID, Reason: "its domain is no longer defined"})
				holders[u] = true
			}
		}
	}
	if g.dryRun {
		return
	}
	for u := range holders {
		if _, err := g.r.FreeLeases(u); err != nil {
			g.errs = append(g.errs, err)
		}
	}
}

// shims: host shims that no remaining record uses.
func (g *gcRun) shims() error {
	left, err := g.r.Store.Domains()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, d := range left {
		u, _ := uuid.Parse(d.UUID)
		if g.dryRun && g.gone[u] {
			continue
		}
		for _, ifc := range d.Interfaces {
			if ifc.Kind == policy.KindMacvtap || ifc.Kind == policy.KindIpvtap {
				used[ShimName(ifc.Network, ifc.Parent)] = true
			}
		}
	}
	devs, err := g.r.Net.List()
	if err != nil {
		return err
	}
	for _, dv := range devs {
		if dv.Tag.Purpose() != netdev.ShimPurpose || used[dv.Name] {
			continue
		}
		g.act(GCAction{What: "shim", Name: dv.Name, Reason: fmt.Sprintf("no recorded guest uses network %q", dv.Tag.ID)})
		if !g.dryRun {
			if err := g.r.Net.Delete(dv.Name); err != nil {
				g.errs = append(g.errs, err)
			}
		}
	}
	return nil
}

// sharedUsers counts, per shared device named in the records under key, the
// remaining records that use it (a dry run counts the gone domains' records
// as removed), and lists virtap's devices.
func (g *gcRun) sharedUsers(key string) (map[string]int, []netdev.Device, error) {
	used, err := g.r.extraUsers(key, func(d store.Domain) bool {
		u, _ := uuid.Parse(d.UUID)
		return g.dryRun && g.gone[u]
	})
	if err != nil {
		return nil, nil, err
	}
	devs, err := g.r.Net.List()
	return used, devs, err
}

// onLink: on-link responders (and their filters on the lower) that no
// remaining record uses.
func (g *gcRun) onLink() error {
	used, devs, err := g.sharedUsers(onLinkKey)
	if err != nil {
		return err
	}
	for _, dv := range devs {
		lower := dv.Tag.ID
		if a, _ := OnLinkNames(lower); dv.Tag.Purpose() != onLinkPurpose || dv.Name != a || used[lower] > 0 {
			continue
		}
		g.act(GCAction{What: "onlink", Name: dv.Name, Reason: fmt.Sprintf("no recorded guest on %s answers on-link", lower)})
		if !g.dryRun {
			if err := g.r.dropResponder(lower); err != nil {
				g.errs = append(g.errs, err)
			}
		}
	}
	return nil
}

// vlans: virtap's VLAN devices that no remaining record uses (a crash
// between a release's record deletion and the device's).
func (g *gcRun) vlans() error {
	used, devs, err := g.sharedUsers(vlanKey)
	if err != nil {
		return err
	}
	for _, dv := range devs {
		if dv.Tag.Purpose() != netdev.VLANPurpose || used[dv.Name] > 0 {
			continue
		}
		g.act(GCAction{What: "vlan", Name: dv.Name, Reason: "no recorded guest uses it"})
		if !g.dryRun {
			if err := g.r.Net.Delete(dv.Name); err != nil {
				g.errs = append(g.errs, err)
			}
		}
	}
	return nil
}

// probes: probe devices of dead doctor runs.
func (g *gcRun) probes() {
	if g.dryRun {
		return
	}
	removed, err := g.r.Net.DeleteStaleProbes()
	if err != nil {
		g.errs = append(g.errs, err)
	}
	for _, n := range removed {
		g.act(GCAction{What: "probe", Name: n, Reason: "left by a probe that did not finish"})
	}
}

// repair: indexes a crash may have left behind.
func (g *gcRun) repair() {
	if g.dryRun {
		return
	}
	if _, err := g.r.Store.Repair(); err != nil {
		g.errs = append(g.errs, err)
	}
}
