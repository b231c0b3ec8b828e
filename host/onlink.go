package host

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// on_link for l3 ipvtap networks: ipvlan in l3 mode hands a LAN host's ARP
// request for a guest's address to that guest's tap and drops the guest's
// reply, and the host's own stack never sees the request, so proxy ARP on
// the parent cannot answer it. What works (measured in the test host VM,
// test/vm/inside/onlink_test.go):
//
//   - a veth pair per lower device, "responder" side B with the lower's
//     MAC, IPv4 forwarding on and proxy_delay 0, and a proxy entry
//     (NTF_PROXY, as `ip neigh add proxy ADDR dev B`) per guest address,
//     with a host route ADDR/32 through the guest's ipvtap device (the
//     kernel proxies only an address it routes through another device);
//   - on the lower's ingress (tc, which runs before ipvlan), a u32 filter
//     per guest address that redirects ARP requests for it to side A, so
//     they arrive on B, where the kernel answers them with the lower's MAC;
//   - on A's ingress, a filter that sends those replies out of the lower.
//
// The LAN then sends the guest's traffic to the lower's MAC, and ipvlan
// delivers it by address as always. IPv4 only (no NDP yet).
//
// Ownership: the pair is tagged "virtap:onlink:LOWER"; virtap's filters on
// the lower sit at priority onLinkPref and redirect to that pair's side A,
// which is how they are found and the only ones removed. Reference count:
// interface records naming the lower in Extra[onLinkKey], as for VLANs.
// The lower's ingress qdisc is made if missing and never removed (other
// tools may have filters there).

const (
	onLinkKey     = "on_link"
	onLinkPurpose = "onlink"
	onLinkPref    = 0xe21 // tc priority of virtap's steal filters on a lower
	arpOpRequest  = 1
	arpOpReply    = 2
)

// OnLinkNames are the responder pair's device names for a lower device.
func OnLinkNames(lower string) (a, b string) {
	sum := sha256.Sum256([]byte("virtap-onlink\x00" + lower))
	h := "vtr" + hex.EncodeToString(sum[:])[:10]
	return h + "a", h + "b"
}

// usesOnLink says whether the interface gets on-link answers.
func usesOnLink(ir domain.IfaceRecord) bool {
	return ir.OnLink && ir.Kind == policy.KindIpvtap && ir.Mode == "l3"
}

// prepareOnLink makes the responder for the interface's lower device (after
// recording that the interface uses it) and answers for its addresses.
func (r *Realiser) prepareOnLink(g *Guest, ir domain.IfaceRecord, undo *revert) error {
	if !usesOnLink(ir) {
		return nil
	}
	lower := lowerOf(ir)
	if err := r.Store.SetIfaceExtra(g.UUID.String(), ir.MAC, map[string]string{onLinkKey: lower}); err != nil {
		return err
	}
	a, b, err := r.ensureResponder(lower, undo)
	if err != nil {
		return err
	}
	addrs, err := GuestAddresses(r.Net.Handle(), ir.Device)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		if !addr.Is4() {
			continue
		}
		if err := r.answerFor(lower, ir.Device, a, b, addr); err != nil {
			return err
		}
		undo.add(func() { _ = r.stopAnswering(lower, addr) })
	}
	return nil
}

// ensureResponder makes (or finds) the veth pair and the reply path.
func (r *Realiser) ensureResponder(lower string, undo *revert) (a, b netlink.Link, err error) {
	h := r.Net.Handle()
	an, bn := OnLinkNames(lower)
	tag := netdev.PurposeTag(onLinkPurpose, lower)
	if d, ok, err := r.Net.Find(an); err != nil {
		return nil, nil, err
	} else if ok && d.Tag != tag {
		return nil, nil, fmt.Errorf("%w: %s exists and is not virtap's on-link responder for %s", netdev.ErrNotOurs, an, lower)
	} else if !ok {
		if err := r.makeResponder(lower, an, bn, tag); err != nil {
			_ = r.Net.Delete(an)
			return nil, nil, err
		}
		undo.add(func() { _ = r.dropResponder(lower) })
	}
	if a, err = h.LinkByName(an); err == nil {
		b, err = h.LinkByName(bn)
	}
	return a, b, err
}

// makeResponder creates the pair, gives B the lower's MAC and the sysctls
// a proxy needs, and sends B's ARP replies out of the lower.
func (r *Realiser) makeResponder(lower, an, bn string, tag netdev.Tag) error {
	h := r.Net.Handle()
	low, err := h.LinkByName(lower)
	if err != nil {
		return fmt.Errorf("lower %s: %w", lower, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = an
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: bn, PeerHardwareAddr: low.Attrs().HardwareAddr}); err != nil {
		return fmt.Errorf("responder pair %s/%s: %w", an, bn, err)
	}
	for _, n := range []string{an, bn} {
		l, err := h.LinkByName(n)
		if err == nil {
			err = h.LinkSetAlias(l, tag.String())
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("responder %s: %w", n, err)
		}
	}
	for p, v := range map[string]string{
		filepath.Join("/proc/sys/net/ipv4/conf", bn, "forwarding"):   "1", // proxy entries answer only on a forwarding device
		filepath.Join("/proc/sys/net/ipv4/neigh", bn, "proxy_delay"): "0", // answer broadcast requests at once
	} {
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("responder %s: %w", bn, err)
		}
	}
	a, err := h.LinkByName(an)
	if err != nil {
		return err
	}
	return r.stealARP(a.Attrs().Index, low.Attrs().Index, arpOpReply, nil)
}

// stealARP redirects ARP packets of op (and, if target is set, for that
// target address) arriving on link to the egress of to.
func (r *Realiser) stealARP(link, to int, op uint16, target net.IP) error {
	h := r.Net.Handle()
	ingress := netlink.MakeHandle(0xffff, 0)
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: ingress, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on index %d: %w", link, err)
	}
	keys := []netlink.TcU32Key{{Off: 4, Mask: 0xffff, Val: uint32(op)}} // hlen, plen, op: the op
	if target != nil {
		keys = append(keys, netlink.TcU32Key{Off: 24, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(target.To4())})
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: link, Parent: ingress, Priority: onLinkPref, Protocol: unix.ETH_P_ARP},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: uint8(len(keys)), Keys: keys},
		Actions:     []netlink.Action{netlink.NewMirredAction(to)},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("arp filter on index %d: %w", link, err)
	}
	return nil
}

// answerFor makes the responder answer ARP for addr: a host route to addr
// through the guest's device (the kernel proxies only for an address it
// routes, through another device than the one asked on), a proxy entry on
// B, and the lower's filter for requests for addr. It is idempotent; the
// route goes with the guest's device.
func (r *Realiser) answerFor(lower, device string, a, b netlink.Link, addr netip.Addr) error {
	h := r.Net.Handle()
	ip := net.IP(addr.AsSlice())
	dev, err := h.LinkByName(device)
	if err != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	rt := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}
	if err := h.RouteReplace(rt); err != nil {
		return fmt.Errorf("route %s dev %s: %w", addr, device, err)
	}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: b.Attrs().Index, Family: netlink.FAMILY_V4, IP: ip, Flags: netlink.NTF_PROXY}); err != nil {
		return fmt.Errorf("proxy entry %s on %s: %w", addr, b.Attrs().Name, err)
	}
	fs, low, err := r.ourFilters(lower, a.Attrs().Index)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if filterTarget(f) == addr {
			return nil
		}
	}
	return r.stealARP(low, a.Attrs().Index, arpOpRequest, ip)
}

// ourFilters lists virtap's steal filters on lower (priority onLinkPref,
// redirecting to the responder's side A, index a).
func (r *Realiser) ourFilters(lower string, a int) ([]*netlink.U32, int, error) {
	h := r.Net.Handle()
	low, err := h.LinkByName(lower)
	if err != nil {
		return nil, 0, fmt.Errorf("lower %s: %w", lower, err)
	}
	all, err := h.FilterList(low, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return nil, 0, fmt.Errorf("filters of %s: %w", lower, err)
	}
	var out []*netlink.U32
	for _, f := range all {
		u, ok := f.(*netlink.U32)
		if !ok || u.Priority != onLinkPref {
			continue
		}
		for _, act := range u.Actions {
			if m, ok := act.(*netlink.MirredAction); ok && m.Ifindex == a {
				out = append(out, u)
				break
			}
		}
	}
	return out, low.Attrs().Index, nil
}

// filterTarget is the ARP target address a steal filter matches.
func filterTarget(u *netlink.U32) netip.Addr {
	if u.Sel == nil {
		return netip.Addr{}
	}
	for _, k := range u.Sel.Keys {
		if k.Off == 24 && k.Mask == 0xffffffff {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], k.Val)
			return netip.AddrFrom4(b)
		}
	}
	return netip.Addr{}
}

// stopAnswering removes addr's filter and proxy entry (none is success).
func (r *Realiser) stopAnswering(lower string, addr netip.Addr) error {
	h := r.Net.Handle()
	an, bn := OnLinkNames(lower)
	a, err := h.LinkByName(an)
	if err != nil {
		return nil // no responder: nothing of virtap's answers
	}
	var errs []error
	if b, err := h.LinkByName(bn); err == nil {
		if err := h.NeighDel(&netlink.Neigh{LinkIndex: b.Attrs().Index, Family: netlink.FAMILY_V4, IP: addr.AsSlice(), Flags: netlink.NTF_PROXY}); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	fs, _, err := r.ourFilters(lower, a.Attrs().Index)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, f := range fs {
		if filterTarget(f) == addr {
			if err := h.FilterDel(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// releaseOnLink stops answering for the addresses on a guest's device.
func (r *Realiser) releaseOnLink(lower, device string) error {
	addrs, err := GuestAddresses(r.Net.Handle(), device)
	if err != nil {
		return nil // the device is gone: its filters go with the responder, or gc
	}
	var errs []error
	for _, a := range addrs {
		if a.Is4() {
			errs = append(errs, r.stopAnswering(lower, a))
		}
	}
	return errors.Join(errs...)
}

// dropResponder removes every steal filter of virtap's on lower, then the
// pair (its filters go with it).
func (r *Realiser) dropResponder(lower string) error {
	h := r.Net.Handle()
	an, _ := OnLinkNames(lower)
	d, ok, err := r.Net.Find(an)
	if err != nil || !ok || d.Tag.Purpose() != onLinkPurpose {
		return err
	}
	var errs []error
	if fs, _, err := r.ourFilters(lower, d.Index); err == nil {
		for _, f := range fs {
			if err := h.FilterDel(f); err != nil {
				errs = append(errs, err)
			}
		}
	} else if !errors.Is(err, unix.ENODEV) {
		errs = append(errs, err)
	}
	if err := r.Net.Delete(an); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dropRespondersIfUnused removes the responders of lowers that no
// interface record uses any more.
func (r *Realiser) dropRespondersIfUnused(lowers map[string]bool) error {
	if len(lowers) == 0 {
		return nil
	}
	used, err := r.extraUsers(onLinkKey, nil)
	if err != nil {
		return err
	}
	var errs []error
	for l := range lowers {
		if used[l] == 0 {
			errs = append(errs, r.dropResponder(l))
		}
	}
	return errors.Join(errs...)
}
