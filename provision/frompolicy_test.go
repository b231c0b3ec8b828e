package provision

import (
	"bytes"
	"strings"
	"testing"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

// FromPolicy takes every security-relevant value from the policy: a
// record that forges trust, parent, pool members or the device is rebuilt
// or refused.
func TestFromPolicyOverrulesTheRecord(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.ut]\nkind = \"ipvtap\"\nparent = \"up0\"\nmode = \"l3\"\ntrust = \"untrusted\"\naddresses = \"192.0.2.0/24\"\nparent_mac = \"02:00:00:00:00:01\"\n[networks.pool]\nkind = \"passthrough\"\ndevices = [\"vf0\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000001</uuid><devices><interface type='network'><source network='ut'/></interface><interface type='network'><source network='pool'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	forge := func(old, new string) []byte { return bytes.Replace(res.XML, []byte(old), []byte(new), 1) }
	rebuilt := func(x []byte) (*domain.Record, error) {
		d, err := domain.Parse(x)
		if err != nil {
			t.Fatal(err)
		}
		return FromPolicy(d, pol, "h")
	}
	rec, err := rebuilt(forge(`trust="untrusted"`, `trust="trusted"`))
	if err != nil || rec.Interfaces[0].Trust != policy.TrustUntrusted {
		t.Fatalf("forged trust: %+v %v", rec, err)
	}
	rec, err = rebuilt(forge(`parent="up0"`, `parent="eth9"`))
	if err != nil || rec.Interfaces[0].Parent != "up0" {
		t.Fatalf("forged parent: %+v %v", rec, err)
	}
	rec, err = rebuilt(forge(`devices="vf0"`, `devices="vf0 eth0"`))
	if err != nil || rec.Interfaces[1].Devices != "vf0" {
		t.Fatalf("forged pool members: %+v %v", rec, err)
	}
	dev := res.Record.Interfaces[0].Device
	for name, x := range map[string][]byte{
		"device":  forge(`device="`+dev+`"`, `device="macvtap0"`),
		"network": forge(`network="ut"`, `network="nosuch"`),
		"kind":    forge(`kind="ipvtap"`, `kind="macvtap"`),
	} {
		if _, err := rebuilt(x); err == nil || !strings.Contains(err.Error(), "provision") && !strings.Contains(err.Error(), "policy") {
			t.Errorf("forged %s accepted: %v", name, err)
		}
	}
}

// A [guests.NAME] section pinned to a UUID does not apply to another
// domain of that name: provisioning and the hook refuse it.
func TestGuestOverridePinnedByUUID(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"up0\"\ntrust = \"untrusted\"\n[guests.web1]\nuuid = \"6f1c4e36-2d6b-4e59-9d0a-000000000001\"\ntrust = \"trusted\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	doc := func(u string) []byte {
		return []byte("<domain><name>web1</name><uuid>" + u + "</uuid><devices><interface type='network'><source network='lan'/></interface></devices></domain>")
	}
	res, err := Provision(doc("6f1c4e36-2d6b-4e59-9d0a-000000000001"), Options{Policy: pol, Host: "h"})
	if err != nil || res.Record.Interfaces[0].Trust != policy.TrustTrusted {
		t.Fatalf("the pinned guest: %v", err)
	}
	_, err = Provision(doc("6f1c4e36-2d6b-4e59-9d0a-0000000000ff"), Options{Policy: pol, Host: "h"})
	if err == nil || !strings.Contains(err.Error(), "[guests.web1]") || !strings.Contains(err.Error(), "0000000000ff") {
		t.Fatalf("another guest named web1: %v", err)
	}
	if g, ok := pol.GuestOverride("6f1c4e36-2d6b-4e59-9d0a-0000000000ff", "web1"); ok {
		t.Fatalf("override applied to another guest: %+v", g)
	}
	if _, err := policy.Parse("p.toml", []byte("[guests.web1]\nuuid = \"nope\"\n")); err == nil || !strings.Contains(err.Error(), "guests.web1.uuid") {
		t.Fatalf("bad uuid: %v", err)
	}
}

// A fleet lease recorded at define time survives the rebuild: it is the
// domain's, not a policy value (the hook checks it against the pool).
func TestFromPolicyKeepsTheFleetLease(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.edge]\nkind = \"ipvtap\"\nparent = \"up0\"\nmode = \"l3\"\naddresses = \"198.51.100.0/24\"\nrange = \"198.51.100.20-198.51.100.29\"\nparent_mac = \"02:00:00:00:00:01\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000002</uuid><devices><interface type='network'><source network='edge'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	x := bytes.Replace(res.XML, []byte(`network="edge"`), []byte(`network="edge" leased="198.51.100.21"`), 1)
	d, err := domain.Parse(x)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := FromPolicy(d, pol, "h")
	if err != nil || rec.Interfaces[0].Leased != "198.51.100.21" {
		t.Fatalf("the recorded fleet lease was lost: %+v %v", rec, err)
	}
}

// The addresses an untrusted guest may use come from the current policy:
// a record that forges learn = "open" or more fixed addresses does not
// widen the filter the hook builds from it.
func TestFromPolicyKeepsAddressBinding(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"up0\"\ntrust = \"untrusted\"\nlearn = \"none\"\n[guests.g]\naddresses = { lan = \"192.0.2.21\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000002</uuid><devices><interface type='network'><source network='lan'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if ir := res.Record.Interfaces[0]; ir.Learn != policy.LearnNone || ir.Fixed != "192.0.2.21" {
		t.Fatalf("provisioned record: learn %q fixed %q", ir.Learn, ir.Fixed)
	}
	for name, x := range map[string][]byte{
		"learn": bytes.Replace(res.XML, []byte(`learn="none"`), []byte(`learn="open"`), 1),
		"fixed": bytes.Replace(res.XML, []byte(`fixed="192.0.2.21"`), []byte(`fixed="192.0.2.21 192.0.2.99 0.0.0.0"`), 1),
	} {
		if bytes.Equal(x, res.XML) {
			t.Fatalf("forged %s: the record has no such attribute:\n%s", name, res.XML)
		}
		d, err := domain.Parse(x)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := FromPolicy(d, pol, "h")
		if err != nil {
			t.Fatalf("forged %s: %v", name, err)
		}
		if ir := rec.Interfaces[0]; ir.Learn != policy.LearnNone || ir.Fixed != "192.0.2.21" {
			t.Errorf("forged %s: rebuilt record learn %q fixed %q, want none and 192.0.2.21", name, ir.Learn, ir.Fixed)
		}
	}
}

// In a fleet, an ipvtap pool address must come from etcd: a record with no
// fleet lease (provisioned before [fleet]) is refused, never leased from
// this host's own store.
func TestFromPolicyFleetNeedsALease(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.edge]\nkind = \"ipvtap\"\nparent = \"up0\"\nmode = \"l3\"\naddresses = \"198.51.100.0/24\"\nrange = \"198.51.100.20-198.51.100.29\"\nparent_mac = \"02:00:00:00:00:01\"\n[fleet]\netcd = [\"http://127.0.0.1:2379\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("<domain><name>g</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000003</uuid><devices><interface type='network'><source network='edge'/></interface></devices></domain>")
	res, err := Provision(raw, Options{Policy: pol, Host: "h"}) // no fleet client: a dry run, no lease
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.Parse(res.XML)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromPolicy(d, pol, "h"); err == nil || !strings.Contains(err.Error(), "virtap define --domain g") {
		t.Fatalf("a fleet pool interface without a lease was accepted: %v", err)
	}
}
