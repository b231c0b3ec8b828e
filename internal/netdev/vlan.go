package netdev

import (
	"strconv"

	"github.com/virtap/virtap/internal/ifname"
)

// VLANName is the name of the 802.1Q device for VLAN id on parent (see
// ifname.VLAN).
func VLANName(parent string, id int) string { return ifname.VLAN(parent, id) }

// VLANTag is the tag of the VLAN device virtap makes for id on parent.
func VLANTag(parent string, id int) Tag {
	return PurposeTag(VLANPurpose, parent+"."+strconv.Itoa(id))
}
