package store

import (
	"net/netip"

	"github.com/virtap/virtap/internal/ipam"
)

// LeaseBounds returns the first and last address Lease may hand out from
// prefix within [start, end] (either may be invalid: no bound), by the
// same rules as Lease: for metrics and status, which count a pool.
func LeaseBounds(prefix netip.Prefix, start, end netip.Addr) (netip.Addr, netip.Addr, error) {
	return ipam.LeaseRange(prefix, start, end)
}
