package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
)

func TestGCRemovesOnlyTaggedLeftovers(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	m := netdev.New(nil, nil)
	hw, _ := net.ParseMAC("52:54:00:00:00:07")
	orphan := netdev.Spec{Name: "vtporphan0", Kind: netdev.KindMacvtap, Parent: "up0", Mode: "bridge",
		Tag: netdev.GuestTag(uuid.New(), hw), Index: nstest.FreshIndex()}
	if _, err := m.Create(orphan); err != nil {
		t.Fatal(err)
	}
	// An untagged device with a virtap-looking name: never touched.
	la := netlink.NewLinkAttrs()
	la.Name = "vtpforeign0"
	la.ParentIndex = ns.Link(t, "up0").Attrs().Index
	la.Index = nstest.FreshIndex()
	if err := ns.NL.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}); err != nil {
		t.Fatal(err)
	}
	// An anti-spoofing table left by a guest that never released (libvirt's
	// macvtap stands here untagged): gc drops the table, not the device.
	u2 := uuid.New()
	fm := nft.New(nil)
	if err := fm.Apply(nft.Spec{Domain: u2, MAC: ns.MAC(t, "vtpforeign0"), Device: "vtpforeign0"}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	// status shows the filter and its counters.
	code, out, errOut := capture(t, "--policy", "/nonexistent", "--state-dir", state, "status", "--json", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, `"domain": "`+u2.String()+`"`) || !strings.Contains(out, `"dropped"`) {
		t.Fatalf("status: %d\n%s\n%s", code, out, errOut)
	}
	// Without libvirt on a live host, what exists now is this boot's: kept.
	code, out, errOut = capture(t, "--policy", "/nonexistent", "--state-dir", state, "gc", "--no-libvirt", "--dry-run")
	if code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("gc --no-libvirt on a live host: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = capture(t, "--policy", "/nonexistent", "--state-dir", state, "gc", "--connect", "test:///default", "--dry-run")
	if code != 0 || !strings.Contains(out, "would remove device") || !strings.Contains(out, "vtporphan0") || strings.Contains(out, "vtpforeign0") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errOut)
	}
	if _, ok, _ := m.Find("vtporphan0"); !ok {
		t.Fatal("dry run removed the device")
	}
	code, out, errOut = capture(t, "--policy", "/nonexistent", "--state-dir", state, "--log-level", "debug", "gc", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, "removed device") {
		t.Fatalf("gc: %d\n%s\n%s", code, out, errOut)
	}
	if _, ok, _ := m.Find("vtporphan0"); ok {
		t.Fatalf("gc left the tagged orphan:\n%s\n%s", out, errOut)
	}
	if _, ok, _ := m.Find("vtpforeign0"); !ok {
		t.Fatal("gc removed an untagged device")
	}
	if ids, _ := fm.Domains(); len(ids) != 0 {
		t.Fatalf("gc left filter tables of %v", ids)
	}
	code, out, _ = capture(t, "--policy", "/nonexistent", "--state-dir", state, "gc", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("second gc: %d %s", code, out)
	}
}

// A damaged state database: the hook's error names the file and 'virtap
// gc'; gc moves it aside, rebuilds from the device tags and goes on.
func TestGCRecoversADamagedStore(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.New(t)
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "virtap.db"), bytes.Repeat([]byte{0xa5}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := capture(t, "--policy", "/nonexistent", "--state-dir", state, "status", "--json", "--connect", "test:///default")
	if code == 0 || !strings.Contains(errOut, "virtap.db is damaged") || !strings.Contains(errOut, "virtap gc") || strings.Contains(errOut, "goroutine") {
		t.Fatalf("status on a damaged store: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = capture(t, "--policy", "/nonexistent", "--state-dir", state, "gc", "--connect", "test:///default")
	if code != 0 || !strings.Contains(out, "damaged; moved aside") {
		t.Fatalf("gc on a damaged store: %d\n%s\n%s", code, out, errOut)
	}
	if m, _ := filepath.Glob(filepath.Join(state, "virtap.db.corrupt-*")); len(m) != 1 {
		t.Fatalf("the damaged file was not kept aside: %v", m)
	}
	if code, out, errOut = capture(t, "--policy", "/nonexistent", "--state-dir", state, "status", "--json", "--connect", "test:///default"); code != 0 {
		t.Fatalf("status after the rebuild: %d\n%s\n%s", code, out, errOut)
	}
}
