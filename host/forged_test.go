package host

import (
	"fmt"
	"net"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
)

// forgedGuest is a running guest whose virtap record names device dev.
func (f *fixture) forgedGuest(t *testing.T, u uuid.UUID, mac net.HardwareAddr, dev string) *Guest {
	t.Helper()
	raw := fmt.Sprintf(`<domain type='qemu'><name>forger</name><uuid>%s</uuid>
  <metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1">
    <virtap:interface mac="%s" network="pool" kind="passthrough" mode="passthrough" device="%s" devices="%s"/>
  </virtap:virtap></metadata>
  <devices><interface type='direct'><mac address='%s'/><source dev='%s' mode='passthrough'/></interface></devices>
</domain>`, u, mac, dev, f.s.Uplink, mac, dev)
	d, err := domain.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuest(d)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (f *fixture) exists(t *testing.T, name string) bool {
	t.Helper()
	_, ok, err := f.r.Net.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A domain whose record forges device="X" can neither adopt nor delete X:
// an untagged libvirt-style macvtap and a device tagged for another guest
// survive its reconnect, prepare and release, even when its store record
// claims X as pending (the crash-window claim).
func TestForgedRecordNeverTouchesForeignDevices(t *testing.T) {
	f := newFixture(t)
	other := uuid.New()
	f.libvirtMacvtap(t, "macvtap9", net.HardwareAddr{0x52, 0x54, 0x00, 0x41, 0x00, 0x01})
	foreign := "vtpaaaaaaaaaaaa"
	if _, err := f.r.Net.Create(netdev.Spec{Name: foreign, Kind: netdev.KindMacvtap, Parent: f.s.Uplink, Mode: "bridge",
		Tag: netdev.GuestTag(other, net.HardwareAddr{0x52, 0x54, 0x00, 0x41, 0x00, 0x02}), Up: true, Index: nstest.FreshIndex()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.r.Net.Delete(foreign) })
	for i, victim := range []string{"macvtap9", foreign} {
		mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x42, 0x00, byte(i)}
		g := f.forgedGuest(t, f.dom, mac, victim)
		if err := f.r.Reconnect(g); err == nil {
			t.Errorf("%s: reconnect adopted a device not tagged for the guest", victim)
		}
		if owner, _, ok, _ := f.r.Store.DeviceOwner(victim); ok {
			t.Errorf("%s: reconnect recorded it for %s", victim, owner)
		}
		if err := f.r.Release(g); err != nil {
			t.Logf("release: %v", err)
		}
		if !f.exists(t, victim) {
			t.Fatalf("%s: deleted by the release of a domain whose record names it", victim)
		}
		if err := f.r.Prepare(g); err == nil {
			t.Errorf("%s: prepare accepted a record naming it", victim)
		}
		if owner, _, ok, _ := f.r.Store.DeviceOwner(victim); ok {
			t.Errorf("%s: prepare left a record claiming it for %s", victim, owner)
		}
		// Worst case: the store itself claims it for the domain (pending).
		if err := f.r.Store.PutIface(f.dom.String(), "forger", store.Iface{MAC: mac.String(), Kind: "passthrough", Device: victim, State: store.StatePending}); err != nil {
			t.Fatal(err)
		}
		if err := f.r.Release(g); err != nil {
			t.Logf("release with a pending claim: %v", err)
		}
		if !f.exists(t, victim) {
			t.Fatalf("%s: deleted by a release whose pending record claims it", victim)
		}
	}
}

// The honest twins: a device tagged for this guest goes at release, and so
// does an untagged device with virtap's name that this guest's own
// write-ahead record claimed (a crash between creation and tagging).
func TestReleaseDeletesOwnAndClaimedDevices(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x43, 0x00, 0x01}
	own := "vtpbbbbbbbbbbbb"
	if _, err := f.r.Net.Create(netdev.Spec{Name: own, Kind: netdev.KindMacvtap, Parent: f.s.Uplink, Mode: "bridge",
		Tag: netdev.GuestTag(f.dom, mac), Up: true, Index: nstest.FreshIndex()}); err != nil {
		t.Fatal(err)
	}
	g := f.forgedGuest(t, f.dom, mac, own)
	if err := f.r.Reconnect(g); err != nil {
		t.Fatalf("reconnect of the guest's own device: %v", err)
	}
	if err := f.r.Release(g); err != nil {
		t.Fatal(err)
	}
	if f.exists(t, own) {
		t.Fatal("the guest's own tagged device survived its release")
	}
	claimed := "vtpcccccccccccc"
	f.libvirtMacvtap(t, claimed, mac) // untagged: what a crash before the alias write leaves
	if err := f.r.Store.PutIface(f.dom.String(), "g", store.Iface{MAC: mac.String(), Kind: "passthrough", Device: claimed, State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Release(g); err != nil {
		t.Fatal(err)
	}
	if f.exists(t, claimed) {
		t.Fatal("the untagged device the guest's write-ahead record claimed survived its release")
	}
}
