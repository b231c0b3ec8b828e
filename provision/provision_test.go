package provision

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/udiff"
	"github.com/virtap/virtap/internal/xmlcheck"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t testing.TB) (*policy.Policy, []byte) {
	t.Helper()
	pol, err := policy.Load("testdata/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/realistic.xml")
	if err != nil {
		t.Fatal(err)
	}
	return pol, raw
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n%s", path, udiff.Diff(path, "got", string(want), string(got), 3))
	}
}

func TestRealisticDomain(t *testing.T) {
	pol, raw := load(t)
	res, err := Provision(raw, Options{Policy: pol, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "realistic.out.xml", res.XML)
	if len(res.Plans) != 3 {
		t.Fatalf("want 3 managed interfaces (lan, storage, tenant), got %d", len(res.Plans))
	}
	// Every byte outside the managed interfaces and virtap's record is kept.
	in, err := domain.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := domain.Parse(res.XML)
	if err != nil {
		t.Fatal(err)
	}
	strip := func(d *domain.Doc, managed map[int]bool) string {
		var b strings.Builder
		pos := 0
		for _, ifc := range d.Interfaces {
			if managed[ifc.Index] {
				b.Write(d.Raw[pos:ifc.Span.Start])
				pos = ifc.Span.End
			}
		}
		b.Write(d.Raw[pos:])
		s := b.String()
		// drop virtap's record (and the line it stands on)
		if i := strings.Index(s, "<virtap:virtap"); i >= 0 {
			j := strings.Index(s, "</virtap:virtap>") + len("</virtap:virtap>")
			k := strings.LastIndex(s[:i], "\n")
			s = s[:k] + s[j:]
		}
		return s
	}
	managed := map[int]bool{0: true, 1: true, 4: true}
	if a, b := strip(in, managed), strip(out, managed); a != b {
		t.Fatalf("bytes outside managed interfaces changed:\n%s", udiff.Diff("in", "out", a, b, 2))
	}
	// What a user gave is kept: PCI address, boot order, MAC, rx queue size, link.
	for _, want := range []string{
		`<address type="pci" domain="0x0000" bus="0x01" slot="0x00" function="0x0"/>`,
		`<boot order="2"/>`, `<mac address="52:54:00:0d:b0:02"/>`, `rx_queue_size="1024"`, `<link state="up"/>`,
		`<source dev="eth0" mode="bridge"/>`, `<mtu size="9000"/>`, `<source dev="eth1" mode="private"/>`,
		`<driver name="qemu" queues="4" rx_queue_size="1024"/>`, `<driver queues="8"/>`, `managed="no"`,
		`<source network='default'/>`, `<qemu:arg value='-fw_cfg'/>`, `<nova:flavor name="m1.large">`,
	} {
		if !bytes.Contains(res.XML, []byte(want)) {
			t.Errorf("output lacks %s", want)
		}
	}
	again, err := Provision(res.XML, Options{Policy: pol, Host: "h1"})
	if err != nil || !bytes.Equal(again.XML, res.XML) {
		t.Fatalf("not a fixed point (%v):\n%s", err, udiff.Diff("once", "twice", string(res.XML), string(again.XML), 3))
	}
	xmlcheck.Domain(t, "realistic", res.XML)
}

func guest(nets ...string) []byte {
	var b strings.Builder
	b.WriteString("<domain type='qemu'>\n  <name>g</name>\n  <uuid>11111111-2222-4333-8444-555555555555</uuid>\n  <memory>65536</memory>\n  <vcpu>2</vcpu>\n  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n")
	for _, n := range nets {
		if strings.HasPrefix(n, "<") {
			b.WriteString("    " + n + "\n")
			continue
		}
		fmt.Fprintf(&b, "    <interface type='network'><source network='%s'/></interface>\n", n)
	}
	b.WriteString("  </devices>\n</domain>\n")
	return []byte(b.String())
}

func TestMACsDeterministicUniqueAndKept(t *testing.T) {
	pol, _ := load(t)
	in := guest("lan", "lan", "<interface type='network'><mac address='52:54:00:AA:BB:CC'/><source network='lan'/></interface>")
	a, err := Provision(in, Options{Policy: pol, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Provision(in, Options{Policy: pol, Host: "h2"})
	seen := map[string]bool{}
	for i, p := range a.Plans {
		if p.MAC != b.Plans[i].MAC {
			t.Fatalf("MAC differs between hosts: %s vs %s", p.MAC, b.Plans[i].MAC)
		}
		if seen[p.MAC] {
			t.Fatalf("MAC %s used twice in one domain", p.MAC)
		}
		seen[p.MAC] = true
		if !strings.HasPrefix(p.MAC, "52:54:00:") {
			t.Fatalf("mac_prefix ignored: %s", p.MAC)
		}
	}
	if a.Plans[2].MAC != "52:54:00:aa:bb:cc" {
		t.Fatalf("given MAC not kept: %s", a.Plans[2].MAC)
	}
}

func TestIpvtapMACIsTheParents(t *testing.T) {
	pol, _ := load(t)
	res, err := Provision(guest("untrusted"), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plans[0].MAC != "52:54:00:99:99:99" || res.Plans[0].Backend != "ethernet" || len(res.Plans[0].Device) > 15 {
		t.Fatalf("%+v", res.Plans[0])
	}
	_, err = Provision(guest("<interface type='network'><mac address='52:54:00:00:00:01'/><source network='untrusted'/></interface>"), Options{Policy: pol, Host: "h"})
	if err == nil || !strings.Contains(err.Error(), "interface #1") || !strings.Contains(err.Error(), "parent's MAC") {
		t.Fatalf("want an error naming interface #1 and the parent's MAC, got %v", err)
	}
	_, err = Provision(guest("untrusted", "untrusted"), Options{Policy: pol, Host: "h"})
	if err == nil || !strings.Contains(err.Error(), "would share its MAC") {
		t.Fatalf("two ipvtaps on one parent: %v", err)
	}
}

func TestVhostAutoAndQueues(t *testing.T) {
	pol, _ := load(t)
	dev := t.TempDir()
	res, err := Provision(guest("lan"), Options{Policy: pol, Host: "h", Local: true, DevRoot: dev})
	if err != nil || res.Plans[0].Driver != "qemu" || res.Plans[0].Queues != 2 {
		t.Fatalf("without /dev/vhost-net: %+v %v", res.Plans, err)
	}
	if err := os.WriteFile(filepath.Join(dev, "vhost-net"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res, _ = Provision(guest("lan"), Options{Policy: pol, Host: "h", Local: true, DevRoot: dev})
	if res.Plans[0].Driver != "vhost" {
		t.Fatalf("with /dev/vhost-net: %+v", res.Plans[0])
	}
	res, _ = Provision(guest("lan"), Options{Policy: pol, Host: "other"})
	if res.Plans[0].Driver != "" {
		t.Fatalf("for another host, vhost auto leaves the choice to libvirt: %+v", res.Plans[0])
	}
}

func TestRecordedNetworkMissingOnHost(t *testing.T) {
	pol, _ := load(t)
	res, err := Provision(guest("storage"), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := policy.Parse("other.toml", []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \"e\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Provision(res.XML, Options{Policy: other, Host: "h9"})
	if err == nil || !strings.Contains(err.Error(), `network "storage"`) || !strings.Contains(err.Error(), "other.toml") {
		t.Fatalf("want an error naming the network and the policy, got %v", err)
	}
}

func TestUnknownNetworksAndNonManagedAreKept(t *testing.T) {
	pol, _ := load(t)
	in := guest("default", "<interface type='user'/>")
	res, err := Provision(in, Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.XML, in) {
		t.Fatalf("a document with nothing to manage changed:\n%s", udiff.Diff("in", "out", string(in), string(res.XML), 2))
	}
}

func TestDeviceNames(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		n := DeviceName("passthrough", fmt.Sprintf("uuid-%d", i), "52:54:00:00:00:01", "net")
		if len(n) != 15 || seen[n] {
			t.Fatalf("%q: length %d or repeated", n, len(n))
		}
		seen[n] = true
	}
	if DeviceName("ipvtap", "a", "m", "n")[:3] != "vti" || DeviceName("passthrough", "a", "m", "n")[:3] != "vtp" {
		t.Fatal("kind letter")
	}
}

func FuzzProvision(f *testing.F) {
	pol, raw := load(f)
	f.Add(raw)
	f.Add(guest("lan", "tenant", "untrusted"))
	f.Add([]byte("<domain><name>x</name><devices><interface type='network'><source network='lan'/></interface></devices></domain>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Provision(data, Options{Policy: pol, Host: "h"})
		if err != nil {
			return
		}
		again, err := Provision(res.XML, Options{Policy: pol, Host: "h"})
		if err != nil {
			t.Fatalf("output does not provision again: %v\n%s", err, res.XML)
		}
		if !bytes.Equal(again.XML, res.XML) {
			t.Fatalf("not a fixed point:\n%s", udiff.Diff("once", "twice", string(res.XML), string(again.XML), 2))
		}
	})
}

// Provisioning one 6 KB domain in-process, against a bare libvirtxml
// unmarshal + marshal of the same document (target: at most 1.5x).
func BenchmarkProvision(b *testing.B) {
	pol, raw := load(b)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		if _, err := Provision(raw, Options{Policy: pol, Host: "h"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLibvirtxmlRoundTrip(b *testing.B) {
	_, raw := load(b)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		var d libvirtxml.Domain
		if err := d.Unmarshal(string(raw)); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHostdevPool(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte("[networks.gpu]\nkind = \"passthrough\"\nmode = \"hostdev\"\npf = \"enp65s0f0\"\nvlan = 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Provision(guest("gpu"), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plans[0].Backend != "network" || !bytes.Contains(res.XML, []byte(`<source network="virtap-gpu"/>`)) || !bytes.Contains(res.XML, []byte(`<tag id="7"/>`)) {
		t.Fatalf("%+v\n%s", res.Plans[0], res.XML)
	}
	again, err := Provision(res.XML, Options{Policy: pol, Host: "h"})
	if err != nil || !bytes.Equal(again.XML, res.XML) {
		t.Fatalf("not a fixed point: %v", err)
	}
	nw, _, _ := pol.Network("h", "gpu")
	x, err := HostdevNetworkXML(nw)
	if err != nil || !strings.Contains(x, `<forward mode="hostdev" managed="yes">`) || !strings.Contains(x, `<pf dev="enp65s0f0">`) {
		t.Fatalf("%s %v", x, err)
	}
	xmlcheck.Network(t, "hostdev network", []byte(x))
	xmlcheck.Domain(t, "hostdev guest", res.XML)
}

func TestGuestTrustOverride(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte(`
[networks.lan]
kind = "macvtap"
parent = "eth0"
trust_guest_rx_filters = true

[guests."11111111-2222-4333-8444-555555555555"]
trust = "untrusted"

[guests.other]
trust = "trusted"
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Provision(guest("lan"), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Interfaces[0].Trust != "untrusted" || bytes.Contains(res.XML, []byte("trustGuestRxFilters")) {
		t.Fatalf("per-guest untrusted not applied:\n%s", res.XML)
	}
	if _, err := policy.Parse("p.toml", []byte("[guests.x]\ntrust = \"maybe\"\n")); err == nil || !strings.Contains(err.Error(), "p.toml:2: guests.x.trust") {
		t.Fatalf("bad guest trust: %v", err)
	}
	if _, err := policy.Parse("p.toml", []byte("[guests.x]\ncolour = 1\n")); err == nil || !strings.Contains(err.Error(), "allowed in a guest section: uuid, trust") {
		t.Fatalf("unknown guest key: %v", err)
	}
}

func TestGuestFixedAddress(t *testing.T) {
	base := "[networks.edge]\nkind = \"ipvtap\"\nparent = \"e\"\nparent_mac = \"52:54:00:12:34:56\"\naddresses = \"198.51.100.0/24\"\nrange = \"198.51.100.100-198.51.100.199\"\ngateway = \"198.51.100.1\"\n\n"
	pol, err := policy.Parse("p.toml", []byte(base+"[guests.g]\naddresses = { edge = \"198.51.100.7\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Provision(guest("edge"), Options{Policy: pol, Host: "h"})
	if err != nil || res.Plans[0].Address != "198.51.100.7" || res.Record.Interfaces[0].Address != "198.51.100.7" {
		t.Fatalf("%+v %v", res.Plans, err)
	}
	for bad, want := range map[string]string{
		"[guests.g]\naddresses = { edge = \"198.51.100.150\" }\n":                   "inside network \"edge\"'s dynamic range",
		"[guests.g]\naddresses = { edge = \"203.0.113.5\" }\n":                      "outside network \"edge\"'s addresses",
		"[guests.g]\naddresses = { edge = \"198.51.100.1\" }\n":                     "the network's gateway",
		"[guests.g]\naddresses = { lan = \"198.51.100.9\" }\n":                      "need a macvtap or ipvtap network \"lan\"",
		"[guests.g]\naddresses = { edge = \"nope\" }\n":                             "is not an IP address",
		"[guests.g]\naddresses = { edge = [\"198.51.100.7\", \"198.51.100.8\"] }\n": "give exactly one address, not 2",
		"[guests.g]\naddresses = { edge = 7 }\n":                                    "addresses must be",
	} {
		if _, err := policy.Parse("p.toml", []byte(base+bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", bad, err, want)
		}
	}
}

// Untrusted macvtap networks take one fixed address or a list, IPv4 and
// IPv6; the record carries them and the network's learn mode for the hook.
func TestGuestFixedAddressesMacvtap(t *testing.T) {
	base := "[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\ntrust = \"untrusted\"\n\n[networks.open]\nkind = \"macvtap\"\nparent = \"eth0\"\ntrust = \"untrusted\"\nlearn = \"open\"\n\n"
	pol, err := policy.Parse("p.toml", []byte(base+"[guests.g]\naddresses = { lan = [\"192.0.2.21\", \"2001:db8::21\"] }\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Provision(guest("lan"), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if ir := res.Record.Interfaces[0]; ir.Fixed != "192.0.2.21 2001:db8::21" || ir.Learn != "dhcp" || ir.Address != "" {
		t.Errorf("record %+v, want fixed=\"192.0.2.21 2001:db8::21\" learn=dhcp", ir)
	}
	res, err = Provision(guest("open"), Options{Policy: pol, Host: "h"})
	if err != nil || res.Record.Interfaces[0].Learn != "open" {
		t.Errorf("learn = open not recorded: %+v %v", res.Record, err)
	}
	for bad, want := range map[string]string{
		"[guests.g]\naddresses = { lan = [\"192.0.2.21\", \"192.0.2.21\"] }\n":  "p.toml:13: guests.g.addresses.lan: 192.0.2.21 is listed twice",
		"[guests.g]\naddresses = { lan = \"ff02::1\" }\n":                       "cannot be a guest's source address",
		"[guests.g]\naddresses = { lan = [\"0.0.0.0\"] }\n":                     "cannot be a guest's source address",
		"[guests.g]\naddresses = { lan = [] }\n":                                "is empty",
		"[guests.g]\naddresses = { lan = \"fe80::1%eth0\" }\n":                  "is not an IP address",
		"[networks.x]\nkind = \"macvtap\"\nparent = \"e\"\nlearn = \"snoop\"\n": "networks.x.learn: \"snoop\" is not allowed; allowed: dhcp, none, open",
		"[networks.x]\nkind = \"bridge\"\nbridge = \"br0\"\nlearn = \"dhcp\"\n": "does not apply to kind \"bridge\"",
	} {
		if _, err := policy.Parse("p.toml", []byte(base+bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", bad, err, want)
		}
	}
}
