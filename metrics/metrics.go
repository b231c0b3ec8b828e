// Package metrics turns what virtap holds on this host into Prometheus
// metrics: anti-spoofing frames seen and dropped, passthrough pools,
// address pools, MACs per parent against max_macs, managed guests and
// build info. It reads the state store, netlink and nftables, and changes
// nothing.
package metrics

import (
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/ipam"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/passthrough"
	"github.com/virtap/virtap/provision/policy"
)

// Source is where a snapshot is read from.
type Source struct {
	Policy    *policy.Policy // nil: no policy (pools, budgets unknown)
	Host      string         // this host's name in the policy; "" = the machine's
	Store     *store.Store   // nil: no guest was ever prepared here
	Net       *netdev.Manager
	SysfsRoot string // "/sys"
	Version   string
}

// AddrPool is an ipvtap network's dynamic address range and its leases.
type AddrPool struct {
	Network string
	Size    uint64 // addresses the range hands out (gateway excluded)
	Leased  uint64 // leases inside the range
}

// Parent is a lower device of macvtap networks and its unicast MAC budget.
type Parent struct {
	Name    string
	MACs    int // distinct MACs of macvlan/macvtap devices on it now
	MaxMACs int // the smallest max_macs of the networks on it
}

// Snapshot is one reading of the host.
type Snapshot struct {
	Version   string
	Guests    int // domains with virtap records on this host
	Names     map[string]string
	Filters   []host.FilterStatus
	Pools     []passthrough.PoolStatus
	AddrPools []AddrPool
	Parents   []Parent
}

// Gather reads the host.
func Gather(src Source) (*Snapshot, error) {
	var nets []*policy.Network
	var names []string
	var pools []host.PoolSpec
	if src.Policy != nil {
		hostName, _ := src.Policy.ResolveHost(src.Host)
		var err error
		if nets, err = src.Policy.Networks(hostName); err != nil {
			return nil, err
		}
		names = src.Policy.NetworkNames(hostName)
		for _, n := range nets {
			if n.Kind == policy.KindPassthrough {
				pools = append(pools, host.PoolSpec{Name: n.Name, PF: n.PF, Devices: n.Devices})
			}
		}
	}
	st, err := host.Collect(src.Store, src.Net, names, pools, src.SysfsRoot)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Version: src.Version, Guests: len(st.Domains), Filters: st.Filters, Pools: st.Pools, Names: map[string]string{}}
	for _, d := range st.Domains {
		s.Names[d.UUID] = d.Name
	}
	if s.AddrPools, err = addrPools(nets, st.Leases); err != nil {
		return nil, err
	}
	s.Parents = parents(nets, src.Net)
	return s, nil
}

// addrPools sizes each ipvtap network's range and counts its leases.
func addrPools(nets []*policy.Network, leases []store.Lease) ([]AddrPool, error) {
	var out []AddrPool
	for _, n := range nets {
		if n.Kind != policy.KindIpvtap || n.Addresses == "" {
			continue
		}
		p, err := host.ParsePool(n.Addresses, n.Range, n.Gateway)
		if err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
		first, last, err := store.LeaseBounds(p.Prefix, p.First, p.Last)
		if err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
		in := func(a netip.Addr) bool { return ipam.InRange(a, first, last) }
		ap := AddrPool{Network: n.Name, Size: span(first, last)}
		if p.Gateway.IsValid() && in(p.Gateway) && ap.Size > 0 {
			ap.Size--
		}
		for _, l := range leases {
			if l.Network == n.Name && in(l.Addr) {
				ap.Leased++
			}
		}
		out = append(out, ap)
	}
	return out, nil
}

// span counts the addresses from first to last (saturating at 2^64-1).
func span(first, last netip.Addr) uint64 {
	if last.Less(first) {
		return 0
	}
	a := new(big.Int).SetBytes(first.AsSlice())
	b := new(big.Int).SetBytes(last.AsSlice())
	n := b.Sub(b, a)
	n.Add(n, big.NewInt(1))
	if !n.IsUint64() {
		return ^uint64(0)
	}
	return n.Uint64()
}

// parents counts the MACs on each parent of a macvtap network (not
// passthrough mode, where one guest owns the device). A parent that does
// not exist on this host is left out.
func parents(nets []*policy.Network, nd *netdev.Manager) []Parent {
	limits := map[string]int{}
	for _, n := range nets {
		if n.Kind != policy.KindMacvtap || n.Mode == "passthrough" || n.Parent == "" {
			continue
		}
		if l, ok := limits[n.Parent]; !ok || n.MaxMACs < l {
			limits[n.Parent] = n.MaxMACs
		}
	}
	var out []Parent
	for name, limit := range limits {
		kids, err := nd.MacvlanChildren(name)
		if err != nil {
			continue
		}
		macs := map[string]bool{}
		for _, k := range kids {
			if k.Tag.Purpose() != netdev.ProbePurpose && k.MAC != nil {
				macs[strings.ToLower(k.MAC.String())] = true
			}
		}
		out = append(out, Parent{Name: name, MACs: len(macs), MaxMACs: limit})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
