package fleet

import (
	"fmt"
	"net/netip"
)

// TEMPORARY copy of the bbolt store's leaseRange and lastAddr (the store is
// being moved to internal/store); once it exports LeaseRange this file goes.

// leaseRange returns the assignable range of prefix within [start, end]
// (either may be invalid: no bound). IPv4 skips the network and broadcast
// addresses of prefixes shorter than /31, IPv6 the subnet-router anycast.
func leaseRange(p netip.Prefix, start, end netip.Addr) (netip.Addr, netip.Addr, error) {
	p = p.Masked()
	first := p.Addr()
	bits := first.BitLen()
	last := lastAddr(p)
	if p.Bits() < bits-1 {
		first = first.Next()
		if first.Is4() {
			last = last.Prev()
		}
	}
	if start.IsValid() {
		if !p.Contains(start) {
			return first, last, fmt.Errorf("range start %s is outside %s", start, p)
		}
		if start.Compare(first) > 0 {
			first = start
		}
	}
	if end.IsValid() {
		if !p.Contains(end) {
			return first, last, fmt.Errorf("range end %s is outside %s", end, p)
		}
		if end.Compare(last) < 0 {
			last = end
		}
	}
	return first, last, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	hostBits := a.BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(0xff >> (8 - n))
		hostBits -= n
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}
