// Package ipam reads address ranges. It touches no kernel, so the policy
// (define time) and the realiser (run time) parse "FIRST-LAST" the same way.
package ipam

import (
	"errors"
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
