//go:build virtapvm

package inside

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

const guestXML = `<domain type='qemu'>
  <name>vmguest</name>
  <uuid>0d9f5a52-8c1e-4f3b-9a61-3b2c1d0e9f11</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <interface type='network'><source network='edge'/></interface>
  </devices>
</domain>`

// policyFor is an ipvtap network with the default trust (untrusted: the
// hook also puts the anti-spoofing filter on the device).
func policyFor(mode, vhost string) string {
	return `[networks.edge]
kind = "ipvtap"
parent = "up0"
mode = "` + mode + `"
flag = "bridge"
vhost = "` + vhost + `"
addresses = "198.51.100.0/24"
range = "198.51.100.20-198.51.100.21"
gateway = "198.51.100.1"
`
}

func provisioned(t *testing.T, mode, vhost string) *provision.Result {
	t.Helper()
	pol, err := policy.Parse("policy.toml", []byte(policyFor(mode, vhost)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := provision.Provision([]byte(guestXML), provision.Options{Policy: pol, Host: "vm", Local: true,
		ParentMAC: netdev.LinkMAC})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPrepareRelease runs the hook's host side for an ipvtap guest: the
// device on the parent with the policy's mode and flag, tagged, with the
// parent's MAC; the leased address configured for delivery; release
// removes the device and keeps the lease; the next prepare gets the same
// address.
func TestPrepareRelease(t *testing.T) {
	for _, mode := range []string{"l2", "l3"} {
		t.Run(mode, func(t *testing.T) {
			hn := nstest.New(t)
			nstest.NewSwitched(t, hn, false)
			res := provisioned(t, mode, "auto")
			st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			r := host.New(hclog.NewNullLogger(), netdev.New(nil, hn.NL), st, paths.Roots{})
			g, err := host.NewGuest(res.Doc)
			if err != nil {
				t.Fatal(err)
			}
			// Prepare reads the record from the provisioned document.
			doc, err := provisionedDoc(res)
			if err != nil {
				t.Fatal(err)
			}
			g.Doc = doc
			ir := doc.Record.Interfaces[0]
			if err := r.Prepare(g); err != nil {
				t.Fatal(err)
			}
			d, ok, err := r.Net.Find(ir.Device)
			if err != nil || !ok {
				t.Fatalf("device %s after prepare: ok=%v err=%v", ir.Device, ok, err)
			}
			if d.Kind != "ipvtap" || d.Mode != mode || d.Flag != "bridge" || d.Parent != "up0" || !d.Ours() {
				t.Errorf("device %+v, want ipvtap %s bridge on up0 tagged", d, mode)
			}
			if !strings.EqualFold(d.MAC.String(), ir.MAC) || !strings.EqualFold(hn.MAC(t, "up0").String(), ir.MAC) {
				t.Errorf("device MAC %s, record MAC %s, parent MAC %s: all must be equal", d.MAC, ir.MAC, hn.MAC(t, "up0"))
			}
			addrs, err := host.GuestAddresses(hn.NL, ir.Device)
			first := netip.MustParseAddr("198.51.100.20")
			if err != nil || len(addrs) != 1 || addrs[0] != first {
				t.Fatalf("addresses on %s = %v, %v; want [%s] (first of the range)", ir.Device, addrs, err, first)
			}
			release(t, r, g)
			if _, ok, _ := r.Net.Find(ir.Device); ok {
				t.Errorf("device %s survived release", ir.Device)
			}
			ls, err := st.Leases("edge")
			if err != nil || len(ls) != 1 || ls[0].Addr != first {
				t.Errorf("leases after release = %v, %v; the lease must stay", ls, err)
			}
			if err := r.Prepare(g); err != nil {
				t.Fatal(err)
			}
			if addrs, _ := host.GuestAddresses(hn.NL, ir.Device); len(addrs) != 1 || addrs[0] != first {
				t.Errorf("second prepare: addresses %v, want the same lease %s", addrs, first)
			}
			release(t, r, g)
			if fl, err := r.FreeLeases(g.UUID); err != nil || len(fl) != 1 {
				t.Errorf("FreeLeases = %v, %v", fl, err)
			}
		})
	}
}

// release runs Release, which must not report any problem.
func release(t *testing.T, r *host.Realiser, g *host.Guest) {
	t.Helper()
	if err := r.Release(&host.Guest{UUID: g.UUID, Name: g.Name}); err != nil {
		t.Fatal(err)
	}
}

func provisionedDoc(res *provision.Result) (*domain.Doc, error) {
	return domain.Parse(res.XML)
}

// TestVhostAuto: with vhost_net loaded /dev/vhost-net exists, and
// provisioning for this host with vhost = "auto" writes the vhost driver.
func TestVhostAuto(t *testing.T) {
	if fi, err := os.Stat("/dev/vhost-net"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/vhost-net after loading vhost_net: %v", err)
	}
	hn := nstest.New(t)
	nstest.NewSwitched(t, hn, false)
	res := provisioned(t, "l2", "auto")
	if !strings.Contains(string(res.XML), "<driver name=\"vhost\"") && !strings.Contains(string(res.XML), "<driver name='vhost'") {
		t.Errorf("vhost = auto on a host with /dev/vhost-net: no vhost driver in\n%s", res.XML)
	}
	if res.Plans[0].Driver != "vhost" {
		t.Errorf("plan driver %q, want vhost", res.Plans[0].Driver)
	}
}
