package provision

import (
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/policy"
)

func ip(n int) *int { return &n }

const inst = "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"

func qbg(m, t, tv int, id string) *policy.VirtualPort {
	return &policy.VirtualPort{Type: policy.VirtualPortQbg, ManagerID: ip(m), TypeID: ip(t), TypeIDVersion: ip(tv), InstanceID: id}
}

func renderPort(t *testing.T, vp *policy.VirtualPort, seed, mac string) string {
	t.Helper()
	b, err := xml.Marshal(virtualPort(vp, seed, mac))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderVirtualPortQbg(t *testing.T) {
	const seed, mac = "5f1c3b9e-0000-4000-8000-000000000001", "52:54:00:00:00:01"
	derived := InstanceID(seed, mac)
	got := renderPort(t, qbg(11, 1193047, 2, ""), seed, mac)
	want := `<virtualport type="802.1Qbg"><parameters managerid="11" typeid="1193047" typeidversion="2" instanceid="` + derived + `"></parameters></virtualport>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Its own instanceid wins over the derived one, written lower-case.
	got = renderPort(t, qbg(0, 0, 0, strings.ToUpper(inst)), seed, mac)
	if !strings.Contains(got, `instanceid="`+inst+`"`) || !strings.Contains(got, `managerid="0"`) {
		t.Fatalf("got %s", got)
	}
}

func TestRenderVirtualPortQbh(t *testing.T) {
	got := renderPort(t, &policy.VirtualPort{Type: policy.VirtualPortQbh, ProfileID: "finance"}, "s", "52:54:00:00:00:01")
	if want := `<virtualport type="802.1Qbh"><parameters profileid="finance"></parameters></virtualport>`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// The rendered element reads back through libvirt's schema types to the
// same port: rendering and VirtualPortOf are inverse.
func TestVirtualPortRoundTrip(t *testing.T) {
	for _, v := range []*policy.VirtualPort{qbg(7, 16777215, 255, inst), {Type: policy.VirtualPortQbh, ProfileID: "web-tier"}} {
		s := renderPort(t, v, "", "")
		var lv libvirtxml.DomainInterfaceVirtualPort
		if err := xml.Unmarshal([]byte(s), &lv); err != nil {
			t.Fatal(err)
		}
		back, err := VirtualPortOf(&lv)
		if err != nil {
			t.Fatal(err)
		}
		if s2 := renderPort(t, back, "", ""); s2 != s {
			t.Fatalf("round trip: %s -> %s", s, s2)
		}
	}
}

func TestVirtualPortOfOtherTypes(t *testing.T) {
	var lv libvirtxml.DomainInterfaceVirtualPort
	if err := xml.Unmarshal([]byte(`<virtualport type="openvswitch"><parameters interfaceid="`+inst+`"/></virtualport>`), &lv); err != nil {
		t.Fatal(err)
	}
	if _, err := VirtualPortOf(&lv); !errors.Is(err, ErrNotQbgQbh) {
		t.Fatalf("openvswitch port: %v", err)
	}
	if _, err := VirtualPortOf(nil); !errors.Is(err, ErrNotQbgQbh) {
		t.Fatalf("nil port: %v", err)
	}
}

// A port in domain XML is judged by the same rules, with the same words,
// as the same port in the policy: the rules exist once.
func TestVirtualPortSameRulesForDomainXML(t *testing.T) {
	for _, c := range []struct {
		xml, mode string
		toml      string
	}{
		{`<virtualport type="802.1Qbg"><parameters managerid="300" typeid="1" typeidversion="1" instanceid="` + inst + `"/></virtualport>`, "vepa",
			"type = \"802.1Qbg\"\nmanagerid = 300\ntypeid = 1\ntypeidversion = 1\ninstanceid = \"" + inst + "\"\n"},
		{`<virtualport type="802.1Qbg"><parameters managerid="1" typeid="1" typeidversion="1" instanceid="urn:uuid:` + inst + `"/></virtualport>`, "bridge",
			"type = \"802.1Qbg\"\nmanagerid = 1\ntypeid = 1\ntypeidversion = 1\ninstanceid = \"urn:uuid:" + inst + "\"\n"},
		{`<virtualport type="802.1Qbh"><parameters profileid="` + strings.Repeat("p", 40) + `"/></virtualport>`, "private",
			"type = \"802.1Qbh\"\nprofileid = \"" + strings.Repeat("p", 40) + "\"\n"},
	} {
		var lv libvirtxml.DomainInterfaceVirtualPort
		if err := xml.Unmarshal([]byte(c.xml), &lv); err != nil {
			t.Fatal(err)
		}
		vp, err := VirtualPortOf(&lv)
		if err != nil {
			t.Fatal(err)
		}
		var fromXML []string
		for _, p := range vp.Check(c.mode) {
			fromXML = append(fromXML, "virtualport."+p.Key+": "+p.Msg)
		}
		_, err = policy.Parse("p.toml", []byte("[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nmode = \""+c.mode+"\"\n[networks.a.virtualport]\n"+c.toml))
		var pe policy.Errors
		if !errors.As(err, &pe) {
			t.Fatalf("policy accepted %q: %v", c.toml, err)
		}
		var fromPolicy []string
		for _, e := range pe {
			fromPolicy = append(fromPolicy, strings.TrimPrefix(e.Key, "networks.a.")+": "+e.Msg)
		}
		slices.Sort(fromXML) // the policy lists its errors in file order
		slices.Sort(fromPolicy)
		if len(fromXML) == 0 || strings.Join(fromXML, "\n") != strings.Join(fromPolicy, "\n") {
			t.Errorf("domain XML %s:\n%s\npolicy:\n%s", c.xml, strings.Join(fromXML, "\n"), strings.Join(fromPolicy, "\n"))
		}
	}
}
