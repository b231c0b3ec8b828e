package ifname

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// VLAN is the name of the 802.1Q device for VLAN id on parent:
// "PARENT.ID" (the name every tool uses) when it fits in 15 characters,
// else "vtv", a hash of the parent, then ".ID" (unique per parent and id,
// and the same on every run and every host).
func VLAN(parent string, id int) string {
	suffix := "." + strconv.Itoa(id)
	if len(parent)+len(suffix) <= MaxLen {
		return parent + suffix
	}
	sum := sha256.Sum256([]byte("virtap-vlan\x00" + parent))
	return "vtv" + hex.EncodeToString(sum[:])[:MaxLen-3-len(suffix)] + suffix
}
