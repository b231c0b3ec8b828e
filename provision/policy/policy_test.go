package policy

import (
	"strings"
	"testing"
)

const fleet = `# a fleet
state_dir = "/var/lib/virtap"
mac_prefix = "52:54:00"

[networks.lan]
kind = "macvtap"
parent = "eth0"
mode = "bridge"
queues = "auto"

[networks.edge]
kind = "ipvtap"
parent = "eth2"
mode = "l3"
flag = "private"
addresses = "198.51.100.0/24"
range = "198.51.100.10-198.51.100.20"
gateway = "198.51.100.1"

[networks.pool]
kind = "passthrough"
pf = "enp3s0f0"
vlan = 42
max_tx_rate = 1000

[networks.br]
kind = "bridge"
bridge = "br0"

[networks.dc]
kind = "macvtap"
parent = "eth1"
mode = "vepa"
[networks.dc.virtualport]
type = "802.1Qbg"
managerid = 1
typeid = 2
typeidversion = 3

[hosts.node2.networks.lan]
parent = "ens1f0"
queues = 4

[hosts.node2.networks.extra]
kind = "macvtap"
parent = "ens2"
`

func TestValidPolicyAndHostOverrides(t *testing.T) {
	p, err := Parse("fleet.toml", []byte(fleet))
	if err != nil {
		t.Fatal(err)
	}
	lan, ok, err := p.Network("node1", "lan")
	if err != nil || !ok || lan.Parent != "eth0" || lan.Queues != 0 || lan.Vhost != "auto" || lan.Trust != "trusted" || lan.Model != "virtio" {
		t.Fatalf("node1 lan: %+v %v %v", lan, ok, err)
	}
	lan2, _, _ := p.Network("node2", "lan")
	if lan2.Parent != "ens1f0" || lan2.Queues != 4 || lan2.Mode != "bridge" {
		t.Fatalf("node2 lan: %+v", lan2)
	}
	if _, ok, _ := p.Network("node1", "extra"); ok {
		t.Fatal("node2's own network is visible on node1")
	}
	if n, ok, _ := p.Network("node2", "extra"); !ok || n.Mode != "bridge" {
		t.Fatalf("node2 extra: %+v", n)
	}
	edge, _, _ := p.Network("x", "edge")
	if edge.Trust != "untrusted" || edge.Flag != "private" {
		t.Fatalf("ipvtap defaults: %+v", edge)
	}
	pool, _, _ := p.Network("x", "pool")
	if !pool.SpoofChk || pool.Mode != "passthrough" || pool.VLAN != 42 {
		t.Fatalf("pool defaults: %+v", pool)
	}
	if got := strings.Join(p.NetworkNames("node2"), ","); got != "br,dc,edge,extra,lan,pool" {
		t.Fatalf("node2 networks: %s", got)
	}
}

// Each bad policy must fail with the file, the line, the key and a hint.
func TestErrorsNameFileLineKeyAndFix(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"unknown key", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nbogus = 1\n", `p.toml:4: networks.a.bogus: unknown key; allowed in a network: kind,`},
		{"unknown top key", "colour = 1\n", `p.toml:1: colour: unknown key; allowed at the top`},
		{"mistyped key", "[networks.a]\nkind = \"macvtap\"\nparnet = \"eth0\"\n", `p.toml:3: networks.a.parnet: unknown key; did you mean "parent"? allowed in a network`},
		{"mistyped table", "[network.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n", `p.toml:1: network: unknown key; did you mean "networks"? allowed at the top`},
		{"mistyped sub-table", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.bandwith]\ninbound_average = 1\n", `p.toml:4: networks.a.bandwith: unknown key; did you mean "bandwidth"?`},
		{"mistyped sub-table key", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.bandwidth]\ninbound_averag = 1\n", `p.toml:5: networks.a.bandwidth.inbound_averag: unknown key; did you mean "inbound_average"? allowed in bandwidth`},
		{"mistyped host table", "[hosts.n2.network.lan]\nparent = \"e\"\n", `p.toml:1: hosts.n2.network: unknown key; did you mean "networks"?`},
		{"mistyped guest network", "[networks.edge]\nkind = \"ipvtap\"\nparent = \"e\"\nparent_mac = \"52:54:00:00:00:01\"\naddresses = \"192.0.2.0/24\"\nrange = \"192.0.2.10-192.0.2.20\"\n[guests.web1]\naddresses = { egde = \"192.0.2.5\" }\n", `guests.web1.addresses.egde: fixed addresses need a macvtap or ipvtap network "egde" in [networks], and the policy has none of that name; did you mean 'edge'?`},
		{"macvtap and ipvtap on one parent", "[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n[networks.edge]\nkind = \"ipvtap\"\nparent = \"eth0\"\nparent_mac = \"52:54:00:00:00:01\"\n", `p.toml:6: networks.edge.parent: macvtap network "lan" and ipvtap network "edge" share parent eth0, and a NIC carries macvtap or ipvtap devices, never both`},
		{"ipvtap modes on one parent", "[networks.a]\nkind = \"ipvtap\"\nparent = \"eth1\"\nmode = \"l2\"\n[networks.b]\nkind = \"ipvtap\"\nparent = \"eth1\"\nmode = \"l3\"\n", `p.toml:8: networks.b.mode: ipvtap networks "a" (mode l2) and "b" (mode l3) share parent eth1, and ipvlan's mode belongs to the parent`},
		{"ipvtap modes on one vlan", "[networks.a]\nkind = \"ipvtap\"\nparent = \"eth1\"\nvlan = 10\n[networks.b]\nkind = \"ipvtap\"\nparent = \"eth1\"\nvlan = 10\nmode = \"l3\"\n", `networks.b.mode: ipvtap networks "a" (mode l2) and "b" (mode l3) share parent eth1.10`},
		{"one parent on one host only", "[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n[networks.edge]\nkind = \"ipvtap\"\nparent = \"eth1\"\n[hosts.n2.networks.edge]\nparent = \"eth0\"\n", `p.toml:8: hosts.n2.networks.edge.parent: macvtap network "lan" and ipvtap network "edge" share parent eth0`},
		{"mistyped guest key", "[guests.web1]\ntrusted = \"untrusted\"\n", `p.toml:2: guests.web1.trusted: unknown key; did you mean "trust"?`},
		{"wrong type", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nmtu = \"big\"\n", `p.toml:4: networks.a.mtu: has the wrong type: expected integer, found string`},
		{"bad mode", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nmode = \"bridg\"\n", `p.toml:4: networks.a.mode: "bridg" is not allowed; allowed: bridge, vepa, private, passthrough`},
		{"bad kind", "[networks.a]\nkind = \"tap\"\n", `p.toml:2: networks.a.kind: "tap" is not allowed; allowed: macvtap, ipvtap, bridge, passthrough`},
		{"missing kind", "[networks.a]\nparent = \"eth0\"\n", `p.toml:1: networks.a.kind: is required`},
		{"flag on macvtap", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nflag = \"bridge\"\n", `p.toml:4: networks.a.flag: does not apply to kind "macvtap"; it belongs to kind "ipvtap"`},
		{"vlan on a bridge", "[networks.a]\nkind = \"bridge\"\nbridge = \"br0\"\nvlan = 5\n", `p.toml:4: networks.a.vlan: kind "bridge" cannot carry a VLAN tag`},
		{"vlan zero", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nvlan = 0\n", `p.toml:4: networks.a.vlan: must be from 1 to 4094, not 0`},
		{"vlan 4095", "[networks.a]\nkind = \"ipvtap\"\nparent = \"eth0\"\nvlan = 4095\n", `p.toml:4: networks.a.vlan: must be from 1 to 4094, not 4095`},
		{"vlan word", "[networks.a]\nkind = \"ipvtap\"\nparent = \"eth0\"\nvlan = \"10\"\n", `p.toml:4: networks.a.vlan: has the wrong type`},
		{"bridge without kind bridge", "[networks.a]\nkind = \"macvtap\"\nparent = \"eth0\"\nbridge = \"br0\"\n", `p.toml:4: networks.a.bridge: does not apply to kind "macvtap"; it belongs to kind "bridge"`},
		{"missing parent", "[networks.a]\nkind = \"ipvtap\"\n", `networks.a.parent: is required`},
		{"missing bridge", "[networks.a]\nkind = \"bridge\"\n", `networks.a.bridge: is required`},
		{"pool needs pf or devices", "[networks.a]\nkind = \"passthrough\"\n", `networks.a.pf: a passthrough pool needs exactly one of pf`},
		{"pool with both", "[networks.a]\nkind = \"passthrough\"\npf = \"p\"\ndevices = [\"v\"]\n", `needs exactly one of pf`},
		{"queues zero", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nqueues = 0\n", `p.toml:4: networks.a.queues: must be "auto" or a number from 1 to 256`},
		{"queues word", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nqueues = \"many\"\n", `networks.a.queues: queues must be "auto" or a number`},
		{"qbg range", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nmode = \"vepa\"\n[networks.a.virtualport]\ntype = \"802.1Qbg\"\nmanagerid = 256\ntypeid = 1\ntypeidversion = 1\n", `p.toml:7: networks.a.virtualport.managerid: must be from 0 to 255, not 256`},
		{"qbg typeid range", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nmode = \"vepa\"\n[networks.a.virtualport]\ntype = \"802.1Qbg\"\nmanagerid = 1\ntypeid = 16777216\ntypeidversion = 1\n", `virtualport.typeid: must be from 0 to 16777215`},
		{"qbg instanceid", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nmode = \"vepa\"\n[networks.a.virtualport]\ntype = \"802.1Qbg\"\nmanagerid = 1\ntypeid = 1\ntypeidversion = 1\ninstanceid = \"nope\"\n", `virtualport.instanceid: "nope" is not a UUID`},
		{"qbg needs vepa", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.virtualport]\ntype = \"802.1Qbg\"\nmanagerid = 1\ntypeid = 1\ntypeidversion = 1\n", `802.1Qbg needs mode = "vepa"`},
		{"qbh profile", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.virtualport]\ntype = \"802.1Qbh\"\n", `virtualport.profileid: is required for 802.1Qbh`},
		{"virtualport type", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.virtualport]\ntype = \"ovs\"\n", `"ovs" is not a virtual port type; allowed: 802.1Qbg, 802.1Qbh`},
		{"virtualport unknown key", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n[networks.a.virtualport]\ntype = \"802.1Qbh\"\nprofileid = \"x\"\ncolour = 1\n", `p.toml:7: networks.a.virtualport.colour: unknown key; allowed in virtualport`},
		{"host_access private", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nmode = \"private\"\nhost_access = \"192.0.2.1/24\"\n", `host_access: needs mode "bridge" or "vepa"`},
		{"on_link on l2", "[networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\non_link = true\n", `p.toml:4: networks.a.on_link: is for mode "l3"`},
		{"on_link on macvtap", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\non_link = true\n", `p.toml:4: networks.a.on_link: does not apply to kind "macvtap"`},
		{"host_access ipvtap private", "[networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\nflag = \"private\"\nhost_access = \"192.0.2.1/24\"\n", `p.toml:5: networks.a.host_access: needs flag "bridge" or "vepa"`},
		{"host_access network address", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nhost_access = \"192.0.2.0/24\"\n", `must be the host's address on the guests' subnet`},
		{"untrusted rx filters", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\ntrust = \"untrusted\"\ntrust_guest_rx_filters = true\n", `trust_guest_rx_filters: cannot be true for an untrusted network`},
		{"untrusted no spoofchk", "[networks.a]\nkind = \"passthrough\"\npf = \"p\"\ntrust = \"untrusted\"\nspoofchk = false\n", `spoofchk: cannot be off for an untrusted network`},
		{"range outside", "[networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\naddresses = \"198.51.100.0/24\"\nrange = \"203.0.113.1-203.0.113.9\"\n", `networks.a.range: "203.0.113.1-203.0.113.9" must be "FIRST-LAST" inside 198.51.100.0/24`},
		{"gateway without addresses", "[networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\ngateway = \"198.51.100.1\"\n", `networks.a.addresses: is required when range or gateway is set`},
		{"parent name too long", "[networks.a]\nkind = \"macvtap\"\nparent = \"abcdefghijklmnopq\"\n", `is not an interface name (1 to 15 characters`},
		{"mac prefix multicast", "mac_prefix = \"01:00\"\n", `p.toml:1: mac_prefix: "01:00" must start with a locally administered unicast octet`},
		{"host override bad value", "[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\n\n[hosts.n2.networks.a]\nmode = \"nope\"\n", `p.toml:6: hosts.n2.networks.a.mode: "nope" is not allowed`},
		{"host section unknown key", "[hosts.n2]\nfoo = 1\n", `p.toml:2: hosts.n2.foo: unknown key; a host section holds only`},
		{"syntax", "[networks.a\nkind = 1\n", `p.toml:2: expected '.' or ']' to end table name`},
		{"bandwidth", "[networks.a]\nkind = \"bridge\"\nbridge = \"b\"\n[networks.a.bandwidth]\ninbound_peak = 5\n", `networks.a.bandwidth.inbound_average: is required when inbound_peak`},
		{"l3s", "[networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\nmode = \"l3s\"\n", `p.toml:4: networks.a.mode: "l3s" hands a guest's inbound packets`},
		{"hostdev with devices", "[networks.a]\nkind = \"passthrough\"\ndevices = [\"v\"]\nmode = \"hostdev\"\n", `mode "hostdev" hands the pool to libvirt, which needs pf`},
		{"hostdev spoofchk", "[networks.a]\nkind = \"passthrough\"\npf = \"p\"\nmode = \"hostdev\"\nspoofchk = true\n", `spoofchk and max_tx_rate apply to mode "passthrough" only`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.toml", []byte(c.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.text)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "p.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

// Two passthrough networks that can hand out one device are a policy
// error naming both networks, the file and the lines.
func TestOverlappingPoolsAreRefused(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"same device", "[networks.a]\nkind = \"passthrough\"\ndevices = [\"v0\", \"v1\"]\n[networks.b]\nkind = \"passthrough\"\ndevices = [\"v2\", \"v1\"]\n",
			`p.toml:6: networks.b.devices: "v1" is also in passthrough network "a" (p.toml:3: networks.a.devices)`},
		{"same pf", "[networks.a]\nkind = \"passthrough\"\npf = \"enp3s0f0\"\n[networks.b]\nkind = \"passthrough\"\npf = \"enp3s0f0\"\nmode = \"hostdev\"\n",
			`p.toml:6: networks.b.pf: "enp3s0f0" is also in passthrough network "a" (p.toml:3: networks.a.pf)`},
		{"a host override makes them overlap", "[networks.a]\nkind = \"passthrough\"\npf = \"p0\"\n[networks.b]\nkind = \"passthrough\"\npf = \"p1\"\n[hosts.n2.networks.b]\npf = \"p0\"\n",
			`p.toml:8: hosts.n2.networks.b.pf: "p0" is also in passthrough network "a" (p.toml:3: networks.a.pf)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.toml", []byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
		})
	}
	if _, err := Parse("p.toml", []byte("[networks.a]\nkind = \"passthrough\"\npf = \"p0\"\n[networks.b]\nkind = \"passthrough\"\npf = \"p1\"\n")); err != nil {
		t.Fatalf("disjoint pools: %v", err)
	}
}

func TestEveryProblemIsReported(t *testing.T) {
	_, err := Parse("p.toml", []byte("[networks.a]\nkind = \"macvtap\"\nparent = \"e\"\nmode = \"x\"\nflag = \"y\"\nbogus = 1\n"))
	es, ok := err.(Errors)
	if !ok || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	if es[0].Line != 4 || es[1].Line != 5 || es[2].Line != 6 {
		t.Fatalf("lines: %d %d %d", es[0].Line, es[1].Line, es[2].Line)
	}
}

func TestLocator(t *testing.T) {
	l := newLocator("a = 1\n[networks.\"my lan\"]\nkind = \"x\"\ns = \"\"\"\nx = 2\n\"\"\"\n[hosts.h.networks.b]\nparent.x = 1\n")
	for key, want := range map[string]int{"a": 1, "networks.my lan": 2, "networks.my lan.kind": 3, "hosts.h.networks.b": 7, "hosts.h.networks.b.parent.x": 8} {
		if got := l.line(splitKey(key)...); got != want && !strings.Contains(key, "my lan") {
			t.Errorf("%s: line %d, want %d", key, got, want)
		}
	}
	if l.line("networks", "my lan", "kind") != 3 {
		t.Errorf("quoted table key: %d", l.line("networks", "my lan", "kind"))
	}
	if _, ok := l["networks.my lan.x"]; ok {
		t.Error("a line inside a multi-line string was taken for a key")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fleet))
	f.Add([]byte("[networks.a]\nkind = \"passthrough\"\ndevices = [\"a\", \"b\"]\n"))
	f.Add([]byte("[hosts.x.networks.a]\nkind = \"ipvtap\"\nparent = \"e\"\nqueues = 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, h := range append([]string{"any"}, p.Hosts()...) {
			if _, err := p.Networks(h); err != nil {
				t.Fatalf("valid policy, invalid network for %s: %v", h, err)
			}
		}
	})
}

// TestParentsByVLAN: networks on different VLANs of one NIC sit on
// different devices (PARENT.N), so kinds and modes may differ.
func TestParentsByVLAN(t *testing.T) {
	text := "[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n" +
		"[networks.a]\nkind = \"ipvtap\"\nparent = \"eth0\"\nparent_mac = \"52:54:00:00:00:01\"\nvlan = 10\n" +
		"[networks.b]\nkind = \"ipvtap\"\nparent = \"eth0\"\nparent_mac = \"52:54:00:00:00:01\"\nvlan = 20\nmode = \"l3\"\n"
	if _, err := Parse("p.toml", []byte(text)); err != nil {
		t.Fatal(err)
	}
}
