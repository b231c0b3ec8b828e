package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/fleet/etcdtest"
)

const fleetGuestXML = `<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory>65536</memory><os><type>hvm</type></os><devices>
<interface type='network'><source network='edge'/></interface>
<interface type='network'><source network='lan'/></interface>
</devices></domain>`

var leasedRE = regexp.MustCompile(`leased="([^"]+)"`)

// virtap provision with [fleet]: one domain gets one address on every
// host, another domain another; status shows the fleet; with etcd down a
// new provision fails naming etcd, and a provisioned guest's XML (what the
// hook reads) still carries its address.
func TestProvisionInAFleet(t *testing.T) {
	srv := etcdtest.New(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.toml")
	os.WriteFile(pol, []byte(fmt.Sprintf(`mac_prefix = "52:54:00"
[fleet]
etcd = [%q]
prefix = "/cli-test/"
[networks.lan]
kind = "macvtap"
parent = "eth0"
[networks.edge]
kind = "ipvtap"
parent = "eth1"
parent_mac = "52:54:00:aa:00:01"
addresses = "198.51.100.0/24"
range = "198.51.100.10-198.51.100.99"
`, srv.Client)), 0o600)
	guest := func(name, u string) string {
		f := filepath.Join(dir, name+".xml")
		os.WriteFile(f, []byte(fmt.Sprintf(fleetGuestXML, name, u)), 0o600)
		return f
	}
	web1 := guest("web1", "6f0c9a3e-1c2b-4d6e-8f00-0a1b2c3d4e51")
	web2 := guest("web2", "6f0c9a3e-1c2b-4d6e-8f00-0a1b2c3d4e52")
	leased := func(host, file string) string {
		code, out, errOut := capture(t, "--policy", pol, "--state-dir", filepath.Join(dir, host), "provision", "--host", host, file)
		m := leasedRE.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("provision %s on %s: exit %d, %s\n%s", file, host, code, errOut, out)
		}
		return m[1]
	}
	a1, a2 := leased("node1", web1), leased("node2", web1)
	if a1 != a2 {
		t.Fatalf("web1 got %s on node1 and %s on node2", a1, a2)
	}
	if b := leased("node2", web2); b == a1 {
		t.Fatalf("web1 and web2 both got %s", b)
	}
	code, out, errOut := capture(t, "--policy", pol, "--state-dir", filepath.Join(dir, "node1"), "status", "--json", "--connect", "test:///default")
	var st struct {
		Fleet *fleetView `json:"fleet"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Fleet == nil || !st.Fleet.Healthy || len(st.Fleet.Leases) != 2 {
		t.Fatalf("status: exit %d %s\n%s", code, errOut, out)
	}
	// The provisioned XML is what libvirt keeps and the hook reads.
	provisioned := filepath.Join(dir, "web1.out.xml")
	if code, _, errOut := capture(t, "--policy", pol, "provision", "--host", "node1", "-o", provisioned, web1); code != 0 {
		t.Fatal(errOut)
	}
	srv.Stop()
	start := time.Now()
	web3 := guest("web3", "6f0c9a3e-1c2b-4d6e-8f00-0a1b2c3d4e53")
	code, out, errOut = capture(t, "--policy", pol, "provision", "--host", "node1", web3)
	if code != 1 || out != "" || !strings.Contains(errOut, "etcd at "+srv.Client) || time.Since(start) > 15*time.Second {
		t.Fatalf("provision with etcd down: exit %d after %s, stderr %q", code, time.Since(start), errOut)
	}
	// A dry run of the provisioned XML needs no etcd and changes nothing:
	// the address stays in the record.
	code, out, errOut = capture(t, "--policy", pol, "provision", "--host", "node1", "--diff", provisioned)
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Fatalf("dry run with etcd down: exit %d %s\n%s", code, errOut, out)
	}
	if b, _ := os.ReadFile(provisioned); !strings.Contains(string(b), `leased="`+a1+`"`) {
		t.Fatalf("provisioned XML lacks its address %s:\n%s", a1, b)
	}
	code, out, _ = capture(t, "--policy", pol, "status", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, "NOT AVAILABLE") {
		t.Fatalf("status with etcd down: exit %d\n%s", code, out)
	}
}
