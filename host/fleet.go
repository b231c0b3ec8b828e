package host

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/ipam"
	"github.com/virtap/virtap/internal/store"
)

// Leaser leases pool addresses: this host's bbolt store, or the fleet's
// etcd store (internal/fleet) when the policy has [fleet].
type Leaser interface {
	Lease(network string, prefix netip.Prefix, rangeStart, rangeEnd netip.Addr, exclude []netip.Addr, h store.Holder) (netip.Addr, error)
}

var _ Leaser = (*store.Store)(nil)

// guestAddress is the address an ipvtap guest interface gets at prepare.
// An address leased fleet-wide at define time is in virtap's record
// (leased=...): the hook takes it from there, never asking the fleet store,
// so a guest starts while etcd is down. It is kept in this host's store
// too (the filters and status read leases there), where no other guest may
// hold it. Without one, the address is leased from this host's store.
func (r *Realiser) guestAddress(g *Guest, ir IfaceRecordAlias, p Pool) (netip.Addr, error) {
	h := store.Holder{UUID: g.UUID.String(), MAC: ir.MAC, Name: g.Name}
	if ir.Leased == "" {
		return LeaseFor(r.Store, ir.Network, p, ir.Address, h)
	}
	a, err := netip.ParseAddr(ir.Leased)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("leased address %q in virtap's record: %v; re-provision the guest (virtap define)", ir.Leased, err)
	}
	if err := p.allows(a, ir.Address); err != nil {
		return netip.Addr{}, fmt.Errorf("leased address %s in virtap's record: %v; re-provision the guest (virtap define) to lease one from the pool", a, err)
	}
	got, err := r.Store.Lease(ir.Network, p.Prefix, a, a, nil, h)
	var ex *store.AddressesExhaustedError
	if errors.As(err, &ex) {
		return netip.Addr{}, fmt.Errorf("address %s of network %q, leased fleet-wide to this guest, is held on this host by another guest (virtap status shows whom); run virtap gc once that guest is undefined", a, ir.Network)
	}
	return got, err
}

// allows says whether a guest may use a: inside the pool's prefix and its
// range (or the guest's fixed address), never the gateway.
func (p Pool) allows(a netip.Addr, fixed string) error {
	if fixed != "" {
		if a.String() != fixed {
			return fmt.Errorf("the policy fixes this guest's address at %s", fixed)
		}
		return nil
	}
	first, last, err := ipam.LeaseRange(p.Prefix, p.First, p.Last)
	if err != nil {
		return err
	}
	if !ipam.InRange(a, first, last) || a == p.Gateway {
		return fmt.Errorf("outside the pool %s-%s of %s", first, last, p.Prefix)
	}
	return nil
}

// FleetStore is the fleet's lease store as gc sees it (internal/fleet's
// Client; host does not import it, so the hook links no etcd client).
type FleetStore interface {
	Host() string
	DomainsOf(host string) ([]string, error)
	DomainHosts(u string) ([]string, error)
	ReleaseLeases(domUUID string) ([]store.Lease, error)
}

// GCFleet reconciles the fleet's leases with this host: every domain the
// fleet store says this host has, but defined says it no longer does, is
// let go. Its leases are freed only when no other host has the domain
// (the store checks that in the same transaction), so gc here never frees
// the address of a guest that lives on another host. A nil defined (at
// boot, libvirt not asked) lets go of nothing.
func (r *Realiser) GCFleet(f FleetStore, defined func(uuid.UUID) bool, dryRun bool) ([]GCAction, error) {
	if defined == nil {
		return nil, nil
	}
	mine, err := f.DomainsOf(f.Host())
	if err != nil {
		return nil, err
	}
	var acts []GCAction
	var errs []error
	for _, s := range mine {
		u, err := uuid.Parse(s)
		if err != nil || defined(u) {
			continue
		}
		hosts, err := f.DomainHosts(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		others := slices.DeleteFunc(hosts, func(h string) bool { return h == f.Host() })
		reason := "its domain is no longer defined on this host or any other"
		if len(others) > 0 {
			reason = fmt.Sprintf("its domain is no longer defined here; its leases stay with host %s", strings.Join(others, ", "))
		}
		acts = append(acts, GCAction{What: "fleet claim", Name: s, Domain: s, Reason: reason})
		if dryRun {
			continue
		}
		freed, err := f.ReleaseLeases(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range freed {
			acts = append(acts, GCAction{What: "fleet lease", Name: l.Network + "/" + l.Addr.String(), Domain: s, Reason: "no host has its domain"})
		}
	}
	return acts, errors.Join(errs...)
}
