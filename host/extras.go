package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// IfaceRecordAlias keeps the extension files short.
type IfaceRecordAlias = domain.IfaceRecord

// Extra addresses (issue 16): addresses a guest interface may use besides
// its own, for containers nested in the guest (ipvlan inside the VM). They
// come from the policy (the record's "extra" attribute) and from virtap
// addr (the store, keyed by domain UUID and MAC; the record's "added"
// attribute carries them to another host). On an untrusted interface they
// are the elements of the filter's extra sets; on ipvtap they are also
// registered on the guest's device, as its own address is, so that ipvlan
// delivers them (and the LAN reaches them as it reaches the guest:
// Realiser.Reach, on-link answers on l3, gratuitous ARP or unsolicited NA).

// maxImported caps what a record may bring in (the CLI enforced the
// policy's max_extra_addresses where the addresses were added).
const maxImported = 65536

// ParsePrefixes reads a record's space-separated extra addresses.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Fields(list) {
		p, err := policy.ParseExtra(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ExpandAll lists the addresses of prefixes, each once.
func ExpandAll(ps []netip.Prefix) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, p := range ps {
		if policy.ExtraSize(p) > maxImported {
			continue
		}
		for _, a := range policy.Expand(p) {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// extraPrefixes is everything an interface may use besides its own: the
// policy's (record), the run-time ones (store) and, before they reach the
// store, those the record brought from another host.
func (r *Realiser) extraPrefixes(u uuid.UUID, ir IfaceRecordAlias) ([]netip.Prefix, error) {
	ps, err := ParsePrefixes(ir.Extra + " " + ir.Added)
	if err != nil {
		return nil, fmt.Errorf("extra addresses in virtap's record: %v", err)
	}
	if r.Store == nil {
		return ps, nil
	}
	es, err := r.Store.ExtrasOf(u.String())
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if !strings.EqualFold(e.MAC, ir.MAC) {
			continue
		}
		more, err := ParsePrefixes(strings.Join(e.Prefixes, " "))
		if err != nil {
			return nil, fmt.Errorf("extra addresses in the store: %v", err)
		}
		ps = append(ps, more...)
	}
	return ps, nil
}

// importExtras records the run-time extras a domain's record carries (it
// arrived by migration, or was defined elsewhere) in this host's store, so
// that gc, status and other guests' requests see them. An address another
// guest here holds stops the start.
func (r *Realiser) importExtras(g *Guest) error {
	if r.Store == nil || g.Doc == nil || g.Doc.Record == nil {
		return nil
	}
	for _, ir := range g.Doc.Record.Interfaces {
		ps, err := ParsePrefixes(ir.Added)
		if err != nil {
			return &Error{Domain: g.Name, MAC: ir.MAC, Msg: "extra addresses in virtap's record: " + err.Error()}
		}
		for _, p := range ps {
			if _, err := r.Store.AddExtra(g.UUID.String(), g.Name, ir.MAC, ir.Network, p, maxImported); err != nil {
				return &Error{Domain: g.Name, MAC: ir.MAC, Msg: fmt.Sprintf("extra address %s: %v; remove it with virtap addr del on the host it came from, or from the other guest", p, err), Err: err}
			}
		}
	}
	return nil
}

// prepareExtras registers an ipvtap interface's extra addresses on its
// device (before prepareOnLink answers for them and the hook announces
// every address on the device).
func (r *Realiser) prepareExtras(g *Guest, ir IfaceRecordAlias) error {
	ps, err := r.extraPrefixes(g.UUID, ir)
	if err != nil || len(ps) == 0 {
		return err
	}
	return ChangeExtras(r.Log, r.Net.Handle(), g.UUID, ir, ir.Device, ExpandAll(ps), true)
}

// ChangeExtras gives (add) or takes back extra addresses of a running
// guest's interface at once: the filter's sets of an untrusted interface
// (device is its host device, for the record only), and on ipvtap the
// addresses on the device in h's namespace; Realiser.Reach then answers
// on-link for them and announces them.
func ChangeExtras(log hclog.Logger, h *netlink.Handle, u uuid.UUID, ir IfaceRecordAlias, device string, addrs []netip.Addr, add bool) error {
	hw, err := net.ParseMAC(ir.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %v", ir.MAC, err)
	}
	if Untrusted(ir) {
		fm := nft.New(log)
		if add {
			err = fm.AddExtras(u, hw, addrs)
		} else {
			err = fm.DelExtras(u, hw, addrs)
		}
		if err != nil && !(errors.Is(err, nft.ErrNoFilter) && ir.Kind == policy.KindIpvtap && !add) {
			return err
		}
	}
	if ir.Kind != policy.KindIpvtap || device == "" {
		return nil
	}
	if !add {
		return DelGuestAddresses(h, device, addrs)
	}
	// Announcing them (and on-link answers) is Realiser.Reach's, which the
	// caller runs once the addresses are on the device.
	return AddGuestAddresses(h, device, addrs)
}

// DelGuestAddresses removes guest addresses from an ipvtap device (absent
// ones are success), so that ipvlan no longer delivers them.
func DelGuestAddresses(h *netlink.Handle, dev string, addrs []netip.Addr) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("device %s: %w", dev, err)
	}
	for _, a := range addrs {
		a = a.Unmap()
		ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
		if err := h.AddrDel(link, &netlink.Addr{IPNet: ipn}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("address %s on %s: %w", a, dev, err)
		}
	}
	return nil
}

// extras (gc): run-time extra addresses of domains that are no longer
// defined. Like leases they outlive a stop: the guest keeps them.
func (g *gcRun) extras() {
	if g.defined == nil {
		return
	}
	all, err := g.r.Store.AllExtras()
	if err != nil {
		g.errs = append(g.errs, err)
		return
	}
	gone := map[uuid.UUID]bool{}
	for _, e := range all {
		u, err := uuid.Parse(e.UUID)
		if err != nil || g.defined(u) || g.running(u) {
			continue
		}
		for _, p := range e.Prefixes {
			g.act(GCAction{What: "extra", Name: e.Network + "/" + p, Domain: e.UUID, Reason: "its domain is no longer defined"})
		}
		gone[u] = true
	}
	if g.dryRun {
		return
	}
	for u := range gone {
		if _, err := g.r.Store.ReleaseExtras(u.String()); err != nil {
			g.errs = append(g.errs, err)
		}
	}
}
