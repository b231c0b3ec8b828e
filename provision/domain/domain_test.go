package domain

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func rec() *Record {
	return &Record{Host: "h", Interfaces: []IfaceRecord{{MAC: "52:54:00:00:00:01", Network: "lan", Kind: "macvtap", Mode: "bridge", Parent: "eth0"}}}
}

func TestMetadataPlacement(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"no metadata": {
			"<domain>\n  <name>a</name>\n  <uuid>u</uuid>\n  <devices/>\n</domain>\n",
			"<domain>\n  <name>a</name>\n  <uuid>u</uuid>\n  <metadata>\n    <virtap:virtap xmlns:virtap=\"https://virtap.dev/xmlns/domain/1\" host=\"h\">\n      <virtap:interface mac=\"52:54:00:00:00:01\" network=\"lan\" kind=\"macvtap\" mode=\"bridge\" parent=\"eth0\"/>\n    </virtap:virtap>\n  </metadata>\n  <devices/>\n</domain>\n",
		},
		"empty metadata": {
			"<domain>\n  <name>a</name>\n  <metadata/>\n</domain>\n",
			"<domain>\n  <name>a</name>\n  <metadata>\n    <virtap:virtap xmlns:virtap=\"https://virtap.dev/xmlns/domain/1\" host=\"h\">\n      <virtap:interface mac=\"52:54:00:00:00:01\" network=\"lan\" kind=\"macvtap\" mode=\"bridge\" parent=\"eth0\"/>\n    </virtap:virtap>\n  </metadata>\n</domain>\n",
		},
		"foreign metadata kept": {
			"<domain>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'>1</x:y>\n  </metadata>\n</domain>\n",
			"<domain>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'>1</x:y>\n    <virtap:virtap xmlns:virtap=\"https://virtap.dev/xmlns/domain/1\" host=\"h\">\n      <virtap:interface mac=\"52:54:00:00:00:01\" network=\"lan\" kind=\"macvtap\" mode=\"bridge\" parent=\"eth0\"/>\n    </virtap:virtap>\n  </metadata>\n</domain>\n",
		},
	}
	for name, c := range cases {
		d, err := Parse([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := d.Render(nil, rec())
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", name, out, c.want)
		}
		// Parse it back: the record is found; removing it restores the input.
		d2, err := Parse(out)
		if err != nil || d2.Record == nil || d2.Record.Interfaces[0].Parent != "eth0" {
			t.Fatalf("%s: record not read back: %+v %v", name, d2, err)
		}
		back, _ := d2.Render(nil, nil)
		if name != "empty metadata" && name != "no metadata" && string(back) != c.in {
			t.Errorf("%s: removing the record gave\n%s", name, back)
		}
	}
}

// libvirt may store our element under another prefix; only the namespace counts.
func TestRecordFoundByNamespaceNotPrefix(t *testing.T) {
	in := `<domain type='kvm'><name>a</name><uuid>3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10</uuid><metadata><vt:virtap xmlns:vt="https://virtap.dev/xmlns/domain/1"><vt:interface mac="52:54:00:00:00:09" network="n" kind="ipvtap" device="vtiabc"/></vt:virtap></metadata></domain>`
	d, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := d.Record.ByMAC("52:54:00:00:00:09")
	if !ok || r.Device != "vtiabc" || r.Kind != "ipvtap" {
		t.Fatalf("%+v %v", r, ok)
	}
	if _, ok := d.Record.ByMAC("52:54:00:00:00:0A"); ok {
		t.Fatal("found a MAC that is not there")
	}
}

func TestInterfacesAndErrors(t *testing.T) {
	in := "<domain>\n  <name>a</name>\n  <vcpu>3</vcpu>\n  <devices>\n    <interface type='network'><source network='lan'/></interface>\n    <interface type='user'/>\n  </devices>\n</domain>"
	d, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d.VCPUs != 3 || len(d.Interfaces) != 2 || d.Interfaces[0].Line != 5 || d.Interfaces[1].Indent != "    " || d.Seed() != "name:a" {
		t.Fatalf("%+v", d)
	}
	repl := map[int]*libvirtxml.DomainInterface{1: {Source: &libvirtxml.DomainInterfaceSource{Direct: &libvirtxml.DomainInterfaceSourceDirect{Dev: "e", Mode: "vepa"}}}}
	out, _ := d.Render(repl, nil)
	if !strings.Contains(string(out), "<interface type=\"direct\">\n      <source dev=\"e\" mode=\"vepa\"/>\n    </interface>") || !strings.Contains(string(out), "<source network='lan'/>") {
		t.Fatalf("%s", out)
	}
	for name, bad := range map[string]string{
		"not xml":   "hello",
		"no name":   "<domain><devices/></domain>",
		"bad vcpu":  "<domain><name>a</name><vcpu>many</vcpu></domain>",
		"truncated": "<domain><name>a</name><devices><interface type='network'>",
		"too big":   "<domain><name>a</name>" + strings.Repeat(" ", MaxSize) + "</domain>",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
