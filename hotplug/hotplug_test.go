package hotplug

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/provision/policy"
)

const testPolicy = `
[networks.lan]
kind = "macvtap"
parent = "up0"
mode = "bridge"
trust = "trusted"

[networks.dmz]
kind = "macvtap"
parent = "up0"
mode = "bridge"
trust = "untrusted"

[networks.access]
kind = "macvtap"
parent = "up0"
mode = "bridge"
trust = "trusted"
host_access = "192.0.2.1/24"

[networks.pool]
kind = "passthrough"
devices = ["hpvf0"]
trust = "untrusted"
`

// fixture: a namespace with uplink up0 and a pool stand-in hpvf0 (veths),
// a state directory, and one running persistent guest on network lan.
type fixture struct {
	env   *Env
	lv    *fakeLibvirt
	nd    *netdev.Manager
	fm    *nft.Manager
	state string
	dom   uuid.UUID
	orig  Dom
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	ns.Veth(t, "hpvf0", "hpvf0p", nil)
	// The pool counts a member whose operational state is not up yet
	// (lower layer down: its peer's link comes up a moment later) as busy.
	for i := 0; ; i++ {
		l, err := ns.NL.LinkByName("hpvf0")
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
		if i == 100 {
			t.Fatalf("hpvf0 not operationally up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(polPath, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(polPath)
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.NewNullLogger()
	f := &fixture{nd: netdev.New(log, ns.NL), fm: nft.New(log), state: filepath.Join(dir, "state"), dom: uuid.New()}
	t.Cleanup(func() { _ = f.fm.Remove(f.dom) })
	opts := provision.Options{Policy: pol, Host: "h1", DevRoot: filepath.Join(dir, "dev")}
	raw := fmt.Sprintf(`<domain type='qemu'>
  <name>hp1</name>
  <uuid>%s</uuid>
  <vcpu>1</vcpu>
  <devices>
    <interface type='network'><source network='lan'/><model type='virtio'/></interface>
  </devices>
</domain>
`, f.dom)
	res, err := provision.Provision([]byte(raw), opts)
	if err != nil {
		t.Fatal(err)
	}
	f.orig = Dom{Name: "hp1", Running: true, Persistent: true, Live: string(res.XML), Config: string(res.XML)}
	f.lv = &fakeLibvirt{dom: f.orig, net: f.nd, fail: map[string]error{}}
	f.env = &Env{Log: log, Libvirt: f.lv, Policy: pol, Host: "h1", Provision: opts,
		Realiser: func() (*host.Realiser, func(), error) {
			st, err := store.Open(f.state, store.Options{NoSync: true})
			if err != nil {
				return nil, nil, err
			}
			return host.New(log, f.nd, st, paths.Roots{}), func() { st.Close() }, nil
		}}
	return f
}

// left lists what virtap holds for the guest beyond its first interface:
// devices tagged for it, records, reservations, leases, nftables chains,
// the access network's shim.
func (f *fixture) left(t *testing.T) []string {
	t.Helper()
	var out []string
	devs, err := f.nd.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.Tag.For(f.dom) || d.Tag.Purpose() == netdev.ShimPurpose {
			out = append(out, "device "+d.Name)
		}
	}
	st, err := store.Open(f.state, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if d, ok, err := st.GetDomain(f.dom.String()); err != nil || ok {
		out = append(out, fmt.Sprintf("record %+v %v", d, err))
	}
	if rs, err := st.Reservations("pool"); err != nil || len(rs) > 0 {
		out = append(out, fmt.Sprintf("reservations %+v %v", rs, err))
	}
	if cs, err := f.fm.Installed(f.dom); err != nil || len(cs) > 0 {
		out = append(out, fmt.Sprintf("filters %v %v", cs, err))
	}
	return out
}

func (f *fixture) unchanged(t *testing.T) {
	t.Helper()
	if shape(t, f.lv.dom.Live) != shape(t, f.orig.Live) || shape(t, f.lv.dom.Config) != shape(t, f.orig.Config) {
		t.Fatalf("domain XML changed:\nlive:\n%s\nconfig:\n%s", f.lv.dom.Live, f.lv.dom.Config)
	}
	if l := f.left(t); len(l) > 0 {
		t.Fatalf("left behind: %s", strings.Join(l, "; "))
	}
}

// shape is what matters of a domain XML here: its interfaces (MAC, type,
// link state) and virtap's record.
func shape(t *testing.T, doc string) string {
	t.Helper()
	if doc == "" {
		return ""
	}
	d, err := domain.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, i := range d.Interfaces {
		fmt.Fprintf(&b, "%s %s %s;", i.MAC, i.Type, i.TargetDev)
	}
	return b.String() + d.Record.Element()
}

// TestAttachRollsBackAfterTheDeviceIsMade: a pool interface (its device
// made, the pool member reserved, an anti-spoofing filter on it, the
// record in libvirt's metadata and in the persistent definition) whose
// live attach fails: every step is undone.
func TestAttachRollsBackAfterTheDeviceIsMade(t *testing.T) {
	f := newFixture(t)
	f.lv.fail["attach-live"] = errors.New("injected: Bus 'pci.0' does not support hotplugging")
	var before string
	f.lv.spy = func(call string) {
		if call == "attach-live" {
			before = strings.Join(f.left(t), "; ")
		}
	}
	_, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "pool"}, Where{})
	if err == nil || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("want the injected failure, rolled back: %v", err)
	}
	for _, want := range []string{"device vtp", "reservations", "filters", "record"} {
		if !strings.Contains(before, want) {
			t.Fatalf("when the attach failed, want %q among %s", want, before)
		}
	}
	want := []string{"metadata-live", "metadata-config", "attach-config", "attach-live", "detach-config", "metadata-config", "metadata-live"}
	if fmt.Sprint(f.lv.calls) != fmt.Sprint(want) {
		t.Fatalf("libvirt calls %v, want %v", f.lv.calls, want)
	}
	f.unchanged(t)
}

// TestAttachRollsBackEveryStep fails each libvirt step in turn for each
// kind of network: nothing is ever left.
func TestAttachRollsBackEveryStep(t *testing.T) {
	f := newFixture(t)
	for _, nw := range []string{"pool", "dmz", "access"} {
		for _, step := range []string{"metadata-live", "metadata-config", "attach-config", "attach-live", "update-live"} {
			if step == "update-live" && nw != "dmz" {
				continue // only a gated interface is brought up by an update
			}
			f.lv.fail = map[string]error{step: errors.New("injected at " + step)}
			f.lv.calls = nil
			_, err := Attach(f.env, "hp1", provision.AttachRequest{Network: nw}, Where{})
			if err == nil || !strings.Contains(err.Error(), "injected at "+step) {
				t.Fatalf("%s, failing %s: %v", nw, step, err)
			}
			f.unchanged(t)
		}
	}
}

// TestAttachDetachUntrustedMacvtap: the interface on an untrusted macvtap
// network goes into the running guest with its link down, and comes up
// only once the filter is bound to libvirt's macvtap; detach removes the
// device, the filter, the records and the entry in both definitions.
func TestAttachDetachUntrustedMacvtap(t *testing.T) {
	f := newFixture(t)
	var filteredAtUpdate map[string]string
	f.lv.onUpdate = func(xml string) {
		filteredAtUpdate, _ = f.fm.Installed(f.dom)
		if !strings.Contains(xml, `state="up"`) {
			t.Errorf("update does not bring the link up: %s", xml)
		}
	}
	res, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "dmz"}, Where{})
	if err != nil {
		t.Fatal(err)
	}
	mac := res.Record.MAC
	if !res.Live || !res.Defined || !res.Filter || !strings.HasPrefix(res.Device, "macvtap") {
		t.Fatalf("result: %+v", res)
	}
	if dev := filteredAtUpdate[mac]; dev != res.Device {
		t.Fatalf("link went up with filters %v; want %s's on %s", filteredAtUpdate, mac, res.Device)
	}
	for what, doc := range map[string]string{"live": f.lv.dom.Live, "config": f.lv.dom.Config} {
		if strings.Count(doc, mac) != 2 || !strings.Contains(doc, `network="dmz"`) {
			t.Fatalf("%s XML lacks the interface or its record entry:\n%s", what, doc)
		}
	}
	if strings.Contains(f.lv.dom.Live, `state="down"`) {
		t.Fatalf("link still down:\n%s", f.lv.dom.Live)
	}
	// A second attach derives another MAC.
	if _, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "dmz", MAC: mac}, Where{}); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("same MAC again: %v", err)
	}
	det, err := Detach(f.env, "hp1", strings.ToUpper(mac), Where{})
	if err != nil || !det.Released {
		t.Fatalf("detach: %+v %v", det, err)
	}
	if _, ok, _ := f.nd.Find(res.Device); ok {
		t.Fatalf("libvirt's macvtap %s left", res.Device)
	}
	f.unchanged(t)
	if _, err := Detach(f.env, "hp1", mac, Where{}); err == nil || !strings.Contains(err.Error(), "no interface with MAC") {
		t.Fatalf("detach twice: %v", err)
	}
}

// TestAttachDetachPoolAndShim: virtap's own devices (a pool macvtap with
// its reservation and filter, a host-access shim) come with the attach
// and go with the detach; a stopped guest only gets its definition
// changed.
func TestAttachDetachPoolAndShim(t *testing.T) {
	f := newFixture(t)
	p, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "pool"}, Where{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "access"}, Where{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Record.MAC == a.Record.MAC {
		t.Fatalf("two attaches, one MAC %s", p.Record.MAC)
	}
	l := f.left(t)
	got := strings.Join(l, "; ")
	for _, want := range []string{"device " + p.Record.Device, "device " + host.ShimName("access", "up0"), "reservations", "filters"} {
		if !strings.Contains(got, want) {
			t.Fatalf("after attach, want %q in %s", want, got)
		}
	}
	for _, mac := range []string{p.Record.MAC, a.Record.MAC} {
		if _, err := Detach(f.env, "hp1", mac, Where{}); err != nil {
			t.Fatal(err)
		}
	}
	f.unchanged(t)

	// Stopped: the persistent definition only, no host work.
	f.lv.dom.Running, f.lv.dom.Live = false, ""
	f.orig = f.lv.dom
	if _, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "pool"}, Where{Live: true}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("--live on a stopped guest: %v", err)
	}
	s, err := Attach(f.env, "hp1", provision.AttachRequest{Network: "pool"}, Where{})
	if err != nil || s.Live || !s.Defined {
		t.Fatalf("stopped guest: %+v %v", s, err)
	}
	if l := f.left(t); len(l) > 0 {
		t.Fatalf("host work for a stopped guest: %v", l)
	}
	if _, err := Detach(f.env, "hp1", s.Record.MAC, Where{}); err != nil {
		t.Fatal(err)
	}
	f.unchanged(t)
}
