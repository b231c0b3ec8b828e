package provision

import (
	"bytes"
	"testing"

	"github.com/virtap/virtap/provision/policy"
)

// TestMacvtapVLAN: a macvtap network with vlan = N sits on PARENT.N (the
// hook makes it); only mode passthrough (a VF) carries the tag itself.
func TestMacvtapVLAN(t *testing.T) {
	for _, c := range []struct {
		mode, dev string
		tag       bool
	}{{"bridge", "eth0.10", false}, {"vepa", "eth0.10", false}, {"passthrough", "eth0", true}} {
		pol, err := policy.Parse("p.toml", []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\nmode = \""+c.mode+"\"\nvlan = 10\n"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Provision(guest("lan"), Options{Policy: pol, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(res.XML, []byte(`<source dev="`+c.dev+`" mode="`+c.mode+`"/>`)) || bytes.Contains(res.XML, []byte(`<tag id="10"/>`)) != c.tag {
			t.Errorf("mode %s: want source dev %s, <vlan> tag %v:\n%s", c.mode, c.dev, c.tag, res.XML)
		}
		if res.Record.Interfaces[0].VLAN != 10 || res.Record.Interfaces[0].Parent != "eth0" {
			t.Errorf("mode %s: record %+v, want vlan 10 on parent eth0", c.mode, res.Record.Interfaces[0])
		}
		again, err := Provision(res.XML, Options{Policy: pol, Host: "h"})
		if err != nil || !bytes.Equal(again.XML, res.XML) {
			t.Errorf("mode %s: not a fixed point: %v", c.mode, err)
		}
	}
}
