package host

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
)

// The hook path of anti-spoofing for libvirt's macvtaps: a device libvirt
// made (untagged, named in the live XML) gets the filter at start, keeps it
// at started, loses it at release; wrong names are refused.

type fixture struct {
	s   *nstest.Switched
	r   *Realiser
	fm  *nft.Manager
	dom uuid.UUID
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	host := nstest.New(t)
	s := nstest.NewSwitched(t, host, false)
	st, err := store.Open(filepath.Join(t.TempDir(), "state"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := hclog.NewNullLogger()
	f := &fixture{s: s, r: New(log, netdev.New(log, host.NL), st, paths.Roots{}), fm: nft.New(log), dom: uuid.New()}
	t.Cleanup(func() { _ = f.fm.Remove(f.dom) })
	return f
}

// libvirtMacvtap makes a macvtap as libvirt would: on the uplink, with the
// guest's MAC, not tagged as virtap's.
func (f *fixture) libvirtMacvtap(t *testing.T, name string, mac net.HardwareAddr) (netdev.Device, *netdev.Tap) {
	t.Helper()
	// netdev only creates tagged devices; drop the tag afterwards so the
	// device looks like libvirt's.
	d, err := f.r.Net.Create(netdev.Spec{Name: name, Kind: netdev.KindMacvtap, Parent: f.s.Uplink, Mode: "bridge", MAC: mac,
		Tag: netdev.PurposeTag("test", "libvirt"), Up: true, Index: nstest.FreshIndex()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := f.r.Net.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.r.Net.Handle().LinkSetAlias(l, ""); err != nil {
		t.Fatal(err)
	}
	tap, err := netdev.OpenTap(d, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close(); _ = f.r.Net.Handle().LinkDel(l) })
	return d, tap
}

// liveGuest is the live XML libvirt passes at start/started.
func (f *fixture) liveGuest(t *testing.T, mac net.HardwareAddr, target, trust string) *Guest {
	t.Helper()
	tgt := ""
	if target != "" {
		tgt = fmt.Sprintf("<target dev='%s'/>", target)
	}
	raw := fmt.Sprintf(`<domain type='qemu' id='1'>
  <name>web</name>
  <uuid>%s</uuid>
  <metadata>
    <virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1">
      <virtap:interface mac="%s" network="lan" kind="macvtap" mode="bridge" parent="%s" trust="%s"/>
    </virtap:virtap>
  </metadata>
  <devices>
    <interface type='direct'>
      <mac address='%s'/>
      <source dev='%s' mode='bridge'/>
      %s
    </interface>
  </devices>
</domain>`, f.dom, mac, f.s.Uplink, trust, mac, f.s.Uplink, tgt)
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

// spoofReaches sends an ARP request with a forged sender MAC from tap and
// reports whether the external host's kernel learnt the forged neighbour.
func (f *fixture) spoofReaches(t *testing.T, tap *netdev.Tap, n int) bool {
	t.Helper()
	forged := net.HardwareAddr{0x52, 0x54, 0x00, 0xee, 0x00, byte(n)}
	ip := net.IPv4(192, 0, 2, byte(100+n)).To4()
	frame := netdev.ARPRequest(forged, ip, f.s.ExtIP)
	for i := 0; i < 3; i++ {
		if err := tap.Write(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		neighs, err := f.s.External.NL.NeighList(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ne := range neighs {
			if ne.IP.Equal(ip) && bytes.Equal(ne.HardwareAddr, forged) {
				return true
			}
		}
	}
	return false
}

func TestStartFiltersLibvirtMacvtapUntilRelease(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x01}
	_, tap := f.libvirtMacvtap(t, "macvtap7", mac)
	if !f.spoofReaches(t, tap, 1) {
		t.Fatal("before any filter a forged ARP did not reach the external host: the fixture cannot tell")
	}
	g := f.liveGuest(t, mac, "macvtap7", "untrusted")
	if err := f.r.Starting(g); err != nil {
		t.Fatal(err)
	}
	if f.spoofReaches(t, tap, 2) {
		t.Fatal("after start, a forged source MAC reached the external host")
	}
	if err := f.r.Started(g); err != nil { // again, idempotent
		t.Fatal(err)
	}
	cs, err := f.fm.Counters(f.dom)
	if err != nil {
		t.Fatal(err)
	}
	if d := nft.Dropped(cs, mac); d[nft.ReasonMAC] == 0 {
		t.Errorf("no drop counted: %+v", cs)
	}
	if err := f.r.Release(&Guest{UUID: f.dom, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	ds, err := f.fm.Domains()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d == f.dom {
			t.Fatal("filter table left after release")
		}
	}
	if !f.spoofReaches(t, tap, 3) {
		t.Error("after release the device is still filtered")
	}
	if _, ok, _ := f.r.Net.Find("macvtap7"); !ok {
		t.Error("release deleted libvirt's macvtap, which virtap does not own")
	}
}

func TestTrustedGuestGetsNoFilter(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x02}
	_, tap := f.libvirtMacvtap(t, "macvtap8", mac)
	g := f.liveGuest(t, mac, "macvtap8", "trusted")
	if err := f.r.Started(g); err != nil {
		t.Fatal(err)
	}
	ds, _ := f.fm.Domains()
	for _, d := range ds {
		if d == f.dom {
			t.Fatal("a trusted guest got a filter table")
		}
	}
	if !f.spoofReaches(t, tap, 4) {
		t.Error("a trusted guest's frame was filtered")
	}
}

func TestStartedRefusesWrongDevices(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x03}
	other := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x04}
	f.libvirtMacvtap(t, "macvtap9", other)
	otherDom := uuid.New()
	if _, err := f.r.Net.Create(netdev.Spec{Name: "vtother", Kind: netdev.KindMacvtap, Parent: f.s.Uplink, Mode: "bridge", MAC: mac,
		Tag: netdev.GuestTag(otherDom, mac), Up: true, Index: nstest.FreshIndex()}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"another MAC":       "macvtap9",
		"not a macvtap":     f.s.Uplink,
		"absent":            "macvtap99",
		"path-like name":    "../../x",
		"another's device":  "vtother",
		"too long a name":   strings.Repeat("m", 16),
		"newline in a name": "mv\nx",
	}
	for what, target := range cases {
		g := f.liveGuest(t, mac, escapeAttr(target), "untrusted")
		if err := f.r.Started(g); err == nil {
			t.Errorf("%s (%q): accepted", what, target)
		}
		if err := f.r.Starting(g); err == nil {
			t.Errorf("%s (%q): accepted at start", what, target)
		}
	}
	// No target yet: start waits for started, started reports it.
	g := f.liveGuest(t, mac, "", "untrusted")
	if err := f.r.Starting(g); err != nil {
		t.Errorf("start without a target: %v", err)
	}
	var he *Error
	if err := f.r.Started(g); !errors.As(err, &he) {
		t.Errorf("started without a target: %v", err)
	}
	ds, _ := f.fm.Domains()
	for _, d := range ds {
		if d == f.dom {
			t.Fatal("a filter was installed on a refused device")
		}
	}
}

func escapeAttr(s string) string {
	r := strings.NewReplacer("&", "&amp;", "'", "&apos;", "<", "&lt;", "\n", "&#10;")
	return r.Replace(s)
}

// What a firewall reload does (nft flush ruleset) removes the filter with
// everything else; status sees the gap, gc (RestoreFilters) and the
// reconnect hook (Started) put it back, and forgeries are dropped again
// while the honest twin still arrives.
func TestFiltersComeBackAfterFlushRuleset(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x05}
	_, tap := f.libvirtMacvtap(t, "macvtap5", mac)
	// The record gives the guest a fixed address (the trust attribute is
	// the last one liveGuest writes).
	g := f.liveGuest(t, mac, "macvtap5", `untrusted" fixed="192.0.2.10`)
	cap := spooftest.NewCapture(t, f.s.External, f.s.ExtLink)
	guest := spooftest.Guest{MAC: mac, IP4: net.ParseIP("192.0.2.10").To4(), PeerMAC: f.s.ExtMAC, PeerIP: f.s.ExtIP}
	var forged, honest spooftest.Case
	for _, c := range spooftest.Cases(guest) {
		if c.Name == "foreign source MAC" {
			forged = c
		}
		if c.Name == "DHCP offer from port 1067 to 68" {
			honest = c
		}
	}
	seq := 0
	check := func(when string, filtered bool) {
		t.Helper()
		for _, c := range []spooftest.Case{forged, honest} {
			seq++
			n := []byte(fmt.Sprintf("virtap-comeback-%d", seq))
			if got := spooftest.Send(t, tap, cap, !filtered, n, c.Forged(n)); got == filtered {
				t.Errorf("%s: %s reached the LAN: %v, want %v", when, c.Name, got, !filtered)
			}
			n = []byte(fmt.Sprintf("virtap-comeback-%d-honest", seq))
			if !spooftest.Send(t, tap, cap, true, n, c.Honest(n)) {
				t.Errorf("%s: the honest twin of %s did not arrive", when, c.Name)
			}
		}
	}
	flush := func() {
		t.Helper()
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		c.FlushRuleset()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	missing := func() int {
		t.Helper()
		m, err := MissingFilters(f.fm, []*Guest{g})
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	if err := f.r.Started(g); err != nil {
		t.Fatal(err)
	}
	check("filtered", true)
	if n := missing(); n != 0 {
		t.Fatalf("%d interfaces reported unfiltered while filtered", n)
	}

	flush()
	check("after nft flush ruleset", false)
	m, err := MissingFilters(f.fm, []*Guest{g})
	if err != nil || len(m) != 1 || m[0].Device != "macvtap5" {
		t.Fatalf("status after the flush: %+v %v, want macvtap5 unfiltered", m, err)
	}
	acts, err := f.r.RestoreFilters([]*Guest{g}, true)
	if err != nil || len(acts) != 1 || missing() != 1 {
		t.Fatalf("gc --dry-run: %+v %v (and must change nothing)", acts, err)
	}
	acts, err = f.r.RestoreFilters([]*Guest{g}, false)
	if err != nil || len(acts) != 1 {
		t.Fatalf("gc: %+v %v", acts, err)
	}
	check("after gc", true)
	if n := missing(); n != 0 {
		t.Errorf("%d unfiltered after gc", n)
	}
	if acts, _ := f.r.RestoreFilters([]*Guest{g}, false); len(acts) != 0 {
		t.Errorf("a second gc restored again: %+v", acts)
	}

	flush() // then libvirtd restarts: the reconnect hook applies them again
	if err := f.r.Started(g); err != nil {
		t.Fatal(err)
	}
	check("after reconnect", true)
}
