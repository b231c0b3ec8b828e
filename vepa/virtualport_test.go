package vepa

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/policy"
)

func ip(n int) *int { return &n }

const inst = "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"

func qbg(m, t, tv int, id string) *VirtualPort {
	return &VirtualPort{Type: TypeQbg, ManagerID: ip(m), TypeID: ip(t), TypeIDVersion: ip(tv), InstanceID: id}
}

func TestValidateAccepts(t *testing.T) {
	for name, v := range map[string]*VirtualPort{
		"qbg zero":        qbg(0, 0, 0, inst),
		"qbg max":         qbg(255, 16777215, 255, inst),
		"qbg no instance": qbg(11, 1193047, 2, ""),
		"qbg upper uuid":  qbg(1, 2, 3, strings.ToUpper(inst)),
		"qbh":             {Type: TypeQbh, ProfileID: "finance"},
		"qbh 39":          {Type: TypeQbh, ProfileID: strings.Repeat("p", 39)},
	} {
		if err := v.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for _, c := range []struct {
		name  string
		v     *VirtualPort
		field string
		msg   string
	}{
		{"managerid 256", qbg(256, 0, 0, inst), "managerid", "from 0 to 255, not 256"},
		{"managerid -1", qbg(-1, 0, 0, inst), "managerid", "not -1"},
		{"typeid 2^24", qbg(0, 16777216, 0, inst), "typeid", "from 0 to 16777215, not 16777216"},
		{"typeidversion 256", qbg(0, 0, 256, inst), "typeidversion", "from 0 to 255"},
		{"instanceid", qbg(0, 0, 0, "not-a-uuid"), "instanceid", "is not a UUID"},
		{"instanceid nil", qbg(0, 0, 0, "00000000-0000-0000-0000-000000000000"), "instanceid", "nil UUID"},
		{"instanceid urn", qbg(0, 0, 0, "urn:uuid:"+inst), "instanceid", "is not a UUID"},
		{"qbg missing", &VirtualPort{Type: TypeQbg, ManagerID: ip(1)}, "typeid", "is required"},
		{"qbg profileid", &VirtualPort{Type: TypeQbg, ManagerID: ip(1), TypeID: ip(1), TypeIDVersion: ip(1), ProfileID: "x"}, "profileid", "belongs to 802.1Qbh"},
		{"qbh empty", &VirtualPort{Type: TypeQbh}, "profileid", "is required"},
		{"qbh 40", &VirtualPort{Type: TypeQbh, ProfileID: strings.Repeat("p", 40)}, "profileid", "40 characters"},
		{"qbh managerid", &VirtualPort{Type: TypeQbh, ProfileID: "p", ManagerID: ip(1)}, "type", "belong to 802.1Qbg"},
		{"type", &VirtualPort{Type: "802.1Qbx"}, "type", `"802.1Qbx" is not a virtual port type`},
	} {
		err := c.v.Validate()
		var ve ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: error %v, want a ValidationError", c.name, err)
			continue
		}
		found := false
		for _, fe := range ve {
			if fe.Field == c.field && strings.Contains(fe.Msg, c.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %v; want field %s with %q", c.name, err, c.field, c.msg)
		}
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	err := qbg(300, -5, 999, "x").Validate()
	var ve ValidationError
	if !errors.As(err, &ve) || len(ve) != 4 {
		t.Fatalf("got %v, want 4 field errors", err)
	}
}

func TestValidateFor(t *testing.T) {
	if err := qbg(1, 2, 3, inst).ValidateFor("vepa"); err != nil {
		t.Fatal(err)
	}
	err := qbg(1, 2, 3, inst).ValidateFor("bridge")
	if err == nil || !strings.Contains(err.Error(), `802.1Qbg needs mode vepa, not "bridge"`) {
		t.Fatalf("802.1Qbg on bridge mode: %v", err)
	}
	if err := (&VirtualPort{Type: TypeQbh, ProfileID: "p"}).ValidateFor("private"); err != nil {
		t.Fatal(err)
	}
	// A range error and a mode error are both reported.
	err = qbg(256, 2, 3, inst).ValidateFor("private")
	var ve ValidationError
	if !errors.As(err, &ve) || len(ve) != 2 {
		t.Fatalf("got %v, want 2 errors", err)
	}
}

func TestRenderQbg(t *testing.T) {
	got, err := qbg(11, 1193047, 2, "").Render(strings.ToUpper(inst))
	if err != nil {
		t.Fatal(err)
	}
	want := `<virtualport type="802.1Qbg"><parameters managerid="11" typeid="1193047" typeidversion="2" instanceid="` + inst + `"></parameters></virtualport>`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Its own instanceid wins over the derived one.
	other := "5d2b7a4e-6f0f-4c1d-9a34-2f9c1f0f0a11"
	got, err = qbg(0, 0, 0, other).Render(inst)
	if err != nil || !strings.Contains(got, `instanceid="`+other+`"`) || !strings.Contains(got, `managerid="0"`) {
		t.Fatalf("got %s, %v", got, err)
	}
}

func TestRenderQbh(t *testing.T) {
	got, err := (&VirtualPort{Type: TypeQbh, ProfileID: "finance"}).Render(inst)
	if err != nil {
		t.Fatal(err)
	}
	if want := `<virtualport type="802.1Qbh"><parameters profileid="finance"></parameters></virtualport>`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestRenderRefusesInvalid(t *testing.T) {
	if _, err := qbg(256, 0, 0, inst).Render(""); err == nil {
		t.Fatal("rendered managerid 256")
	}
	if _, err := qbg(1, 1, 1, "").Render(""); err == nil || !strings.Contains(err.Error(), "instanceid") {
		t.Fatalf("rendered 802.1Qbg without any instance id: %v", err)
	}
	if _, err := qbg(1, 1, 1, "").Render("bad"); err == nil {
		t.Fatal("rendered a bad derived instance id")
	}
}

// The rendered element reads back through libvirt's schema types to the
// same port: render and FromLibvirt are inverse.
func TestRoundTrip(t *testing.T) {
	for _, v := range []*VirtualPort{qbg(7, 16777215, 255, inst), {Type: TypeQbh, ProfileID: "web-tier"}} {
		s, err := v.Render("")
		if err != nil {
			t.Fatal(err)
		}
		var lv libvirtxml.DomainInterfaceVirtualPort
		if err := xml.Unmarshal([]byte(s), &lv); err != nil {
			t.Fatal(err)
		}
		back, err := FromLibvirt(&lv)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := back.Render("")
		if err != nil || s2 != s {
			t.Fatalf("round trip: %s -> %s (%v)", s, s2, err)
		}
	}
}

func TestFromLibvirtOther(t *testing.T) {
	var lv libvirtxml.DomainInterfaceVirtualPort
	if err := xml.Unmarshal([]byte(`<virtualport type="openvswitch"><parameters interfaceid="`+inst+`"/></virtualport>`), &lv); err != nil {
		t.Fatal(err)
	}
	if _, err := FromLibvirt(&lv); err == nil || !strings.Contains(err.Error(), "openvswitch") {
		t.Fatalf("openvswitch port: %v", err)
	}
	if _, err := FromLibvirt(nil); err == nil {
		t.Fatal("nil port accepted")
	}
}

// A virtual port that passes policy validation passes here too, and one
// the policy refuses is refused here.
func TestFromPolicy(t *testing.T) {
	p, err := policy.Parse("t.toml", []byte(`
[networks.lan]
kind = "macvtap"
parent = "eth0"
mode = "vepa"
[networks.lan.virtualport]
type = "802.1Qbg"
managerid = 11
typeid = 1193047
typeidversion = 2
`))
	if err != nil {
		t.Fatal(err)
	}
	nw, _, err := p.Network("", "lan")
	if err != nil {
		t.Fatal(err)
	}
	v := FromPolicy(nw.VirtualPort)
	if err := v.ValidateFor(nw.Mode); err != nil {
		t.Fatal(err)
	}
	if FromPolicy(nil) != nil {
		t.Fatal("FromPolicy(nil) is not nil")
	}
	bad := FromPolicy(&policy.VirtualPort{Type: TypeQbg, ManagerID: ip(1), TypeID: ip(1 << 24), TypeIDVersion: ip(0)})
	if err := bad.Validate(); err == nil {
		t.Fatal("typeid 2^24 accepted")
	}
}
