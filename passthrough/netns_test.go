package passthrough

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/store"
)

// waitOperUp waits until the kernel's linkwatch has moved name to operstate
// up: it does so asynchronously after carrier comes, and later under load, so
// LinkUsage read right after LinkSetUp may still see lowerlayerdown.
func waitOperUp(t *testing.T, nl *netlink.Handle, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: operstate %s, not up after 10s", name, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func addVeth(t *testing.T, nl *netlink.Handle, name, peer string, up bool) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if up {
		for _, n := range []string{name, peer} {
			pl, err := nl.LinkByName(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := nl.LinkSetUp(pl); err != nil {
				t.Fatal(err)
			}
		}
		waitOperUp(t, nl, name)
	}
	return l
}

// Veth stand-ins named like VFs, in a throwaway namespace: LinkUsage sees
// real macvlan children, bridge masters, missing links and a dead peer, and
// Reserve skips exactly those.
func TestStandInsInNetns(t *testing.T) {
	ns := nstest.New(t)
	nl := ns.NL
	names := []string{"ens1f0v0", "ens1f0v1", "ens1f0v2", "ens1f0v3", "ens1f0v4", "ens1f0v5"}
	fs := newFakeSysfs(t)
	for _, n := range names {
		fs.plain(n)
	}
	// v0: free (admin down is fine). v1: has a macvlan child. v2: in a
	// bridge. v3: not in this namespace at all. v4: up but its peer is down
	// (lower layer down). v5: free and up.
	addVeth(t, nl, "ens1f0v0", "p0", false)
	v1 := addVeth(t, nl, "ens1f0v1", "p1", true)
	la := netlink.NewLinkAttrs()
	la.Name = "mv1"
	la.ParentIndex = v1.Attrs().Index
	if err := nl.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatalf("add macvlan: %v", err)
	}
	v2 := addVeth(t, nl, "ens1f0v2", "p2", true)
	bla := netlink.NewLinkAttrs()
	bla.Name = "br0"
	br := &netlink.Bridge{LinkAttrs: bla}
	if err := nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetMaster(v2, br); err != nil {
		t.Fatal(err)
	}
	v4 := addVeth(t, nl, "ens1f0v4", "p4", false)
	if err := nl.LinkSetUp(v4); err != nil {
		t.Fatal(err)
	}
	addVeth(t, nl, "ens1f0v5", "p5", true)

	inUse, err := LinkUsage(nl)
	if err != nil {
		t.Fatal(err)
	}
	wantBusy := map[string]bool{"ens1f0v1": true, "ens1f0v2": true, "ens1f0v3": true, "ens1f0v4": true}
	for _, n := range names {
		if got := inUse(n); got != wantBusy[n] {
			l, _ := nl.LinkByName(n)
			var st string
			if l != nil {
				st = l.Attrs().OperState.String()
			}
			t.Errorf("inUse(%s) = %v, want %v (operstate %s)", n, got, wantBusy[n], st)
		}
	}

	st := openStore(t)
	p := &Pool{Name: "standins", SysfsRoot: fs.root, Devices: names, Linker: NetlinkVF{Handle: nl}}
	a, err := p.Reserve(st, holder(1), inUse)
	if err != nil || a.Netdev != "ens1f0v0" {
		t.Fatalf("first: %+v %v", a, err)
	}
	b, err := p.Reserve(st, holder(2), inUse)
	if err != nil || b.Netdev != "ens1f0v5" {
		t.Fatalf("second: %+v %v", b, err)
	}
	_, err = p.Reserve(st, holder(3), inUse)
	var pe *store.PoolExhaustedError
	if !errors.As(err, &pe) || len(pe.Busy) != 4 {
		t.Fatalf("third: %v", err)
	}
	// Stand-ins are not VFs: programming is skipped through the real
	// netlink path, and release has nothing to restore.
	if err := p.Program(st, a, holder(1), VFConfig{VLAN: ptr(10)}); err != nil {
		t.Fatalf("program stand-in: %v", err)
	}
	// Free v1 from its macvlan child: after a new snapshot it is usable.
	mv, err := nl.LinkByName("mv1")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkDel(mv); err != nil {
		t.Fatal(err)
	}
	if inUse, err = LinkUsage(nl); err != nil {
		t.Fatal(err)
	}
	c, err := p.Reserve(st, holder(3), inUse)
	if err != nil || c.Netdev != "ens1f0v1" {
		t.Fatalf("after freeing v1: %+v %v", c, err)
	}
	stat, err := p.Status(st, inUse)
	if err != nil || stat.Size != 6 || stat.Free != 0 || len(stat.Busy) != 3 {
		t.Fatalf("status: %+v %v", stat, err)
	}
	if err := stat.Headroom(1); err == nil || !strings.Contains(err.Error(), "ens1f0v3") {
		t.Fatalf("headroom: %v", err)
	}
	if _, err := p.ReleaseHolder(st, uuidN(1)); err != nil {
		t.Fatal(err)
	}
}

// A PF that is a real link but reports no VFs (a veth): the real
// NetlinkVF.VFs path runs and programming is skipped, not failed.
func TestRealLinkerOnNonSRIOVPF(t *testing.T) {
	ns := nstest.New(t)
	addVeth(t, ns.NL, "pfx", "pfxp", true)
	lk := NetlinkVF{Handle: ns.NL}
	vfs, err := lk.VFs("pfx")
	if err != nil || len(vfs) != 0 {
		t.Fatalf("VFs of a veth: %v %v", vfs, err)
	}
	if _, err := lk.VFs("nosuch0"); err == nil {
		t.Fatal("VFs of a missing link succeeded")
	}
	if err := lk.SetVfVlanQos("pfx", 0, 5, 0); err == nil {
		t.Fatal("the kernel accepted a VF setting on a veth; the test premise is wrong")
	}
	fs := newFakeSysfs(t)
	fs.pf("pfx", 2, func(i int) string { return "" })
	st := openStore(t)
	p := &Pool{Name: "pfx", SysfsRoot: fs.root, PF: "pfx", Linker: lk}
	vfs2, _ := Discover(fs.root, "pfx")
	// Netdev-less VFs count as missing, so reserve straight in the store.
	if _, err := st.Reserve("pfx", []string{vfs2[0].Key()}, holder(1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Program(st, vfs2[0], holder(1), VFConfig{VLAN: ptr(5)}); err != nil {
		t.Fatalf("program on a PF without VFs: %v", err)
	}
	if r, _, _ := st.ReservationOf("pfx", uuidN(1), macN(1)); len(r.Data) != 0 {
		t.Fatalf("settings saved for a non-VF: %v", r.Data)
	}
	// A PF that does not exist in the namespace: skipped as well.
	gone := &Pool{Name: "gone", SysfsRoot: fs.root, PF: "pfx", Linker: NetlinkVF{Handle: ns.NL}}
	if err := ns.NL.LinkDel(mustLink(t, ns.NL, "pfx")); err != nil {
		t.Fatal(err)
	}
	if err := gone.Program(st, vfs2[0], holder(1), VFConfig{VLAN: ptr(5)}); err != nil {
		t.Fatalf("program with the PF gone: %v", err)
	}
}

func mustLink(t *testing.T, nl *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
