package host

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

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

// ensureShim makes the network's host-access shim on the guests' lower
// device, with the host's address on the guests' subnet: a macvlan
// (bridge mode) for macvtap networks; for ipvtap networks an ipvlan in the
// network's mode and flag (ipvlan's mode belongs to the parent: a shim in
// another mode would switch every guest on it), with accept_local set
// (see shimSysctls).
func (r *Realiser) ensureShim(ir domain.IfaceRecord, undo *revert) error {
	lower := lowerOf(ir)
	name := ShimName(ir.Network, lower)
	pfx, err := netip.ParsePrefix(ir.HostAccess)
	if err != nil {
		return err
	}
	_, existed, err := r.Net.Find(name)
	if err != nil {
		return err
	}
	spec := netdev.Spec{Name: name, Kind: netdev.KindMacvlan, Parent: lower, Mode: "bridge",
		Tag: netdev.PurposeTag(netdev.ShimPurpose, ir.Network), Up: true}
	if ir.Kind == policy.KindIpvtap {
		spec.Kind, spec.Mode, spec.Flag = netdev.KindIPvlan, ir.Mode, ir.Flag
	}
	dev, err := r.Net.Create(spec)
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
	if ir.Kind == policy.KindIpvtap {
		if err := shimSysctls(name); err != nil {
			return err
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if err := r.Net.Handle().AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %v", ir.HostAccess, name, err)
	}
	return nil
}

// shimSysctls sets accept_local on an ipvtap network's shim (in the
// calling thread's network namespace, where the hook runs): every guest
// address sits on the guest's ipvtap device in the host's namespace, so
// without it the host drops the guests' replies to the shim as martian
// (measured in the test host VM, test/vm/inside/reach_test.go).
func shimSysctls(name string) error {
	p := filepath.Join("/proc/sys/net/ipv4/conf", name, "accept_local")
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("set accept_local on %s: %w", name, err)
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
			if ifc.Network == network && (ifc.Kind == policy.KindMacvtap || ifc.Kind == policy.KindIpvtap) {
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
