// Package ipam reads address ranges and says which addresses of a pool
// may be leased. It touches no kernel, so the policy
// (define time) and the realiser (run time) parse "FIRST-LAST" the same way.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParseRange reads a range "FIRST-LAST" (blanks around either address are
// allowed). It does not check that first <= last or that both lie in one
// network: callers say what the range must fit.
func ParseRange(s string) (first, last netip.Addr, err error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return first, last, errors.New("want FIRST-LAST")
	}
	if first, err = netip.ParseAddr(strings.TrimSpace(lo)); err != nil {
		return first, last, err
	}
	if last, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
		return first, last, err
	}
	return first, last, nil
}

// InRange reports whether a lies in [first, last].
func InRange(a, first, last netip.Addr) bool {
	return !a.Less(first) && !last.Less(a)
}

// LeaseRange returns the assignable range of prefix within [start, end]
// (either may be invalid: no bound). IPv4 skips the network and broadcast
// addresses of prefixes shorter than /31, IPv6 the subnet-router anycast.
func LeaseRange(p netip.Prefix, start, end netip.Addr) (netip.Addr, netip.Addr, error) {
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
