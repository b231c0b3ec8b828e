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
// delivers it by address as always. IPv6 works the same way: neighbour
// solicitations for the address (ICMPv6 type 135 right after the IPv6
// header) go to the pair, B has proxy_ndp, forwarding and no DAD, and its
// advertisements (type 136) go out of the lower.
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
	onLinkPref    = 0xe21 // tc priority of virtap's ARP steal filters on a lower
	onLinkPref6   = 0xe22 // and of its IPv6 (neighbour discovery) ones
	arpOpRequest  = 1
	arpOpReply    = 2
	ndSolicit     = 135
	ndAdvert      = 136
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
		made, err := r.answerFor(lower, ir.Device, a, b, addr)
		if err != nil {
			return err
		}
		if made { // an earlier run's answers stay on a rollback
			undo.add(func() { _ = r.stopAnswering(lower, addr) })
		}
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
	if err := responderSysctls(bn); err != nil {
		return err
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
	a, err := h.LinkByName(an)
	if err != nil {
		return err
	}
	if err := r.steal(a.Attrs().Index, low.Attrs().Index, onLinkPref, unix.ETH_P_ARP, arpKeys(arpOpReply, netip.Addr{})); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("/proc/sys/net/ipv6/conf", bn)); err != nil {
		return nil // no IPv6 on this host
	}
	return r.steal(a.Attrs().Index, low.Attrs().Index, onLinkPref6, unix.ETH_P_IPV6, ndKeys(ndAdvert, netip.Addr{}))
}

// responderSysctls: proxy entries answer only on a forwarding device;
// proxy_delay 0 answers broadcast requests at once; no duplicate address
// detection, so that B has a usable link-local source for its
// advertisements right away. Set before B is up.
func responderSysctls(bn string) error {
	for _, sc := range []struct {
		path, val string
		v6        bool
	}{
		{"ipv4/conf/%s/forwarding", "1", false}, {"ipv4/neigh/%s/proxy_delay", "0", false},
		{"ipv6/conf/%s/accept_dad", "0", true}, {"ipv6/conf/%s/forwarding", "1", true},
		{"ipv6/conf/%s/proxy_ndp", "1", true}, {"ipv6/neigh/%s/proxy_delay", "0", true},
	} {
		p := filepath.Join("/proc/sys/net", fmt.Sprintf(sc.path, bn))
		if err := os.WriteFile(p, []byte(sc.val), 0); err != nil {
			if sc.v6 && errors.Is(err, os.ErrNotExist) {
				continue // no IPv6 on this host: ARP only
			}
			return fmt.Errorf("responder %s: %w", bn, err)
		}
	}
	return nil
}

// arpKeys match ARP packets of op (and, if target is valid, for it); the
// offsets are from the ARP header.
func arpKeys(op uint16, target netip.Addr) []netlink.TcU32Key {
	keys := []netlink.TcU32Key{{Off: 4, Mask: 0xffff, Val: uint32(op)}} // hlen, plen, op: the op
	if target.IsValid() {
		b := target.As4()
		keys = append(keys, netlink.TcU32Key{Off: 24, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(b[:])})
	}
	return keys
}

// ndKeys match ICMPv6 messages of type typ right after the IPv6 header
// (and, if target is valid, for that target address).
func ndKeys(typ uint8, target netip.Addr) []netlink.TcU32Key {
	keys := []netlink.TcU32Key{
		{Off: 4, Mask: 0x0000ff00, Val: uint32(unix.IPPROTO_ICMPV6) << 8}, // next header
		{Off: 40, Mask: 0xff000000, Val: uint32(typ) << 24},               // ICMPv6 type
	}
	if target.IsValid() {
		b := target.As16()
		for i := 0; i < 4; i++ {
			keys = append(keys, netlink.TcU32Key{Off: int32(48 + 4*i), Mask: 0xffffffff, Val: binary.BigEndian.Uint32(b[4*i:])})
		}
	}
	return keys
}

// steal redirects the packets of protocol proto arriving on link that
// keys match to the egress of to, with a u32 filter at priority pref.
func (r *Realiser) steal(link, to, pref int, proto uint16, keys []netlink.TcU32Key) error {
	h := r.Net.Handle()
	ingress := netlink.MakeHandle(0xffff, 0)
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link, Handle: ingress, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on index %d: %w", link, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: link, Parent: ingress, Priority: uint16(pref), Protocol: proto},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: uint8(len(keys)), Keys: keys},
		Actions:     []netlink.Action{netlink.NewMirredAction(to)},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("filter on index %d: %w", link, err)
	}
	return nil
}

// answerFor makes the responder answer ARP for addr: a host route to addr
// through the guest's device (the kernel proxies only for an address it
// routes, through another device than the one asked on), a proxy entry on
// B, and the lower's filter for requests for addr. It is idempotent (made
// says whether the filter is new); the route goes with the guest's device.
func (r *Realiser) answerFor(lower, device string, a, b netlink.Link, addr netip.Addr) (made bool, err error) {
	h := r.Net.Handle()
	ip := net.IP(addr.AsSlice())
	dev, err := h.LinkByName(device)
	if err != nil {
		return false, fmt.Errorf("device %s: %w", device, err)
	}
	bits := addr.BitLen()
	rt := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, Scope: netlink.SCOPE_LINK}
	if err := h.RouteReplace(rt); err != nil {
		return false, fmt.Errorf("route %s dev %s: %w", addr, device, err)
	}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: b.Attrs().Index, Family: family(addr), IP: ip, Flags: netlink.NTF_PROXY}); err != nil {
		return false, fmt.Errorf("proxy entry %s on %s: %w", addr, b.Attrs().Name, err)
	}
	fs, low, err := r.ourFilters(lower, a.Attrs().Index)
	if err != nil {
		return false, err
	}
	for _, f := range fs {
		if filterTarget(f) == addr {
			return false, nil
		}
	}
	if addr.Is4() {
		return true, r.steal(low, a.Attrs().Index, onLinkPref, unix.ETH_P_ARP, arpKeys(arpOpRequest, addr))
	}
	return true, r.steal(low, a.Attrs().Index, onLinkPref6, unix.ETH_P_IPV6, ndKeys(ndSolicit, addr))
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
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
		if !ok || u.Priority != onLinkPref && u.Priority != onLinkPref6 {
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

// filterTarget is the target address (ARP, or neighbour solicitation) a
// steal filter matches.
func filterTarget(u *netlink.U32) netip.Addr {
	if u.Sel == nil {
		return netip.Addr{}
	}
	var b4 [4]byte
	var b16 [16]byte
	n6 := 0
	for _, k := range u.Sel.Keys {
		switch {
		case u.Priority == onLinkPref && k.Off == 24 && k.Mask == 0xffffffff:
			binary.BigEndian.PutUint32(b4[:], k.Val)
			return netip.AddrFrom4(b4)
		case u.Priority == onLinkPref6 && k.Off >= 48 && k.Off < 64 && k.Mask == 0xffffffff:
			binary.BigEndian.PutUint32(b16[k.Off-48:], k.Val)
			n6++
		}
	}
	if n6 == 4 {
		return netip.AddrFrom16(b16)
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
		if err := h.NeighDel(&netlink.Neigh{LinkIndex: b.Attrs().Index, Family: family(addr), IP: addr.AsSlice(), Flags: netlink.NTF_PROXY}); err != nil && !errors.Is(err, unix.ENOENT) {
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
		errs = append(errs, r.stopAnswering(lower, a))
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
