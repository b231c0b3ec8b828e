package provision

import (
	"os"
	"strings"
	"testing"

	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

func provisioned(t *testing.T, pol *policy.Policy, raw []byte) *domain.Doc {
	t.Helper()
	res, err := Provision(raw, Options{Policy: pol, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.Parse(res.XML)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPlanAttach: a hot-plugged interface gets the MAC a fourth interface
// of the domain would get (deterministic, no other interface's), its
// record entry is appended to the others, and the domain as it will be
// provisions to itself (a fixed point).
func TestPlanAttach(t *testing.T) {
	pol, raw := load(t)
	d := provisioned(t, pol, raw)
	opts := Options{Policy: pol, Host: "h1"}
	a, err := PlanAttach(d, AttachRequest{Network: "storage"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := PlanAttach(d, AttachRequest{Network: "storage"}, opts)
	if err != nil || a.Record.MAC != b.Record.MAC {
		t.Fatalf("MAC not deterministic: %s then %s (%v)", a.Record.MAC, b.Record.MAC, err)
	}
	for _, ifc := range d.Interfaces {
		if strings.EqualFold(ifc.MAC, a.Record.MAC) {
			t.Fatalf("derived MAC %s is interface #%d's", a.Record.MAC, ifc.Index+1)
		}
	}
	if !strings.HasPrefix(a.Record.MAC, "52:54:00:") || a.Record.Mode != "private" || a.Record.Parent != "eth1" {
		t.Fatalf("record entry: %+v", a.Record)
	}
	if len(a.Full.Interfaces) != len(d.Record.Interfaces)+1 || a.Full.Interfaces[len(a.Full.Interfaces)-1] != a.Record {
		t.Fatalf("full record: %+v", a.Full)
	}
	for _, want := range []string{"<interface type=\"direct\">", "mode=\"private\"", a.Record.MAC, "<driver name=\"qemu\" queues=\"4\""} {
		if !strings.Contains(a.XML, want) {
			t.Fatalf("attached XML lacks %q:\n%s", want, a.XML)
		}
	}
	rp, err := Reprovision(a.Doc, opts)
	if err != nil || len(rp.Changes) != 0 || string(rp.XML) != string(a.Doc.Raw) {
		t.Fatalf("the domain with the attached interface is no fixed point: %+v %v", rp.Changes, err)
	}
	// A given MAC is kept; one the domain has is refused; taken ones are stepped past.
	c, err := PlanAttach(d, AttachRequest{Network: "lan", MAC: "52:54:00:AA:00:01", Model: "e1000"}, opts)
	if err != nil || c.Record.MAC != "52:54:00:aa:00:01" || !strings.Contains(c.XML, `<model type="e1000"/>`) {
		t.Fatalf("given MAC and model: %+v %v\n%s", c.Record, err, c.XML)
	}
	if _, err := PlanAttach(d, AttachRequest{Network: "lan", MAC: d.Interfaces[0].MAC}, opts); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("a MAC the domain has: %v", err)
	}
	opts.Taken = []string{a.Record.MAC}
	if e, err := PlanAttach(d, AttachRequest{Network: "storage"}, opts); err != nil || e.Record.MAC == a.Record.MAC {
		t.Fatalf("taken MAC not stepped past: %+v %v", e, err)
	}
}

func TestPlanAttachUnknownNetwork(t *testing.T) {
	pol, raw := load(t)
	d := provisioned(t, pol, raw)
	_, err := PlanAttach(d, AttachRequest{Network: "nosuch"}, Options{Policy: pol, Host: "h1"})
	if err == nil || !strings.Contains(err.Error(), `network "nosuch" is not in testdata/policy.toml`) || !strings.Contains(err.Error(), "lan, storage") {
		t.Fatalf("want an error naming the network, the file and its networks, got %v", err)
	}
}

// TestReprovisionAndDrift: a provisioned domain matches its policy; after
// a mode change it drifts (mode bridge -> vepa) and Reprovision rewrites
// only that interface and the record; a network removed from the policy
// is drift too.
func TestReprovisionAndDrift(t *testing.T) {
	pol, raw := load(t)
	d := provisioned(t, pol, raw)
	opts := Options{Policy: pol, Host: "h1"}
	if ch, err := Drift(d, opts); err != nil || len(ch) != 0 {
		t.Fatalf("fresh domain drifts: %+v %v", ch, err)
	}
	text := readFile(t, "testdata/policy.toml")
	vepa, err := policy.Parse("vepa.toml", []byte(strings.Replace(text, `mode = "bridge"`, `mode = "vepa"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Drift(d, Options{Policy: vepa, Host: "h1"})
	if err != nil || len(ch) != 1 || ch[0].Network != "lan" || len(ch[0].Fields) != 1 || ch[0].Fields[0] != (FieldChange{"mode", "bridge", "vepa"}) || !ch[0].Element {
		t.Fatalf("drift after mode change: %+v %v", ch, err)
	}
	if s := ch[0].String(); !strings.Contains(s, `mode "bridge" -> "vepa"`) {
		t.Fatalf("drift text: %s", s)
	}
	rp, err := Reprovision(d, Options{Policy: vepa, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := domain.Parse(rp.XML)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := Drift(again, Options{Policy: vepa, Host: "h1"}); err != nil || len(ch) != 0 {
		t.Fatalf("after reprovisioning: %+v %v", ch, err)
	}
	gone, err := policy.Parse("gone.toml", []byte(strings.Replace(text, "[networks.storage]", "[networks.storage2]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err = Drift(d, Options{Policy: gone, Host: "h1"})
	if err != nil || len(ch) != 1 || !ch[0].Gone || ch[0].Network != "storage" || !strings.Contains(ch[0].String(), "gone from the policy") {
		t.Fatalf("network gone: %+v %v", ch, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
