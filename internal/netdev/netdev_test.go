package netdev

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nstest"
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var testDomain = uuid.MustParse("6f1c3a4e-8b2d-4c1a-9e5f-0a1b2c3d4e5f")

func guestTag(mac string) Tag {
	m, _ := net.ParseMAC(mac)
	return GuestTag(testDomain, m)
}

// setup makes a fresh netns with a veth "up0"/"up0p" to serve as parent.
func setup(t *testing.T) (*nstest.NS, *Manager) {
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	return ns, New(testLogger(t), ns.NL)
}

func TestTagRoundTrip(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:AB:CD:EF")
	g := GuestTag(testDomain, mac)
	if g.String() != "virtap:6f1c3a4e-8b2d-4c1a-9e5f-0a1b2c3d4e5f:52:54:00:ab:cd:ef" {
		t.Fatalf("guest tag string %q", g)
	}
	for _, tag := range []Tag{g, PurposeTag("probe", "4242-1a2b3c4d"), PurposeTag("shim", "lan")} {
		got, ok := ParseTag(tag.String())
		if !ok || got != tag {
			t.Fatalf("round trip of %q: %+v %v", tag, got, ok)
		}
	}
	if d, ok := g.Domain(); !ok || d != testDomain {
		t.Fatalf("domain of guest tag: %v %v", d, ok)
	}
	if !g.For(testDomain) || g.For(uuid.New()) || PurposeTag(testDomain.String()[:8], "x").For(testDomain) || PurposeTag("probe", "x").For(uuid.Nil) {
		t.Fatal("For: true only for a guest tag of that very domain")
	}
	if m, ok := g.MAC(); !ok || !bytes.Equal(m, mac) {
		t.Fatalf("mac of guest tag: %v %v", m, ok)
	}
	if p := PurposeTag("probe", "x").Purpose(); p != "probe" {
		t.Fatalf("purpose %q", p)
	}
	if g.Purpose() != "" {
		t.Fatal("guest tag has no purpose")
	}
	for _, bad := range []string{"", "virtap", "virtap:", "virtap:probe", "virtap::x", "virtap:probe:",
		"libvirt:probe:x", "virtap:" + testDomain.String() + ":52:54:00:AB:CD:EF", "virtap:probe:" + strings.Repeat("x", 250)} {
		if tg, ok := ParseTag(bad); ok {
			t.Errorf("ParseTag(%q) accepted: %+v", bad, tg)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Name: "vt0", Kind: "macvtap", Parent: "eth0", Mode: "bridge", Tag: PurposeTag("t", "1")}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(s *Spec){
		"long name":     func(s *Spec) { s.Name = "abcdefghijklmnop" },
		"slash":         func(s *Spec) { s.Name = "a/b" },
		"no mode":       func(s *Spec) { s.Mode = "" },
		"kernel spell":  func(s *Spec) { s.Mode = "passthru" },
		"flag":          func(s *Spec) { s.Flag = "bridge" },
		"kind":          func(s *Spec) { s.Kind = "veth" },
		"no tag":        func(s *Spec) { s.Tag = Tag{} },
		"multicast mac": func(s *Spec) { s.MAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} },
		"ipvtap mode":   func(s *Spec) { s.Kind = "ipvtap"; s.Mode = "bridge" },
	}
	for name, mut := range cases {
		s := ok
		mut(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: want ErrInvalidSpec, got %v", name, err)
		}
	}
	s := ok
	s.Name = "abcdefghijklmno" // 15: fine
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// kernelMode reads the macvlan mode straight from the kernel.
func kernelMode(t *testing.T, ns *nstest.NS, name string) netlink.MacvlanMode {
	t.Helper()
	switch l := ns.Link(t, name).(type) {
	case *netlink.Macvtap:
		return l.Mode
	case *netlink.Macvlan:
		return l.Mode
	default:
		t.Fatalf("%s is a %s", name, l.Type())
		return 0
	}
}

func TestCreateFindDeleteEveryMode(t *testing.T) {
	want := map[string]netlink.MacvlanMode{
		"bridge": netlink.MACVLAN_MODE_BRIDGE, "vepa": netlink.MACVLAN_MODE_VEPA,
		"private": netlink.MACVLAN_MODE_PRIVATE, "passthrough": netlink.MACVLAN_MODE_PASSTHRU,
	}
	for _, kind := range []string{KindMacvtap, KindMacvlan} {
		for mode, kmode := range want {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				ns, m := setup(t)
				mac := "52:54:00:00:00:01"
				spec := Spec{Name: "vt-" + mode, Kind: kind, Parent: "up0", Mode: mode,
					Tag: guestTag(mac), Up: true, Index: nstest.FreshIndex(), TxQLen: 777}
				if mode != "passthrough" {
					spec.MAC, _ = net.ParseMAC(mac)
				}
				d, err := m.Create(spec)
				if err != nil {
					t.Fatal(err)
				}
				if got := kernelMode(t, ns, spec.Name); got != kmode {
					t.Fatalf("kernel mode %v, want %v", got, kmode)
				}
				l := ns.Link(t, spec.Name)
				if l.Attrs().Alias != spec.Tag.String() {
					t.Fatalf("alias %q", l.Attrs().Alias)
				}
				if l.Attrs().TxQLen != 777 {
					t.Fatalf("txqlen %d", l.Attrs().TxQLen)
				}
				if l.Attrs().Flags&net.FlagUp == 0 || !d.Up {
					t.Fatal("not up")
				}
				if d.Index != spec.Index || l.Attrs().Index != spec.Index {
					t.Fatalf("index %d/%d, want %d", d.Index, l.Attrs().Index, spec.Index)
				}
				if spec.MAC != nil && !bytes.Equal(l.Attrs().HardwareAddr, spec.MAC) {
					t.Fatalf("mac %v", l.Attrs().HardwareAddr)
				}
				f, ok, err := m.Find(spec.Name)
				if err != nil || !ok {
					t.Fatalf("find: %v %v", ok, err)
				}
				if f.Kind != kind || f.Parent != "up0" || f.Mode != mode || f.Tag != spec.Tag || f.Index != d.Index {
					t.Fatalf("find returned %+v", f)
				}
				if kind == KindMacvtap {
					if f.TapPath != fmt.Sprintf("/dev/tap%d", d.Index) {
						t.Fatalf("tap path %q", f.TapPath)
					}
					fi, err := os.Stat(f.TapPath)
					if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
						t.Fatalf("tap node: %v %v", fi, err)
					}
				} else if f.TapPath != "" {
					t.Fatalf("macvlan has tap path %q", f.TapPath)
				}
				if err := m.Delete(spec.Name); err != nil {
					t.Fatal(err)
				}
				if _, ok, _ := m.Find(spec.Name); ok {
					t.Fatal("still there after delete")
				}
				if f.TapPath != "" {
					deadline := time.Now().Add(2 * time.Second)
					for {
						if _, err := os.Stat(f.TapPath); os.IsNotExist(err) {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("%s still exists after delete", f.TapPath)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
			})
		}
	}
}

func TestAliasAtCreation(t *testing.T) {
	// Records whether the kernel honours IFLA_IFALIAS on RTM_NEWLINK (the
	// package doc depends on it) and checks that Create tags either way.
	ns, m := setup(t)
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex, la.Alias = "raw0", ns.Link(t, "up0").Attrs().Index, "virtap:t:raw"
	if err := ns.NL.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel keeps IFLA_IFALIAS given at RTM_NEWLINK: %v", ns.Link(t, "raw0").Attrs().Alias == la.Alias)
	d, err := m.Create(Spec{Name: "tagged0", Kind: KindMacvlan, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "x")})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Link(t, "tagged0").Attrs().Alias; got != "virtap:t:x" || d.Tag != PurposeTag("t", "x") {
		t.Fatalf("alias %q tag %+v", got, d.Tag)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	ns, m := setup(t)
	spec := Spec{Name: "vtidem", Kind: KindMacvtap, Parent: "up0", Mode: "vepa",
		Tag: guestTag("52:54:00:00:00:02"), Index: nstest.FreshIndex()}
	a, err := m.Create(spec)
	if err != nil {
		t.Fatal(err)
	}
	if a.Up {
		t.Fatal("up though not asked")
	}
	spec.Up = true
	b, err := m.Create(spec)
	if err != nil {
		t.Fatalf("re-create: %v", err)
	}
	if a.Index != b.Index || !b.Up || ns.Link(t, "vtidem").Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("re-create made a different device or did not set it up: %+v %+v", a, b)
	}
	other := spec
	other.Tag = guestTag("52:54:00:00:00:03")
	if _, err := m.Create(other); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("other owner's tag: want ErrNotOurs, got %v", err)
	}
	wrong := spec
	wrong.Mode = "bridge"
	if _, err := m.Create(wrong); !errors.Is(err, ErrMismatch) {
		t.Fatalf("different mode: want ErrMismatch, got %v", err)
	}
	if kernelMode(t, ns, "vtidem") != netlink.MACVLAN_MODE_VEPA || ns.Link(t, "vtidem").Attrs().Index != a.Index {
		t.Fatal("refused re-create changed the device")
	}
	links, _ := ns.NL.LinkList()
	if len(links) != 4 { // lo, up0, up0p, vtidem
		t.Fatalf("%d links, want 4", len(links))
	}
}

func TestRefusesUntaggedDevice(t *testing.T) {
	ns, m := setup(t)
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = "guest0", ns.Link(t, "up0").Attrs().Index
	if err := ns.NL.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatal(err)
	}
	before := ns.Link(t, "guest0").Attrs()
	_, err := m.Create(Spec{Name: "guest0", Kind: KindMacvlan, Parent: "up0", Mode: "bridge", Tag: guestTag("52:54:00:00:00:04")})
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("create over untagged: want ErrNotOurs, got %v", err)
	}
	if err := m.Delete("guest0"); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("delete untagged: want ErrNotOurs, got %v", err)
	}
	after := ns.Link(t, "guest0").Attrs()
	if after.Index != before.Index || after.Alias != "" {
		t.Fatalf("untagged device was changed: %+v", after)
	}
	if err := m.Delete("up0"); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("delete parent: want ErrNotOurs, got %v", err)
	}
	list, err := m.List()
	if err != nil || len(list) != 0 {
		t.Fatalf("List shows untagged devices: %+v %v", list, err)
	}
}

func TestDeleteGoneIsSuccess(t *testing.T) {
	_, m := setup(t)
	if err := m.Delete("nosuchdev"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(Spec{Name: "gone0", Kind: KindMacvlan, Parent: "up0", Mode: "private", Tag: PurposeTag("t", "g")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete("gone0"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete("gone0"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestCreateErrors(t *testing.T) {
	_, m := setup(t)
	_, err := m.Create(Spec{Name: "x0", Kind: KindMacvtap, Parent: "nosuch", Mode: "bridge", Tag: PurposeTag("t", "1")})
	if !errors.Is(err, ErrNoParent) {
		t.Fatalf("missing parent: %v", err)
	}
	_, err = m.Create(Spec{Name: "x0", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "1"), MTU: 9000})
	if err == nil {
		t.Fatal("MTU above the parent's accepted")
	}
	if _, ok, _ := m.Find("x0"); ok {
		t.Fatal("failed create left a device")
	}
}

func TestDeleteTaggedParallel(t *testing.T) {
	ns, m := setup(t)
	const n = 200
	for i := 0; i < n; i++ {
		tag := PurposeTag("bulk", fmt.Sprint(i))
		if i%2 == 1 {
			tag = guestTag(fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff))
		}
		if _, err := m.Create(Spec{Name: fmt.Sprintf("bk%d", i), Kind: KindMacvlan, Parent: "up0", Mode: "bridge", Tag: tag}); err != nil {
			t.Fatal(err)
		}
	}
	// Bystanders: one untagged, one of another purpose.
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = "keep0", ns.Link(t, "up0").Attrs().Index
	if err := ns.NL.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(Spec{Name: "keep1", Kind: KindMacvlan, Parent: "up0", Mode: "bridge", Tag: PurposeTag("shim", "k")}); err != nil {
		t.Fatal(err)
	}
	list, err := m.List()
	if err != nil || len(list) != n+1 {
		t.Fatalf("List: %d devices, %v", len(list), err)
	}
	// The manager for the thread's namespace (nil handle) can open a socket per worker.
	pm := New(testLogger(t), nil)
	start := time.Now()
	deleted, err := pm.DeleteTagged(func(tg Tag) bool { return tg.Purpose() == "bulk" || tg.Purpose() == "" }, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted %d devices with 16 workers in %v", len(deleted), time.Since(start))
	sort.Strings(deleted)
	if len(deleted) != n {
		t.Fatalf("deleted %d, want %d", len(deleted), n)
	}
	links, _ := ns.NL.LinkList()
	var left []string
	for _, l := range links {
		left = append(left, l.Attrs().Name)
	}
	sort.Strings(left)
	if strings.Join(left, ",") != "keep0,keep1,lo,up0,up0p" {
		t.Fatalf("left: %v", left)
	}
}

func TestParentStatusAndChildren(t *testing.T) {
	ns, m := setup(t)
	p, err := m.ParentStatus("up0")
	if err != nil || !p.Exists || !p.Up || !p.Carrier || p.MTU != 1500 || p.Kind != "veth" {
		t.Fatalf("status %+v %v", p, err)
	}
	if mac, err := m.ParentMAC("up0"); err != nil || !bytes.Equal(mac, ns.MAC(t, "up0")) {
		t.Fatalf("mac %v %v", mac, err)
	}
	if err := ns.NL.LinkSetDown(ns.Link(t, "up0p")); err != nil {
		t.Fatal(err)
	}
	if p, _ = m.ParentStatus("up0"); p.Carrier || !p.Up {
		t.Fatalf("peer down: carrier should be off: %+v", p)
	}
	if p, err = m.ParentStatus("nosuch"); err != nil || p.Exists {
		t.Fatalf("missing: %+v %v", p, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex = "foreign0", ns.Link(t, "up0").Attrs().Index
	if err := ns.NL.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(Spec{Name: "mine0", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "m"), Index: nstest.FreshIndex()}); err != nil {
		t.Fatal(err)
	}
	ns.Veth(t, "other0", "other0p", nil)
	if _, err := m.Create(Spec{Name: "else0", Kind: KindMacvlan, Parent: "other0", Mode: "bridge", Tag: PurposeTag("t", "e")}); err != nil {
		t.Fatal(err)
	}
	kids, err := m.MacvlanChildren("up0")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range kids {
		got[k.Name] = k.Ours()
		if !bytes.Equal(k.MAC, ns.MAC(t, k.Name)) || k.Parent != "up0" {
			t.Fatalf("child %+v", k)
		}
	}
	if len(got) != 2 || got["foreign0"] || !got["mine0"] {
		t.Fatalf("children %v", got)
	}
}

func TestTapReadDeadline(t *testing.T) {
	_, m := setup(t)
	d, err := m.Create(Spec{Name: "tapdl", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "d"), Up: true, Index: nstest.FreshIndex()})
	if err != nil {
		t.Fatal(err)
	}
	for _, vnet := range []bool{false, true} {
		tap, err := OpenTap(d, vnet)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = tap.Read(time.Now().Add(100 * time.Millisecond))
		el := time.Since(start)
		tap.Close()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("vnet=%v: want deadline exceeded, got %v", vnet, err)
		}
		if el < 90*time.Millisecond || el > 2*time.Second {
			t.Fatalf("vnet=%v: deadline honoured after %v", vnet, el)
		}
	}
	bad := d
	bad.Name = "notthis"
	if _, err := OpenTap(bad, false); err == nil {
		t.Fatal("OpenTap accepted a tap node of another device")
	}
}

func TestFrames(t *testing.T) {
	a, _ := net.ParseMAC("52:54:00:00:00:0a")
	b, _ := net.ParseMAC("52:54:00:00:00:0b")
	ipA, ipB := net.IPv4(192, 0, 2, 10).To4(), net.IPv4(192, 0, 2, 11).To4()
	f, err := ParseFrame(ARPRequest(a, ipA, ipB))
	if err != nil || f.ARP == nil || f.ARP.Op != 1 || !bytes.Equal(f.Dst, Broadcast) || !f.ARP.TargetIP.Equal(ipB) || !bytes.Equal(f.ARP.SenderMAC, a) {
		t.Fatalf("arp request: %+v %v", f, err)
	}
	f, err = ParseFrame(ARPReply(b, ipB, a, ipA))
	if err != nil || f.ARP == nil || f.ARP.Op != 2 || !bytes.Equal(f.Dst, a) || !f.ARP.SenderIP.Equal(ipB) {
		t.Fatalf("arp reply: %+v %v", f, err)
	}
	raw := ICMPEcho(a, b, ipA, ipB, false, 7, 9, []byte("hello"))
	f, err = ParseFrame(raw)
	if err != nil || f.ICMP == nil || f.ICMP.Type != 8 || f.ICMP.ID != 7 || f.ICMP.Seq != 9 || string(f.ICMP.Data) != "hello" {
		t.Fatalf("icmp: %+v %v", f, err)
	}
	if checksum(raw[14:34]) != 0 || checksum(f.IPv4.Payload) != 0 {
		t.Fatal("bad checksums")
	}
	if len(EthernetFrame(a, b, EtherTypeLocalExp1, nil)) != 60 {
		t.Fatal("no padding")
	}
	if _, err := ParseFrame(raw[:10]); err == nil {
		t.Fatal("short frame parsed")
	}
}

func TestCreateRevertsOnFailure(t *testing.T) {
	ns, m := setup(t)
	seen := 0
	m.afterAdd = func(l netlink.Link) error {
		seen = l.Attrs().Index
		return errors.New("injected failure")
	}
	_, err := m.Create(Spec{Name: "revert0", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "r"), Up: true, Index: nstest.FreshIndex()})
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("want the injected error, got %v", err)
	}
	if seen == 0 {
		t.Fatal("hook not reached: the link was never added")
	}
	if _, err := ns.NL.LinkByIndex(seen); err == nil {
		t.Fatal("half-made device left behind")
	}
	m.afterAdd = nil
	if _, err := m.Create(Spec{Name: "revert0", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: PurposeTag("t", "r"), Index: nstest.FreshIndex()}); err != nil {
		t.Fatalf("create after revert: %v", err)
	}
}

// A Manager of the calling thread's namespace (New(log, nil), as the hook
// and gc use it) must delete in that namespace even with one worker: a
// worker goroutine runs on another thread, in another namespace.
func TestDeleteTaggedCurrentNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	m := New(nil, nil)
	for _, workers := range []int{1, 4} {
		tag := PurposeTag("cur", fmt.Sprint(workers))
		if _, err := m.Create(Spec{Name: "vtcur0", Kind: KindMacvtap, Parent: "up0", Mode: "bridge", Tag: tag, Index: nstest.FreshIndex()}); err != nil {
			t.Fatal(err)
		}
		del, err := m.DeleteTagged(func(tg Tag) bool { return tg == tag }, workers)
		if err != nil || len(del) != 1 {
			t.Fatalf("workers %d: %v %v", workers, del, err)
		}
		if _, ok, _ := m.Find("vtcur0"); ok {
			t.Fatalf("workers %d: the device is still there", workers)
		}
	}
}
