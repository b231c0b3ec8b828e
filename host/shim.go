package host

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
	"github.com/vishvananda/netlink"
)

// ShimName is the host-access shim's device name for a network on a parent.
func ShimName(network, parent string) string {
	sum := sha256.Sum256([]byte("virtap-shim\x00" + network + "\x00" + parent))
	return "vts" + hex.EncodeToString(sum[:])[:12]
}

// ensureShim makes the host-access macvlan (bridge mode) on the network's
// parent, with the host's address on the guests' subnet.
func (r *Realiser) ensureShim(ir domain.IfaceRecord, undo *revert) error {
	name := ShimName(ir.Network, ir.Parent)
	pfx, err := netip.ParsePrefix(ir.HostAccess)
	if err != nil {
		return err
	}
	_, existed, err := r.Net.Find(name)
	if err != nil {
		return err
	}
	dev, err := r.Net.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvlan, Parent: ir.Parent, Mode: "bridge",
		Tag: netdev.PurposeTag(netdev.ShimPurpose, ir.Network), Up: true})
	if err != nil {
		return err
	}
	if !existed {
		undo.add(func() { _ = r.Net.Delete(name) })
	}
	link, err := r.Net.Handle().LinkByIndex(dev.Index)
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if err := r.Net.Handle().AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %v", ir.HostAccess, name, err)
	}
	return nil
}

// dropShimIfUnused deletes a network's host shim when no recorded guest
// uses that network any more.
func (r *Realiser) dropShimIfUnused(network, parent string) error {
	name := ShimName(network, parent)
	d, ok, err := r.Net.Find(name)
	if err != nil || !ok || d.Tag.Purpose() != netdev.ShimPurpose {
		return err
	}
	doms, err := r.Store.Domains()
	if err != nil {
		return err
	}
	for _, dom := range doms {
		for _, ifc := range dom.Interfaces {
			if ifc.Network == network && ifc.Kind == policy.KindMacvtap {
				return nil
			}
		}
	}
	return r.Net.Delete(name)
}

func hostAccess(rec *domain.Record, network string) bool {
	for _, i := range rec.Interfaces {
		if i.Network == network && i.HostAccess != "" {
			return true
		}
	}
	return false
}
