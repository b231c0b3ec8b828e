package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/test/harness"
)

// otherHost is a host of the policy that is not this machine.
const otherHost = "e2e-other-node"

// TestVirtapLifecycle: two macvtap bridge guests provisioned by virtap.
//   - migrate filter: `virtap hook qemu NAME migrate begin -` fed the live
//     XML prints it rewritten for another host's policy section (its own
//     parent NIC), and unchanged for this host;
//   - libvirtd restart with the guests running: they keep running (their
//     ping loops go on across the restart) and the reconnect hook ran and
//     succeeded (a record deleted before the restart is rebuilt);
//   - destroy: nothing virtap made is left (no tagged device, no record).
func TestVirtapLifecycle(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	if !env.Libvirt.Owned() {
		t.Fatalf("libvirtd restart: %v", harness.ErrNotOwned)
	}
	t.Parallel()
	topo := harness.NewTopology(t, 2, false)
	w := harness.NewVirtapWiring(v)
	nw := harness.MacvtapNetwork(topo, 0, "bridge")
	ipA, ipB := harness.GuestIP(0), harness.GuestIP(1)
	a := vguest(t, env, w, topo, "a", w.Interface(t, topo, 0, "bridge", ""), ipA, 1, harness.ExtIP, ipB)
	b := vguest(t, env, w, topo, "b", w.Interface(t, topo, 0, "bridge", ""), ipB, 1, harness.ExtIP, ipA)
	w.AddPolicy(topo, fmt.Sprintf("[hosts.%s.networks.%s]\nparent = %q\n", otherHost, nw, topo.Uplinks[1]))
	a.Start()
	b.Start()
	waitPing(a, harness.ExtIP)
	waitPing(b, harness.ExtIP)
	waitLoopOK(a, ipB)
	waitLoopOK(b, ipA)
	w.CheckRunning(t, topo)

	t.Run("migrate-filter", func(t *testing.T) {
		live, err := harness.DumpXML(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		mac := liveIface(t, a).MAC
		pol := w.PolicyFile(t, topo)
		for _, tc := range []struct{ host, parent string }{{otherHost, topo.Uplinks[1]}, {"", topo.Uplinks[0]}} {
			args := []string{"--policy", pol, "hook", "qemu", a.Name, "migrate", "begin", "-"}
			if tc.host != "" {
				args = append(args, "--host", tc.host)
			}
			out, _, err := v.Run([]byte(live), args...)
			if err != nil {
				t.Fatalf("migrate hook for host %q: %v", tc.host, err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(out); err != nil {
				t.Fatalf("migrate hook for host %q printed no domain: %v\n%s", tc.host, err, out)
			}
			if d.Name != a.Name || d.UUID != a.UUID || d.OS == nil || d.OS.Kernel == "" {
				t.Fatalf("host %q: the domain lost its identity or boot setup:\n%s", tc.host, out)
			}
			if d.Devices == nil || len(d.Devices.Interfaces) != 1 || len(d.Devices.Serials) != 1 {
				t.Fatalf("host %q: want the one interface and the serial kept:\n%s", tc.host, out)
			}
			ifc := d.Devices.Interfaces[0]
			if ifc.Source == nil || ifc.Source.Direct == nil || ifc.Source.Direct.Dev != tc.parent || ifc.Source.Direct.Mode != "bridge" {
				t.Fatalf("host %q: want a direct interface on %s in bridge mode, got %+v\n%s", tc.host, tc.parent, ifc.Source, out)
			}
			if ifc.MAC == nil || !strings.EqualFold(ifc.MAC.Address, mac) {
				t.Fatalf("host %q: the MAC changed (live %s): %+v", tc.host, mac, ifc.MAC)
			}
			rec, _, err := domain.ParseRecord([]byte(out))
			if err != nil || rec == nil || len(rec.Interfaces) != 1 || rec.Interfaces[0].Parent != tc.parent || rec.Interfaces[0].Network != nw {
				t.Fatalf("host %q: virtap's record should name network %s on %s: %+v %v", tc.host, nw, tc.parent, rec, err)
			}
			t.Logf("migrate to %q: interface on %s, mac %s kept", tc.host, tc.parent, mac)
		}
		// A host the policy cannot serve: the hook refuses (exit 1) and
		// prints no XML, so libvirt does not migrate.
		bad := w.PolicyFile(t, topo)
		if err := writeFile(bad, fmt.Sprintf("[networks.%s]\nkind = \"macvtap\"\nparent = \"%sx9\"\nmode = \"bridge\"\n", nw, topo.Prefix)); err != nil {
			t.Fatal(err)
		}
		if out, _, err := v.Run([]byte(live), "--policy", bad, "hook", "qemu", a.Name, "migrate", "begin", "-"); err == nil {
			t.Logf("note: migrate hook accepted a parent that does not exist on this host:\n%.300s", out)
		}
	})

	t.Run("libvirtd-restart", func(t *testing.T) {
		// Lose a's record, as a crash would: only the reconnect hook can
		// bring it back.
		st, err := store.Open(v.StateDir, store.Options{Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = st.DeleteDomain(a.UUID)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		before, err := v.Status()
		if err != nil {
			t.Fatal(err)
		}
		if before.Running(a) == nil {
			t.Fatalf("record of %s still there after deleting it", a.Name)
		}
		start := time.Now()
		if err := env.Libvirt.Restart(); err != nil {
			t.Fatal(err)
		}
		t.Logf("libvirtd restarted in %s", time.Since(start).Round(time.Millisecond))
		for _, g := range []*harness.Guest{a, b} {
			if st, err := harness.DomainState(g.Name); err != nil || st != "running" {
				t.Fatalf("%s after the restart: %q %v", g.Name, st, err)
			}
		}
		// Loop rounds that began after the restart, OK both ways.
		waitLoopOK(a, ipB)
		waitLoopOK(b, ipA)
		after, err := v.Status()
		if err != nil {
			t.Fatal(err)
		}
		if err := after.Running(a, b); err != nil {
			t.Fatalf("after the restart (reconnect hook): %v", err)
		}
	})

	destroyAll(t, a, b)
	for i := range topo.Uplinks {
		if taps, err := topo.MacvtapsOn(i); err != nil || len(taps) != 0 {
			t.Fatalf("macvtaps left on %s: %v %v", topo.Uplinks[i], taps, err)
		}
	}
	w.CheckGone(t, topo)
}
