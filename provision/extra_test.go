package provision

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// Run-time extra addresses travel in the record (added="..."), survive a
// re-provisioning (migration rewrites the XML), and are held to the
// current policy: one the network does not allow, or too many, is refused.
func TestAddedExtrasInTheRecord(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte(`[networks.ut]
kind = "ipvtap"
parent = "up0"
trust = "untrusted"
addresses = "192.0.2.0/24"
range = "192.0.2.100-192.0.2.199"
parent_mac = "02:00:00:00:00:01"
max_extra_addresses = 4
[guests.g]
extra_addresses = { ut = "192.0.2.60" }
`))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000002</uuid><devices><interface type='network'><source network='ut'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Record.Interfaces[0].Extra; got != "192.0.2.60" {
		t.Fatalf("record extra = %q", got)
	}
	with := func(added string) []byte {
		return bytes.Replace(res.XML, []byte(`extra="192.0.2.60"`), []byte(`extra="192.0.2.60" added="`+added+`"`), 1)
	}
	again, err := Provision(with("192.0.2.50/32"), Options{Policy: pol, Host: "h"})
	if err != nil || again.Record.Interfaces[0].Added != "192.0.2.50/32" {
		t.Fatalf("re-provisioning lost the added address: %+v %v", again.Record, err)
	}
	for added, want := range map[string]string{
		"192.0.2.50/32":                 "",
		"192.0.2.150":                   "dynamic range",
		"198.51.100.5":                  "outside",
		"192.0.2.48/30":                 "max_extra_addresses",
		"192.0.2.50/32 192.0.2.52/31 x": "not an address",
	} {
		d, err := domain.Parse(with(added))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := FromPolicy(d, pol, "h")
		switch {
		case want == "" && (err != nil || rec.Interfaces[0].Added != added):
			t.Errorf("added %q: %+v %v", added, rec, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("added %q: %v, want an error saying %q", added, err, want)
		}
	}
}

// The cloud-init seed's meta-data lists the extra addresses by MAC.
func TestCloudInitListsExtras(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte(`[networks.ut]
kind = "ipvtap"
parent = "up0"
addresses = "192.0.2.0/24"
range = "192.0.2.100-192.0.2.199"
parent_mac = "02:00:00:00:00:01"
[guests.g]
extra_addresses = { ut = ["192.0.2.60", "192.0.2.64/30"] }
`))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000003</uuid><devices><interface type='network'><source network='ut'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := CloudInit(res, func(Plan) (netip.Addr, error) { return netip.MustParseAddr("192.0.2.100"), nil })
	if err != nil {
		t.Fatal(err)
	}
	want := "virtap_extra_addresses:\n  \"02:00:00:00:00:01\": [\"192.0.2.60\", \"192.0.2.64/30\"]\n"
	if md := string(seed["meta-data"]); !strings.HasSuffix(md, want) {
		t.Errorf("meta-data:\n%s\nwant it to end with\n%s", md, want)
	}
}
