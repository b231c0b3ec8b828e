package policy

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Virtual port types, spelled as libvirt's <virtualport type='...'>.
const (
	VirtualPortQbg = "802.1Qbg" // VSI discovery (VDP) through lldpad: managerid, typeid, typeidversion, instanceid
	VirtualPortQbh = "802.1Qbh" // port profile (VN-Tag): profileid
)

// Limits of the 802.1Qbg and 802.1Qbh fields (libvirt enforces the same).
const (
	MaxManagerID     = 255
	MaxTypeID        = 1<<24 - 1 // 16777215
	MaxTypeIDVersion = 255
	MaxProfileIDLen  = 39
)

// PortProblem is one invalid field of a virtual port: Key is the field
// ("type", "managerid", ...), Msg what is wrong and how to fix it.
type PortProblem struct {
	Key string
	Msg string
}

// Check returns every problem of the port on a direct (macvtap) interface
// of the given mode. These are the only 802.1Qbg/Qbh rules in virtap: the
// policy's validator and doctor's look at defined domains both use them.
//
// 802.1Qbg needs managerid 0-255, typeid 0-16777215 and typeidversion
// 0-255, an instanceid that is a UUID in its 36-character form (or none:
// virtap derives a stable one per guest interface), no profileid, and mode
// vepa: the adjacent bridge switches all of the guest's traffic. 802.1Qbh
// needs a profileid of 1 to 39 characters and no 802.1Qbg field; it puts
// no constraint on the mode (libvirt's examples use private).
func (vp *VirtualPort) Check(mode string) []PortProblem {
	var ps []PortProblem
	add := func(key, format string, a ...any) {
		ps = append(ps, PortProblem{Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	rng := func(key string, val *int, max int) {
		switch {
		case val == nil:
			add(key, "is required for 802.1Qbg; set it to a number from 0 to %d", max)
		case *val < 0 || *val > max:
			add(key, "must be from 0 to %d, not %d", max, *val)
		}
	}
	switch vp.Type {
	case VirtualPortQbg:
		rng("managerid", vp.ManagerID, MaxManagerID)
		rng("typeid", vp.TypeID, MaxTypeID)
		rng("typeidversion", vp.TypeIDVersion, MaxTypeIDVersion)
		if vp.InstanceID != "" {
			const fix = "remove it and virtap derives a stable one per guest interface"
			if u, err := uuid.Parse(vp.InstanceID); err != nil || len(vp.InstanceID) != 36 {
				add("instanceid", "%q is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f; %s", vp.InstanceID, fix)
			} else if u == uuid.Nil {
				add("instanceid", "must not be the nil UUID; %s", fix)
			}
		}
		if vp.ProfileID != "" {
			add("profileid", "belongs to 802.1Qbh, not 802.1Qbg; remove it")
		}
		if mode != "vepa" {
			add("type", "802.1Qbg needs mode = \"vepa\", not %q", mode)
		}
	case VirtualPortQbh:
		switch {
		case vp.ProfileID == "":
			add("profileid", "is required for 802.1Qbh; set it to the switch's port profile name, 1 to %d characters", MaxProfileIDLen)
		case len(vp.ProfileID) > MaxProfileIDLen:
			add("profileid", "is %d characters; 802.1Qbh allows 1 to %d", len(vp.ProfileID), MaxProfileIDLen)
		case strings.ContainsAny(vp.ProfileID, "\x00\n\r\t"):
			add("profileid", "must not contain control characters")
		}
		if vp.ManagerID != nil || vp.TypeID != nil || vp.TypeIDVersion != nil || vp.InstanceID != "" {
			add("type", "managerid, typeid, typeidversion and instanceid belong to 802.1Qbg, not 802.1Qbh; remove them")
		}
	default:
		add("type", "%q is not a virtual port type; allowed: %s", vp.Type, strings.Join(VirtualPorts, ", "))
	}
	return ps
}

func (v *validator) virtualPort(vp *VirtualPort, n *Network) *VirtualPort {
	for _, p := range vp.Check(n.Mode) {
		v.fail([]string{"virtualport", p.Key}, "%s", p.Msg)
	}
	out := *vp
	return &out
}
