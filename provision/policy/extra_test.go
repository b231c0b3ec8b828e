package policy

import (
	"net/netip"
	"strings"
	"testing"
)

const extraNets = `
[networks.lan]
kind = "macvtap"
parent = "eth0"
trust = "untrusted"

[networks.pool]
kind = "ipvtap"
parent = "eth1"
addresses = "192.0.2.0/24"
range = "192.0.2.100-192.0.2.199"
gateway = "192.0.2.1"
max_extra_addresses = 4
`

func TestExtraAddressesPolicy(t *testing.T) {
	p, err := Parse("p.toml", []byte(extraNets+`
[guests.web]
extra_addresses = { lan = ["192.0.2.48/29", "2001:db8::50"], pool = "192.0.2.60/31" }
`))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := p.GuestOverride("", "web")
	if got := g.ExtraAddresses["lan"]; len(got) != 2 {
		t.Errorf("lan extras = %v", got)
	}
	n, _, _ := p.Network("", "pool")
	if n.MaxExtraAddresses != 4 {
		t.Errorf("pool max_extra_addresses = %d", n.MaxExtraAddresses)
	}
	if l, _, _ := p.Network("", "lan"); l.MaxExtraAddresses != DefaultMaxExtraAddresses {
		t.Errorf("lan max_extra_addresses = %d, want the default", l.MaxExtraAddresses)
	}
	bad := map[string]string{
		`lan = "192.0.2.0/27"`:                                    "more than network \"lan\"'s max_extra_addresses = 16",
		`lan = "banana"`:                                          "is not an address or prefix",
		`lan = "192.0.2.50/28"`:                                   "has host bits set",
		`lan = ["192.0.2.48/30", "192.0.2.49"]`:                   "overlaps 192.0.2.48/30",
		`pool = "198.51.100.5"`:                                   "outside network \"pool\"'s addresses",
		`pool = "192.0.2.150"`:                                    "dynamic range",
		`pool = "192.0.2.0/30"`:                                   "gateway",
		`pool = ["192.0.2.60/31", "192.0.2.62/31", "192.0.2.70"]`: "5 extra addresses",
		`nope = "192.0.2.5"`:                                      "need a macvtap or ipvtap network",
		`lan = "fe80::5"`:                                         "cannot be a guest's source address",
	}
	for line, want := range bad {
		_, err := Parse("p.toml", []byte(extraNets+"\n[guests.web]\nextra_addresses = { "+line+" }\n"))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "p.toml:") {
			t.Errorf("%s: error %v, want one naming p.toml and %q", line, err, want)
		}
	}
}

func TestExpand(t *testing.T) {
	got := Expand(netip.MustParsePrefix("2001:db8::40/126"))
	if len(got) != 4 || got[3] != netip.MustParseAddr("2001:db8::43") {
		t.Errorf("Expand = %v", got)
	}
}
