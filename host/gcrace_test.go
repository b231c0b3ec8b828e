package host

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// hookPrepare does what the prepare hook does: open the store (taking the
// state lock), prepare, close.
func (f *fixture) hookPrepare(t *testing.T, dir string, o store.Options, g *Guest) {
	t.Helper()
	st, err := store.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := New(f.r.Log, f.r.Net, st, paths.Roots{}).Prepare(g); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) records(t *testing.T, dir string) map[string]bool {
	t.Helper()
	st, err := store.Open(dir, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	doms, err := st.Domains()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range doms {
		out[d.UUID] = true
	}
	return out
}

// gc asks libvirt which guests run before it takes the state lock (it
// must: see GCRun). A guest whose prepare runs in that window, here run by
// the query itself (the hook point), keeps its device and records; a
// stopped guest's record still goes.
func TestGCCannotRaceAPrepare(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "state")
	o := store.Options{NoSync: true, Timeout: 5 * time.Second}
	stopped := f.liveGuest(t, net.HardwareAddr{0x52, 0x54, 0x00, 0x51, 0x00, 0x01}, "", "trusted")
	f.hookPrepare(t, dir, o, stopped)
	starting := f.forgedGuest(t, uuid.New(), net.HardwareAddr{0x52, 0x54, 0x00, 0x51, 0x00, 0x02}, "vtpstartingaaaa")
	query := func() (Snapshot, error) {
		// libvirt's answer is taken: nothing runs. Now the guest starts.
		f.hookPrepare(t, dir, o, starting)
		return Snapshot{Running: func(uuid.UUID) bool { return false }}, nil
	}
	acts, err := GCRun{Log: f.r.Log, Net: f.r.Net, StateDir: dir, Store: o, Query: query}.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v", acts)
	if !f.exists(t, "vtpstartingaaaa") {
		t.Fatal("gc deleted the device of a guest that started while gc asked libvirt")
	}
	recs := f.records(t, dir)
	if !recs[starting.UUID.String()] || recs[stopped.UUID.String()] {
		t.Fatalf("records after gc: %v (want the starting guest's only)", recs)
	}
	st, _ := store.Open(dir, o)
	res, _ := st.Reservations("pool")
	st.Close()
	if len(res) != 1 {
		t.Fatalf("the starting guest lost its pool reservation: %+v", res)
	}
	_ = f.r.Net.Delete("vtpstartingaaaa")
}

// gc without libvirt on a live host removes only what a previous boot
// left: records written in this boot and devices that exist stay.
func TestGCWithoutLibvirtKeepsThisBoot(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "state")
	thisBoot, err := store.ReadBootID("/")
	if err != nil {
		t.Fatal(err)
	}
	old := store.Options{NoSync: true, BootID: uuid.NewString()}
	now := store.Options{NoSync: true, BootID: thisBoot}
	before := f.liveGuest(t, net.HardwareAddr{0x52, 0x54, 0x00, 0x52, 0x00, 0x01}, "", "trusted")
	f.hookPrepare(t, dir, old, before)
	plain := f.liveGuest(t, net.HardwareAddr{0x52, 0x54, 0x00, 0x52, 0x00, 0x02}, "", "trusted")
	plain.UUID = uuid.New()
	f.hookPrepare(t, dir, now, plain)
	withDev := f.forgedGuest(t, uuid.New(), net.HardwareAddr{0x52, 0x54, 0x00, 0x52, 0x00, 0x03}, "vtpthisbootaaaa")
	f.hookPrepare(t, dir, now, withDev)
	t.Cleanup(func() { _ = f.r.Net.Delete("vtpthisbootaaaa") })
	query := func() (Snapshot, error) {
		st, err := store.Open(dir, now)
		if err != nil {
			return Snapshot{}, err
		}
		defer st.Close()
		return ThisBoot(st, f.r.Net, f.r.Log)
	}
	if _, err := (GCRun{Log: f.r.Log, Net: f.r.Net, StateDir: dir, Store: now, Query: query}).Run(); err != nil {
		t.Fatal(err)
	}
	recs := f.records(t, dir)
	if recs[before.UUID.String()] || !recs[plain.UUID.String()] || !recs[withDev.UUID.String()] {
		t.Fatalf("records after gc --no-libvirt: %v; want only this boot's", recs)
	}
	if !f.exists(t, "vtpthisbootaaaa") {
		t.Fatal("gc --no-libvirt deleted a device of this boot")
	}
}

// A damaged database moved aside is rebuilt from the device tags, and the
// release that follows finds the device.
func TestRebuildFromTags(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "state")
	o := store.Options{NoSync: true}
	g := f.forgedGuest(t, uuid.New(), net.HardwareAddr{0x52, 0x54, 0x00, 0x53, 0x00, 0x01}, "vtprebuildaaaaa")
	f.hookPrepare(t, dir, o, g)
	if err := os.Truncate(filepath.Join(dir, store.DBFile), 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(dir, o); err == nil {
		t.Fatal("a truncated database opened")
	}
	if _, err := store.MoveAside(dir, time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(f.r.Log, f.r.Net, st, paths.Roots{})
	if n, err := r.Rebuild(); err != nil || n != 1 {
		t.Fatalf("rebuilt %d: %v", n, err)
	}
	if owner, _, ok, _ := st.DeviceOwner("vtprebuildaaaaa"); !ok || owner != g.UUID.String() {
		t.Fatalf("rebuilt owner %q %v", owner, ok)
	}
	if err := r.Release(&Guest{UUID: g.UUID, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if f.exists(t, "vtprebuildaaaaa") {
		t.Fatal("release after the rebuild left the device")
	}
}
