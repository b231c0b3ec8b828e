//go:build virtapvm

package inside

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/policy"
)

// TestFleetGuestStartsWithEtcdDown: a guest provisioned in a fleet (its
// address leased fleet-wide at define time, in virtap's record) starts
// through the hook's entry point while no etcd answers (none runs in this
// VM), and gets the recorded address, not the one this host's own store
// would have chosen.
func TestFleetGuestStartsWithEtcdDown(t *testing.T) {
	hn := nstest.New(t)
	nstest.NewSwitched(t, hn, false)
	dir := t.TempDir()
	text := policyFor("l2", "off") + "\n[fleet]\netcd = [\"http://127.0.0.1:9\"]\n"
	polFile := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(polFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(polFile, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	// What virtap define wrote after leasing 198.51.100.21 in etcd.
	leased := netip.MustParseAddr("198.51.100.21")
	fl := &provision.Fleet{Lease: func(provision.Plan) (netip.Addr, error) { return leased, nil }}
	res, err := provision.Provision([]byte(guestXML), provision.Options{Policy: pol, Host: "vm", Local: true, ParentMAC: netdev.LinkMAC, Fleet: fl})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.XML), `leased="198.51.100.21"`) {
		t.Fatalf("no leased address in the record:\n%s", res.XML)
	}
	cfg := hooks.Config{Log: hclog.NewNullLogger(), PolicyPath: polFile, StateDir: filepath.Join(dir, "state"), Host: "vm", NoSync: true}
	start := time.Now()
	if err := hooks.RunInput(cfg, hooks.Request{Domain: "vmguest", Op: "prepare", SubOp: "begin", Extra: "-"}, res.XML); err != nil {
		t.Fatalf("prepare with etcd down: %v", err)
	}
	took := time.Since(start)
	dev := res.Record.Interfaces[0].Device
	addrs, err := host.GuestAddresses(hn.NL, dev)
	if err != nil || len(addrs) != 1 || addrs[0] != leased {
		t.Fatalf("addresses on %s = %v, %v; want the recorded %s", dev, addrs, err, leased)
	}
	t.Logf("MEASURED fleet prepare with etcd down took %s", took)
	if err := hooks.RunInput(cfg, hooks.Request{Domain: "vmguest", Op: "release", SubOp: "end", Extra: "-"}, res.XML); err != nil {
		t.Fatal(err)
	}
}
