package policy

import (
	"strings"

	"github.com/google/uuid"
)

func (v *validator) virtualPort(vp *VirtualPort, n *Network) *VirtualPort {
	out := *vp
	rng := func(key string, val *int, max int) {
		if val != nil && (*val < 0 || *val > max) {
			v.fail([]string{"virtualport", key}, "must be from 0 to %d, not %d", max, *val)
		}
	}
	switch vp.Type {
	case "802.1Qbg":
		for key, val := range map[string]*int{"managerid": vp.ManagerID, "typeid": vp.TypeID, "typeidversion": vp.TypeIDVersion} {
			if val == nil {
				v.fail([]string{"virtualport", key}, "is required for 802.1Qbg (managerid 0-255, typeid 0-16777215, typeidversion 0-255)")
			}
		}
		rng("managerid", vp.ManagerID, 255)
		rng("typeid", vp.TypeID, 16777215)
		rng("typeidversion", vp.TypeIDVersion, 255)
		if vp.InstanceID != "" {
			if _, err := uuid.Parse(vp.InstanceID); err != nil {
				v.fail([]string{"virtualport", "instanceid"}, "%q is not a UUID; remove it and virtap derives a stable one per guest interface", vp.InstanceID)
			}
		}
		if vp.ProfileID != "" {
			v.fail([]string{"virtualport", "profileid"}, "belongs to 802.1Qbh, not 802.1Qbg")
		}
		if n.Mode != "vepa" {
			v.fail([]string{"virtualport", "type"}, "802.1Qbg needs mode = \"vepa\", not %q", n.Mode)
		}
	case "802.1Qbh":
		if vp.ProfileID == "" || len(vp.ProfileID) > 39 {
			v.fail([]string{"virtualport", "profileid"}, "802.1Qbh needs a profileid of 1 to 39 characters")
		}
		if vp.ManagerID != nil || vp.TypeID != nil || vp.TypeIDVersion != nil || vp.InstanceID != "" {
			v.fail([]string{"virtualport", "type"}, "managerid, typeid, typeidversion and instanceid belong to 802.1Qbg, not 802.1Qbh")
		}
	default:
		v.fail([]string{"virtualport", "type"}, "%q is not a virtual port type; allowed: %s", vp.Type, strings.Join(VirtualPorts, ", "))
	}
	return &out
}
