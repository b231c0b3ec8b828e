package harness

import (
	"bytes"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/internal/run"
)

// probe is a macvlan on an uplink, moved into its own netns with an address.
func probe(t *testing.T, topo *Topology, uplink int, name, mode, ip string) string {
	t.Helper()
	nsName := topo.Prefix + "-" + name
	ns, err := nstest.NewNamed(nsName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := nstest.DeleteNamed(nsName); err != nil {
			t.Errorf("delete %s: %v", nsName, err)
		}
	})
	up, err := netlink.LinkByName(topo.Uplinks[uplink])
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]netlink.MacvlanMode{"vepa": netlink.MACVLAN_MODE_VEPA, "bridge": netlink.MACVLAN_MODE_BRIDGE, "private": netlink.MACVLAN_MODE_PRIVATE}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: topo.Prefix + name, ParentIndex: up.Attrs().Index, Namespace: netlink.NsFd(ns.Handle)}, Mode: modes[mode]}
	if err := netlink.LinkAdd(mv); err != nil {
		t.Fatal(err)
	}
	h := ns.NL
	l, err := h.LinkByName(topo.Prefix + name)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr(ip + "/24")
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return nsName
}

func pingFrom(nsName, ip string) error {
	_, err := run.Cmd(10*time.Second, "ip", "netns", "exec", nsName, "ping", "-n", "-c", "2", "-W", "1", "-i", "0.2", ip)
	return err
}

// The topology is a reflective-relay switch: two VEPA macvlans on one uplink
// reach the external host always, each other only with hairpin on; Close
// leaves nothing behind.
func TestTopologyHairpinAndCleanup(t *testing.T) {
	nstest.RequireRoot(t)
	topo := NewTopology(t, 2, false)
	if len(topo.Uplinks) != 2 || len(topo.Prefix) != 7 {
		t.Fatalf("uplinks %v prefix %q", topo.Uplinks, topo.Prefix)
	}
	for i, u := range topo.Uplinks {
		l, err := netlink.LinkByName(u)
		if err != nil {
			t.Fatal(err)
		}
		if l.Type() != "veth" || l.Attrs().OperState != netlink.OperUp || len(u) > 15 {
			t.Errorf("uplink %s: type %s state %s", u, l.Type(), l.Attrs().OperState)
		}
		if on, err := topo.Hairpin(i); err != nil || on {
			t.Errorf("port %d hairpin %v err %v, want off", i, on, err)
		}
	}
	a := probe(t, topo, 0, "pa", "vepa", "192.0.2.50")
	b := probe(t, topo, 0, "pb", "vepa", "192.0.2.51")
	if err := pingFrom(a, ExtIP); err != nil {
		t.Fatalf("probe a -> external host: %v", err)
	}
	if err := topo.ExtPing("192.0.2.51", 2); err != nil {
		t.Fatalf("external host -> probe b: %v", err)
	}
	if err := pingFrom(a, "192.0.2.51"); err == nil {
		t.Fatal("VEPA without hairpin: a reached b")
	}
	if err := topo.SetHairpin(true); err != nil {
		t.Fatal(err)
	}
	for i := range topo.Uplinks {
		if on, err := topo.Hairpin(i); err != nil || !on {
			t.Errorf("port %d hairpin %v err %v, want on", i, on, err)
		}
	}
	if err := pingFrom(a, "192.0.2.51"); err != nil {
		t.Fatalf("VEPA with hairpin: a cannot reach b: %v", err)
	}
	_ = b
	if err := topo.AddExtAddr("192.0.2.254"); err != nil {
		t.Fatal(err)
	}
	if err := pingFrom(a, "192.0.2.254"); err != nil {
		t.Fatalf("trigger address: %v", err)
	}
	if taps, err := topo.MacvtapsOn(0); err != nil || len(taps) != 0 {
		t.Errorf("MacvtapsOn sees %v (%v): the probes live in other netns", taps, err)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := topo.Gone(); err != nil {
		t.Fatal(err)
	}
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTopologyNamesAreUnique(t *testing.T) {
	nstest.RequireRoot(t)
	a, b := NewTopology(t, 1, false), NewTopology(t, 1, true)
	if a.Prefix == b.Prefix || bytes.Equal([]byte(a.Uplinks[0]), []byte(b.Uplinks[0])) {
		t.Fatalf("same names: %s %s", a.Prefix, b.Prefix)
	}
}
