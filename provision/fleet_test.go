package provision

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/virtap/virtap/provision/mac"
	"github.com/virtap/virtap/provision/policy"
)

const fleetPolicy = `mac_prefix = "52:54:00"
[fleet]
etcd = ["http://127.0.0.1:2379"]
[networks.lan]
kind = "macvtap"
parent = "eth0"
[networks.edge]
kind = "ipvtap"
parent = "eth1"
parent_mac = "52:54:00:aa:00:01"
addresses = "198.51.100.0/24"
range = "198.51.100.10-198.51.100.99"
`

const fleetGuest = `<domain type='qemu'><name>web1</name><uuid>6f0c9a3e-1c2b-4d6e-8f00-0a1b2c3d4e5f</uuid><memory>65536</memory>
<os><type>hvm</type></os><devices>
<interface type='network'><source network='lan'/></interface>
<interface type='network'><source network='edge'/></interface>
</devices></domain>`

// In a fleet, a derived MAC another domain owns is stepped past, the pool
// address is leased and lands in virtap's record, and a dry run keeps it.
func TestFleetMACsAndLeases(t *testing.T) {
	pol, err := policy.Parse("p.toml", []byte(fleetPolicy))
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := mac.ParsePrefix("52:54:00")
	first := mac.Derive("6f0c9a3e-1c2b-4d6e-8f00-0a1b2c3d4e5f", 0, 0, prefix).String()
	var claimed []string
	var leased []Plan
	f := &Fleet{
		ClaimMAC: func(m string) (string, error) {
			claimed = append(claimed, m)
			if m == first {
				return "domain db9 on host node3", nil
			}
			return "", nil
		},
		Lease: func(p Plan) (netip.Addr, error) {
			leased = append(leased, p)
			return netip.MustParseAddr("198.51.100.42"), nil
		},
	}
	res, err := Provision([]byte(fleetGuest), Options{Policy: pol, Host: "node1", Fleet: f})
	if err != nil {
		t.Fatal(err)
	}
	if res.Plans[0].MAC == first || len(claimed) != 2 {
		t.Fatalf("lan MAC %s after claims %v; want the second derived MAC", res.Plans[0].MAC, claimed)
	}
	if len(leased) != 1 || leased[0].Network.Name != "edge" || !strings.Contains(string(res.XML), `leased="198.51.100.42"`) {
		t.Fatalf("leases %v; record:\n%s", leased, res.XML)
	}
	// A dry run (no fleet calls) of the output keeps MACs and the lease.
	again, err := Provision(res.XML, Options{Policy: pol, Host: "node1"})
	if err != nil || string(again.XML) != string(res.XML) {
		t.Fatalf("dry run changed the document (%v):\n%s", err, again.XML)
	}
	// A MAC given in the XML that another domain owns is an error.
	f.ClaimMAC = func(m string) (string, error) { return "domain db9 on host node3", nil }
	_, err = Provision(res.XML, Options{Policy: pol, Host: "node1", Fleet: f})
	if err == nil || !strings.Contains(err.Error(), "is already used by domain db9 on host node3 in the fleet") {
		t.Fatalf("given MAC owned elsewhere: %v", err)
	}
}
