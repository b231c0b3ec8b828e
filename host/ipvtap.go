package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/ipam"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/policy"
)

// ipvlan delivers by IP address: a frame that arrives on the parent (or
// comes from another ipvtap of the same parent) reaches an ipvtap device
// only when its destination address is in ipvlan's address table, and
// ipvlan fills that table from the addresses configured on the ipvtap
// device itself, in the host's namespace. The guest's own configuration is
// invisible to the host. So for each guest address virtap:
//
//  1. adds ADDR/32 (/128 for IPv6) to the guest's ipvtap device, flagged
//     IFA_F_NOPREFIXROUTE (a /32 has no prefix route anyway; for IPv6 this
//     keeps the kernel from adding one), and
//  2. deletes the route the kernel adds for it to the local table
//     ("local ADDR dev vti... table local"). Without that the host treats
//     the guest's address as its own: its own traffic to the guest goes to
//     loopback and it answers ARP for the guest on the parent.
//
// Both go away with the device at release (the device is deleted), so the
// host's own routing is left as it was. See GuestAddresses.

// AddGuestAddresses makes ipvlan deliver addrs to the ipvtap device dev
// without making them the host's own addresses (see the comment above). It
// is idempotent. h is the netlink handle of the device's namespace.
func AddGuestAddresses(h *netlink.Handle, dev string, addrs []netip.Addr) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("device %s: %w", dev, err)
	}
	for _, a := range addrs {
		a = a.Unmap()
		ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
		nl := &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NOPREFIXROUTE, Scope: int(netlink.SCOPE_HOST)}
		if a.Is6() {
			nl.Flags |= unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, nl); err != nil {
			return fmt.Errorf("address %s on %s: %w", a, dev, err)
		}
		if err := dropLocalRoute(h, link, a); err != nil {
			return err
		}
	}
	return nil
}

// dropLocalRoute deletes the local-table route the kernel made for a guest
// address on dev (none there is success).
func dropLocalRoute(h *netlink.Handle, link netlink.Link, a netip.Addr) error {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	var rs []netlink.Route
	var err error
	for try := 0; ; try++ {
		rs, err = h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: link.Attrs().Index},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 4 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("list local routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range rs {
		if r.Dst == nil || r.Type != unix.RTN_LOCAL {
			continue
		}
		ones, bits := r.Dst.Mask.Size()
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok || ones != bits || ip.Unmap() != a {
			continue
		}
		r := r
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete local route %s on %s: %w", a, link.Attrs().Name, err)
		}
	}
	return nil
}

// GuestAddresses returns the guest addresses configured on an ipvtap device.
func GuestAddresses(h *netlink.Handle, dev string) ([]netip.Addr, error) {
	link, err := h.LinkByName(dev)
	if err != nil {
		return nil, err
	}
	var as []netlink.Addr
	for try := 0; ; try++ {
		as, err = h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// Pool is an ipvtap network's address pool as the record carries it.
type Pool struct {
	Prefix  netip.Prefix
	First   netip.Addr // invalid: from the prefix
	Last    netip.Addr
	Gateway netip.Addr // invalid: none; never leased
}

// ParsePool reads addresses ("CIDR"), range ("FIRST-LAST", may be empty)
// and gateway (may be empty).
func ParsePool(addresses, rng, gateway string) (Pool, error) {
	var p Pool
	var err error
	if p.Prefix, err = netip.ParsePrefix(addresses); err != nil {
		return p, fmt.Errorf("addresses %q: %v", addresses, err)
	}
	if rng != "" {
		if p.First, p.Last, err = ipam.ParseRange(rng); err != nil {
			return p, fmt.Errorf("range %q: %v", rng, err)
		}
	}
	if gateway != "" {
		if p.Gateway, err = netip.ParseAddr(gateway); err != nil {
			return p, fmt.Errorf("gateway %q: %v", gateway, err)
		}
	}
	return p, nil
}

// LeaseAddress gives one guest interface its address from the pool: the
// same address for the same domain and MAC every time, until the lease is
// freed (virtap gc, for domains libvirt no longer knows).
func LeaseAddress(st Leaser, network string, p Pool, h store.Holder) (netip.Addr, error) {
	var exclude []netip.Addr
	if p.Gateway.IsValid() {
		exclude = append(exclude, p.Gateway)
	}
	return st.Lease(network, p.Prefix, p.First, p.Last, exclude, h)
}

// prepareAddresses gives an ipvtap guest interface its address from the
// network's pool (a lease kept in the store) and makes the host deliver it
// (AddGuestAddresses). Called after the ipvtap device exists.
func (r *Realiser) prepareAddresses(g *Guest, ir IfaceRecordAlias, undo *revert) error {
	if ir.Kind != policy.KindIpvtap || ir.Addresses == "" {
		return nil
	}
	p, err := ParsePool(ir.Addresses, ir.Range, ir.Gateway)
	if err != nil {
		return err
	}
	a, err := r.guestAddress(g, ir, p)
	if err != nil {
		return err
	}
	// Nothing to undo on the host: the addresses go with the device, which
	// the revert stack deletes if this call created it. The lease stays:
	// it is the guest's stable address.
	if err := AddGuestAddresses(r.Net.Handle(), ir.Device, []netip.Addr{a}); err != nil {
		return err
	}
	r.Log.Named("ipvtap").Info("guest address leased and routed", "domain", g.Name, "device", ir.Device, "addr", a.String())
	return nil
}

// releaseAddresses undoes the host side of prepareAddresses for a domain.
// The addresses and the removed local routes belong to the ipvtap device,
// which Release deletes before calling this, so there is nothing left to
// undo; leases are kept on purpose (stable addresses across restarts) and
// freed by FreeLeases.
func (r *Realiser) releaseAddresses(u uuid.UUID) error { return nil }

// FreeLeases frees the address leases of a domain (undefined, or gone).
func (r *Realiser) FreeLeases(u uuid.UUID) ([]store.Lease, error) {
	return r.Store.ReleaseLeases(u.String())
}

// LeaseFor leases the guest's fixed address when the policy gives one (it
// may lie outside the pool's range, never in another guest's hands), else
// a stable address from the pool.
func LeaseFor(st Leaser, network string, p Pool, fixed string, h store.Holder) (netip.Addr, error) {
	if fixed == "" {
		return LeaseAddress(st, network, p, h)
	}
	a, err := netip.ParseAddr(fixed)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("fixed address %q: %v", fixed, err)
	}
	got, err := st.Lease(network, p.Prefix, a, a, nil, h)
	if err != nil {
		var ex *store.AddressesExhaustedError
		if errors.As(err, &ex) {
			return netip.Addr{}, fmt.Errorf("fixed address %s of network %q is leased to another guest (virtap status shows whom); free it with virtap gc once that guest is undefined", a, network)
		}
		return netip.Addr{}, err
	}
	return got, nil
}
