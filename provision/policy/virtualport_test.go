package policy

import (
	"strings"
	"testing"
)

// vportPolicy is a macvtap network (line 1-4: mode on line 4) with a
// [virtualport] table on line 5, its keys from line 6 on.
func vportPolicy(mode string, keys ...string) []byte {
	m := ""
	if mode != "" {
		m = "mode = \"" + mode + "\""
	}
	return []byte("[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\n" + m + "\n[networks.a.virtualport]\n" + strings.Join(keys, "\n") + "\n")
}

const vpInst = "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"

// The 802.1Qbg/Qbh rules are enforced once, by VirtualPort.Check: every
// bad port reaches the user through Parse with file, line, key, the
// allowed values and the fix. (doctor reads ports of defined domains back
// into this form and reports the same messages; see provision's
// TestVirtualPortSameRulesForDomainXML.)
func TestVirtualPortRulesEnforcedOnce(t *testing.T) {
	qbg := `type = "802.1Qbg"`
	qbh := `type = "802.1Qbh"`
	for _, c := range []struct {
		name string
		toml []byte
		want string
	}{
		{"managerid 256", vportPolicy("vepa", qbg, "managerid = 256", "typeid = 1", "typeidversion = 1"),
			`p.toml:7: networks.a.virtualport.managerid: must be from 0 to 255, not 256`},
		{"managerid -1", vportPolicy("vepa", qbg, "managerid = -1", "typeid = 1", "typeidversion = 1"),
			`p.toml:7: networks.a.virtualport.managerid: must be from 0 to 255, not -1`},
		{"typeid 2^24", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 16777216", "typeidversion = 1"),
			`p.toml:8: networks.a.virtualport.typeid: must be from 0 to 16777215, not 16777216`},
		{"typeidversion 256", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 256"),
			`p.toml:9: networks.a.virtualport.typeidversion: must be from 0 to 255, not 256`},
		{"qbg missing numbers", vportPolicy("vepa", qbg, "managerid = 1"),
			"p.toml:5: networks.a.virtualport.typeid: is required for 802.1Qbg; set it to a number from 0 to 16777215\n" +
				"p.toml:5: networks.a.virtualport.typeidversion: is required for 802.1Qbg; set it to a number from 0 to 255"},
		{"instanceid word", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1", `instanceid = "nope"`),
			`p.toml:10: networks.a.virtualport.instanceid: "nope" is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f; remove it and virtap derives a stable one per guest interface`},
		{"instanceid urn", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1", `instanceid = "urn:uuid:`+vpInst+`"`),
			`p.toml:10: networks.a.virtualport.instanceid: "urn:uuid:` + vpInst + `" is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f; remove it and virtap derives a stable one per guest interface`},
		{"instanceid no dashes", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1", `instanceid = "`+strings.ReplaceAll(vpInst, "-", "")+`"`),
			`p.toml:10: networks.a.virtualport.instanceid: "` + strings.ReplaceAll(vpInst, "-", "") + `" is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f; remove it and virtap derives a stable one per guest interface`},
		{"instanceid nil", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1", `instanceid = "00000000-0000-0000-0000-000000000000"`),
			`p.toml:10: networks.a.virtualport.instanceid: must not be the nil UUID; remove it and virtap derives a stable one per guest interface`},
		{"qbg profileid", vportPolicy("vepa", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1", `profileid = "x"`),
			`p.toml:10: networks.a.virtualport.profileid: belongs to 802.1Qbh, not 802.1Qbg; remove it`},
		{"qbg without vepa", vportPolicy("", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1"),
			`p.toml:6: networks.a.virtualport.type: 802.1Qbg needs mode = "vepa", not "bridge"`},
		{"qbg on private", vportPolicy("private", qbg, "managerid = 1", "typeid = 1", "typeidversion = 1"),
			`p.toml:6: networks.a.virtualport.type: 802.1Qbg needs mode = "vepa", not "private"`},
		{"qbh no profileid", vportPolicy("", qbh),
			`p.toml:5: networks.a.virtualport.profileid: is required for 802.1Qbh; set it to the switch's port profile name, 1 to 39 characters`},
		{"qbh profileid 40", vportPolicy("", qbh, `profileid = "`+strings.Repeat("p", 40)+`"`),
			`p.toml:7: networks.a.virtualport.profileid: is 40 characters; 802.1Qbh allows 1 to 39`},
		{"qbh control character", vportPolicy("", qbh, `profileid = "a\tb"`),
			`p.toml:7: networks.a.virtualport.profileid: must not contain control characters`},
		{"qbh with qbg fields", vportPolicy("private", qbh, `profileid = "p"`, "managerid = 1"),
			`p.toml:6: networks.a.virtualport.type: managerid, typeid, typeidversion and instanceid belong to 802.1Qbg, not 802.1Qbh; remove them`},
		{"unknown type", vportPolicy("", `type = "openvswitch"`),
			`p.toml:6: networks.a.virtualport.type: "openvswitch" is not a virtual port type; allowed: 802.1Qbg, 802.1Qbh`},
		{"every field at once", vportPolicy("vepa", qbg, "managerid = 300", "typeid = -5", "typeidversion = 999", `instanceid = "x"`),
			"p.toml:7: networks.a.virtualport.managerid: must be from 0 to 255, not 300\n" +
				"p.toml:8: networks.a.virtualport.typeid: must be from 0 to 16777215, not -5\n" +
				"p.toml:9: networks.a.virtualport.typeidversion: must be from 0 to 255, not 999\n" +
				`p.toml:10: networks.a.virtualport.instanceid: "x" is not a UUID such as 09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f; remove it and virtap derives a stable one per guest interface`},
	} {
		_, err := Parse("p.toml", c.toml)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if err.Error() != c.want {
			t.Errorf("%s:\ngot  %s\nwant %s", c.name, err, c.want)
		}
	}
}

func TestVirtualPortAccepts(t *testing.T) {
	for _, c := range []struct {
		name string
		toml []byte
	}{
		{"qbg zero", vportPolicy("vepa", `type = "802.1Qbg"`, "managerid = 0", "typeid = 0", "typeidversion = 0", `instanceid = "`+vpInst+`"`)},
		{"qbg max", vportPolicy("vepa", `type = "802.1Qbg"`, "managerid = 255", "typeid = 16777215", "typeidversion = 255")},
		{"qbg upper-case uuid", vportPolicy("vepa", `type = "802.1Qbg"`, "managerid = 1", "typeid = 2", "typeidversion = 3", `instanceid = "`+strings.ToUpper(vpInst)+`"`)},
		{"qbh", vportPolicy("private", `type = "802.1Qbh"`, `profileid = "finance"`)},
		{"qbh 39 on bridge", vportPolicy("", `type = "802.1Qbh"`, `profileid = "`+strings.Repeat("p", 39)+`"`)},
	} {
		p, err := Parse("p.toml", c.toml)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		nw, _, err := p.Network("", "a")
		if err != nil || nw.VirtualPort == nil {
			t.Errorf("%s: network %+v, %v", c.name, nw, err)
		}
	}
}
