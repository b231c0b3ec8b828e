package doctor

import (
	"strings"
	"testing"

	"github.com/virtap/virtap/provision"
)

// TestDrift: a domain provisioned with the policy matches it; after the
// network's mode changes (bridge -> vepa) or the network is removed, it
// drifts, and the advice names virtap define --domain.
func TestDrift(t *testing.T) {
	ns := hostNS(t)
	e := env(t, ns.NL)
	e.Probe = false
	bridge := pol(t, macvtapPolicy("up0", `mode = "bridge"`))
	raw := `<domain type='qemu'><name>web1</name><uuid>4b0e1c57-7c36-4c1e-9a53-0f7a0c1c2b01</uuid><vcpu>1</vcpu><devices>
<interface type='network'><source network='lan'/><model type='virtio'/></interface></devices></domain>`
	res, err := provision.Provision([]byte(raw), provision.Options{Policy: bridge, Host: "testhost"}) // not this machine, as doctor sees it
	if err != nil {
		t.Fatal(err)
	}
	e.Domains = domains(DomainXML{Source: "web1.xml", XML: res.XML}, domXML("plain", "52:54:00:00:00:01", "up0", "bridge", ""))
	want(t, one(t, doctor(t, e, bridge), CheckDrift, ""), OK, "1 defined domain(s) with virtap's record match the policy")

	r := one(t, doctor(t, e, pol(t, macvtapPolicy("up0", `mode = "vepa"`))), CheckDrift, "lan")
	want(t, r, Warn, `domain web1 no longer matches the policy: interface `)
	if !strings.Contains(r.Detail, `mode "bridge" -> "vepa"`) || !strings.Contains(r.Advice, "virtap define --domain web1") {
		t.Fatalf("drift result: %+v", r)
	}
	r = one(t, doctor(t, e, pol(t, strings.Replace(macvtapPolicy("up0", `mode = "bridge"`), "networks.lan", "networks.lan2", 1))), CheckDrift, "lan")
	want(t, r, Warn, `network "lan" is gone from the policy`)
}
