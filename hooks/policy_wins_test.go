package hooks

import (
	"bytes"
	"net"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// A record that says trust="trusted" on a network the policy calls
// untrusted still gets the anti-spoofing filter: the hook takes trust (and
// every other security-relevant value) from the current policy.
func TestRecordCannotOverrulePolicy(t *testing.T) {
	e := setup(t, 0)
	text, _ := os.ReadFile(e.cfg.PolicyPath)
	text = append(text, []byte("\n[networks.ut]\nkind = \"macvtap\"\nparent = \"up0\"\nmode = \"bridge\"\ntrust = \"untrusted\"\n")...)
	if err := os.WriteFile(e.cfg.PolicyPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(e.cfg.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	e.pol = pol
	for _, forge := range []bool{false, true} {
		u := uuid.New()
		x := e.guest("forger", u, "ut")
		d, err := domain.Parse(x)
		if err != nil || d.Record == nil || d.Record.Interfaces[0].Trust != policy.TrustUntrusted {
			t.Fatalf("provisioned record: %+v %v", d.Record, err)
		}
		if forge {
			x = bytes.Replace(x, []byte(`trust="untrusted"`), []byte(`trust="trusted"`), 1)
		}
		// libvirt's macvtap for the interface, named in the live XML.
		mac := d.Record.Interfaces[0].MAC
		hw, _ := netParseMAC(mac)
		la := netlink.NewLinkAttrs()
		la.Name, la.ParentIndex, la.HardwareAddr = "macvtap5", e.ns.Link(t, "up0").Attrs().Index, hw
		if err := e.ns.NL.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}); err != nil {
			t.Fatal(err)
		}
		live := bytes.Replace(x, []byte("</interface>"), []byte("<target dev='macvtap5'/></interface>"), 1)
		if err := e.run("prepare", live); err != nil {
			t.Fatal(err)
		}
		if err := e.run("start", live); err != nil {
			t.Fatalf("start (forged %v): %v", forge, err)
		}
		doms, err := nft.New(nil).Domains()
		if err != nil {
			t.Fatal(err)
		}
		filtered := false
		for _, du := range doms {
			filtered = filtered || du == u
		}
		if !filtered {
			t.Fatalf("forged %v: an interface of an untrusted network runs without its filter", forge)
		}
		if err := e.run("release", live); err != nil {
			t.Fatal(err)
		}
		if err := e.ns.NL.LinkDel(e.ns.Link(t, "macvtap5")); err != nil {
			t.Fatal(err)
		}
	}
}

func netParseMAC(s string) ([]byte, error) {
	hw, err := net.ParseMAC(s)
	return hw, err
}
