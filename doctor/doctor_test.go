package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/policy"
	"github.com/virtap/virtap/vepa"
)

// Probe devices in test namespaces take fresh indexes: /dev/tapN is global.
func init() { vepa.ProbeIndex = nstest.FreshIndex }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLog(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: testWriter{t}})
}

// env is an Env on the netlink handle h (nil: the calling thread's
// namespace) with empty temporary /dev, sysfs, hooks and state directories.
func env(t *testing.T, h *netlink.Handle) Env {
	return Env{
		Log: testLog(t), Net: netdev.New(testLog(t), h),
		DevRoot: t.TempDir(), SysfsRoot: t.TempDir(), HooksDir: t.TempDir(), StateDir: t.TempDir(),
		ProbeTimeout: 500 * time.Millisecond,
	}
}

func pol(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func doctor(t *testing.T, e Env, p *policy.Policy) *Report {
	t.Helper()
	rep, err := Run(context.Background(), e, p, "testhost")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = rep.WriteTable(&b, false)
	t.Log("\n" + b.String())
	return rep
}

// one returns the single result of check for network, failing otherwise.
func one(t *testing.T, rep *Report, check, network string) Result {
	t.Helper()
	rs := rep.Find(check, network)
	if len(rs) != 1 {
		t.Fatalf("%d results for %s/%s, want 1: %+v", len(rs), check, network, rs)
	}
	return rs[0]
}

func want(t *testing.T, r Result, st Status, detail string) {
	t.Helper()
	if r.Status != st || !strings.Contains(r.Detail, detail) {
		t.Fatalf("%s %s: got %s %q, want %s with %q", r.Check, r.Network, r.Status, r.Detail, st, detail)
	}
	if st == Fail && r.Advice == "" {
		t.Fatalf("%s %s fails without advice", r.Check, r.Network)
	}
}

func macvtapPolicy(parent, extra string) string {
	return fmt.Sprintf("[networks.lan]\nkind = \"macvtap\"\nparent = %q\n%s\n", parent, extra)
}

// hostNS is a fresh namespace with a veth pair up0/up0p (both up: carrier).
func hostNS(t *testing.T) *nstest.NS {
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	waitOperUp(t, ns, "up0")
	return ns
}

// waitOperUp waits until the kernel reports operational state up for the
// links: linkwatch updates it asynchronously after carrier comes, and pool
// usage (passthrough.LinkUsage) reads it.
func waitOperUp(t *testing.T, ns *nstest.NS, names ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range names {
		for ns.Link(t, n).Attrs().OperState != netlink.OperUp {
			if time.Now().After(deadline) {
				t.Fatalf("%s: operstate %v, not up", n, ns.Link(t, n).Attrs().OperState)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestParentOK(t *testing.T) {
	ns := hostNS(t)
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "")))
	want(t, one(t, rep, CheckParent, "lan"), OK, "up0 exists")
	want(t, one(t, rep, CheckLinkUp, "lan"), OK, "up0 is up")
	want(t, one(t, rep, CheckCarrier, "lan"), OK, "has carrier")
	want(t, one(t, rep, CheckMTU, "lan"), OK, "inherit up0's MTU 1500")
}

func TestParentMissing(t *testing.T) {
	ns := hostNS(t)
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("nope0", "")))
	want(t, one(t, rep, CheckParent, "lan"), Fail, "nope0 does not exist")
	want(t, one(t, rep, CheckLinkUp, "lan"), Skip, "does not exist")
	if !rep.Failed {
		t.Fatal("report with a missing parent did not fail")
	}
}

func TestParentDown(t *testing.T) {
	ns := hostNS(t)
	if err := ns.NL.LinkSetDown(ns.Link(t, "up0")); err != nil {
		t.Fatal(err)
	}
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "")))
	want(t, one(t, rep, CheckParent, "lan"), OK, "exists")
	want(t, one(t, rep, CheckLinkUp, "lan"), Fail, "up0 is down")
	want(t, one(t, rep, CheckCarrier, "lan"), Skip, "down")
}

func TestNoCarrier(t *testing.T) {
	ns := hostNS(t)
	if err := ns.NL.LinkSetDown(ns.Link(t, "up0p")); err != nil {
		t.Fatal(err)
	}
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "")))
	want(t, one(t, rep, CheckLinkUp, "lan"), OK, "is up")
	want(t, one(t, rep, CheckCarrier, "lan"), Fail, "no carrier")
}

func TestMTU(t *testing.T) {
	ns := hostNS(t)
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "mtu = 9000")))
	want(t, one(t, rep, CheckMTU, "lan"), Fail, "mtu 9000 is more than up0's MTU 1500")
	rep = doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "mtu = 1400")))
	want(t, one(t, rep, CheckMTU, "lan"), OK, "mtu 1400 fits")
	if err := ns.NL.LinkSetMTU(ns.Link(t, "up0"), 9000); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "mtu = 9000")))
	want(t, one(t, rep, CheckMTU, "lan"), OK, "mtu 9000 fits up0's MTU 9000")
}

func TestParentIsBridgePort(t *testing.T) {
	ns := hostNS(t)
	ns.Bridge(t, "br0")
	ns.AddPort(t, "br0", "up0", false)
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "")))
	want(t, one(t, rep, CheckParent, "lan"), Fail, "up0 is a port of br0")
}

func TestBridgeKind(t *testing.T) {
	ns := hostNS(t)
	ns.Bridge(t, "br0")
	ns.AddPort(t, "br0", "up0p", false)
	rep := doctor(t, env(t, ns.NL), pol(t, "[networks.b]\nkind = \"bridge\"\nbridge = \"br0\"\n[networks.v]\nkind = \"bridge\"\nbridge = \"up0\"\n"))
	want(t, one(t, rep, CheckParent, "b"), OK, "bridge br0 exists")
	want(t, one(t, rep, CheckParent, "v"), Fail, "up0 is a veth, not a Linux bridge")
}

func TestHairpin(t *testing.T) {
	for _, hairpin := range []bool{true, false} {
		t.Run(fmt.Sprintf("hairpin=%v", hairpin), func(t *testing.T) {
			ns := nstest.New(t)
			s := nstest.NewSwitched(t, ns, hairpin)
			e := env(t, ns.NL)
			e.Probe = true
			rep := doctor(t, e, pol(t, macvtapPolicy(s.Uplink, `mode = "vepa"`)))
			r := one(t, rep, CheckHairpin, "lan")
			if hairpin {
				want(t, r, OK, "reflects")
			} else {
				want(t, r, Fail, "does not reflect")
			}
			// The probe leaves nothing behind.
			kids, err := e.Net.MacvlanChildren(s.Uplink)
			if err != nil || len(kids) != 0 {
				t.Fatalf("probe left %v (%v)", kids, err)
			}
		})
	}
}

func TestHairpinOptOutAndBridgeMode(t *testing.T) {
	ns := hostNS(t)
	e := env(t, ns.NL)
	var probed []string
	e.Prober = func(_ context.Context, parent string) (vepa.ProbeResult, error) {
		probed = append(probed, parent)
		return vepa.ProbeResult{Reflects: true, Detail: "stub reflects"}, nil
	}
	two := macvtapPolicy("up0", `mode = "vepa"`) + "[networks.lan2]\nkind = \"macvtap\"\nparent = \"up0\"\nmode = \"vepa\"\n"
	rep := doctor(t, e, pol(t, two))
	want(t, one(t, rep, CheckHairpin, "lan"), Skip, "--no-probe")
	if len(probed) != 0 {
		t.Fatalf("probed with Probe off: %v", probed)
	}
	e.Probe = true
	rep = doctor(t, e, pol(t, macvtapPolicy("up0", `mode = "bridge"`)))
	if rs := rep.Find(CheckHairpin, ""); len(rs) != 0 || len(probed) != 0 {
		t.Fatalf("bridge mode got a hairpin check: %+v, probed %v", rs, probed)
	}
	// Two VEPA networks on one parent: one probe, one result for both.
	rep = doctor(t, e, pol(t, two))
	r := one(t, rep, CheckHairpin, "lan2")
	want(t, r, OK, "stub reflects")
	if r.Network != "lan,lan2" || len(probed) != 1 || probed[0] != "up0" {
		t.Fatalf("result %+v, probed %v", r, probed)
	}
}

func domXML(name, mac, dev, mode, extra string) DomainXML {
	m := ""
	if mode != "" {
		m = fmt.Sprintf(" mode='%s'", mode)
	}
	return DomainXML{Source: name + ".xml", XML: []byte(fmt.Sprintf(`<domain type='qemu'><name>%s</name><devices>
<interface type='direct'><mac address='%s'/><source dev='%s'%s/>%s<model type='virtio'/></interface>
<interface type='network'><source network='default'/></interface>
</devices></domain>`, name, mac, dev, m, extra))}
}

func domains(ds ...DomainXML) func() ([]DomainXML, error) {
	return func() ([]DomainXML, error) { return ds, nil }
}

func TestDirectMode(t *testing.T) {
	e := env(t, nil)
	p := pol(t, "")
	e.Domains = domains(domXML("good", "52:54:00:00:00:01", "eth0", "bridge", ""), domXML("good2", "52:54:00:00:00:02", "eth0", "private", ""))
	rep := doctor(t, e, p)
	want(t, one(t, rep, CheckDirectMode, ""), OK, "2 direct interface(s) in 2 defined domain(s)")

	e.Domains = domains(domXML("good", "52:54:00:00:00:01", "eth0", "bridge", ""), domXML("web1", "52:54:00:00:00:02", "eth0", "", ""))
	rep = doctor(t, e, p)
	r := one(t, rep, CheckDirectMode, "")
	want(t, r, Warn, "domain web1 interface 52:54:00:00:00:02: <source dev='eth0'/> names no mode, so libvirt uses VEPA")
	if r.Advice == "" {
		t.Fatal("no advice")
	}

	e.Domains = func() ([]DomainXML, error) { return []DomainXML{{Source: "x.xml", XML: []byte("<domain")}}, nil }
	rep = doctor(t, e, p)
	if rs := rep.Find(CheckDirectMode, ""); len(rs) != 2 || rs[0].Status != Warn || !strings.Contains(rs[0].Detail, "cannot parse x.xml") {
		t.Fatalf("unparsable domain: %+v", rs)
	}
	e.Domains = nil
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckDirectMode, ""), Skip, "no source")
}

// A direct interface without mode on a parent whose switch does not
// reflect: the guest is cut off from its neighbours, which fails.
func TestDirectModeWithoutHairpinFails(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, false)
	e := env(t, ns.NL)
	e.Probe = true
	e.Domains = domains(domXML("web1", "52:54:00:00:00:02", s.Uplink, "", ""))
	rep := doctor(t, e, pol(t, macvtapPolicy(s.Uplink, `mode = "vepa"`)))
	want(t, one(t, rep, CheckDirectMode, ""), Fail, "does not reflect: this guest cannot reach other guests")
}

func TestDomainVirtualPort(t *testing.T) {
	e := env(t, nil)
	p := pol(t, "")
	good := `<virtualport type='802.1Qbg'><parameters managerid='11' typeid='1193047' typeidversion='2' instanceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport>`
	e.Domains = domains(domXML("g", "52:54:00:00:00:01", "eth0", "vepa", good))
	rep := doctor(t, e, p)
	want(t, one(t, rep, CheckVirtualPort, ""), OK, "802.1Qbg virtual port is valid")

	bad := strings.Replace(good, "managerid='11'", "managerid='300'", 1)
	e.Domains = domains(domXML("g", "52:54:00:00:00:01", "eth0", "vepa", bad))
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckVirtualPort, ""), Fail, "managerid: must be from 0 to 255, not 300")

	e.Domains = domains(domXML("g", "52:54:00:00:00:01", "eth0", "bridge", good))
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckVirtualPort, ""), Fail, `802.1Qbg needs mode = "vepa"`)
}

func macvlan(t *testing.T, ns *nstest.NS, name, parent string, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.ParentIndex, la.HardwareAddr = name, ns.Link(t, parent).Attrs().Index, hw
	if err := ns.NL.LinkAdd(&netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}); err != nil {
		t.Fatal(err)
	}
}

func TestMACBudget(t *testing.T) {
	ns := hostNS(t)
	p := pol(t, macvtapPolicy("up0", "max_macs = 3"))
	macvlan(t, ns, "mv1", "up0", "02:00:00:00:00:01")
	e := env(t, ns.NL)
	rep := doctor(t, e, p)
	want(t, one(t, rep, CheckMACBudget, "lan"), OK, "1 of 3 unicast MACs on up0 (1 on devices now, 0 more in virtap's records, 0 more for defined guests")

	// A stopped guest defined on up0 takes a slot; one on another parent does not.
	e.Domains = domains(domXML("a", "52:54:00:00:00:0a", "up0", "bridge", ""), domXML("b", "52:54:00:00:00:0b", "eth9", "bridge", ""))
	// A store record of a macvtap on up0 takes a slot, and a record of a
	// device that exists counts once.
	st, err := store.Open(e.StateDir, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range []string{"52:54:00:00:00:0c", "02:00:00:00:00:01"} {
		if err := st.PutIface("6f1c3c2e-9a43-4a5e-8d4c-4c8c2b1e0a01", "g", store.Iface{MAC: mac, Network: "lan", Kind: "macvtap", Parent: "up0", State: store.StateReady}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckMACBudget, "lan"), Warn, "3 of 3 unicast MACs on up0 (1 on devices now, 1 more in virtap's records, 1 more for defined guests")

	macvlan(t, ns, "mv2", "up0", "02:00:00:00:00:02")
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckMACBudget, "lan"), Fail, "4 of 3 unicast MACs on up0")
	if !strings.Contains(one(t, rep, CheckMACBudget, "lan").Advice, "ipvtap") {
		t.Fatal("advice does not name ipvtap")
	}
}

// The default max_macs is 16.
func TestMACBudgetDefault(t *testing.T) {
	ns := hostNS(t)
	for i := 1; i <= 17; i++ {
		macvlan(t, ns, fmt.Sprintf("mv%d", i), "up0", fmt.Sprintf("02:00:00:00:01:%02x", i))
	}
	rep := doctor(t, env(t, ns.NL), pol(t, macvtapPolicy("up0", "")))
	want(t, one(t, rep, CheckMACBudget, "lan"), Fail, "17 of 16 unicast MACs")
}

func TestPromisc(t *testing.T) {
	ns := hostNS(t)
	p := pol(t, macvtapPolicy("up0", ""))
	rep := doctor(t, env(t, ns.NL), p)
	want(t, one(t, rep, CheckPromisc, "lan"), OK, "not promiscuous")
	if err := ns.NL.SetPromiscOn(ns.Link(t, "up0")); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, env(t, ns.NL), p)
	want(t, one(t, rep, CheckPromisc, "lan"), Warn, "up0 is in promiscuous mode (promiscuity 1)")
}

// fakePF builds a sysfs tree as the kernel shows SR-IOV:
// SYSFS/class/net/PF/device/virtfnN -> ../../../devices/pci0000:00/PCI_N,
// whose net/ holds the VF's netdev; each VF is also a veth (with its peer)
// in ns. It returns the VFs' PCI addresses, the keys of reservations.
func fakePF(t *testing.T, ns *nstest.NS, sysfs, pf string, vfs ...string) []string {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	dev := filepath.Join(sysfs, "class", "net", pf, "device")
	must(os.MkdirAll(dev, 0o755))
	var pcis []string
	for i, vf := range vfs {
		pci := fmt.Sprintf("0000:01:00.%d", i+1)
		pcis = append(pcis, pci)
		must(os.MkdirAll(filepath.Join(sysfs, "devices", "pci0000:00", pci, "net", vf), 0o755))
		must(os.Symlink(filepath.Join("..", "..", "..", "..", "devices", "pci0000:00", pci), filepath.Join(dev, fmt.Sprintf("virtfn%d", i))))
		ns.Veth(t, vf, vf+"p", nil)
		waitOperUp(t, ns, vf)
	}
	return pcis
}

const poolPolicy = "[networks.pool]\nkind = \"passthrough\"\npf = \"pf0\"\n"

func reserve(t *testing.T, dir, pool string, devs ...string) {
	t.Helper()
	st, err := store.Open(dir, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, d := range devs {
		h := store.Holder{UUID: fmt.Sprintf("6f1c3c2e-9a43-4a5e-8d4c-4c8c2b1e0a%02d", i), MAC: fmt.Sprintf("52:54:00:00:00:%02x", i)}
		got, err := st.Reserve(pool, []string{d}, h)
		if err != nil || got != d {
			t.Fatalf("reserve %s: %s %v", d, got, err)
		}
	}
}

func TestVFHeadroom(t *testing.T) {
	ns := hostNS(t)
	ns.Veth(t, "pf0", "pf0p", nil)
	e := env(t, ns.NL)
	pcis := fakePF(t, ns, e.SysfsRoot, "pf0", "vf0", "vf1")
	p := pol(t, poolPolicy)
	rep := doctor(t, e, p)
	want(t, one(t, rep, CheckVFHeadroom, "pool"), OK, "2 of 2 devices free")
	want(t, one(t, rep, CheckParent, "pool"), OK, "pf0 exists")

	reserve(t, e.StateDir, "pool", pcis[0])
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckVFHeadroom, "pool"), OK, "1 of 2 devices free; reserved: vf0")

	// A macvtap that is not virtap's holds vf1.
	macvlan(t, ns, "foreign", "vf1", "02:00:00:00:00:09")
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Warn, "0 of 2 devices free; reserved: vf0; used outside virtap: vf1: the pool is full")

	// Nothing reserved and nothing free: no guest of this pool can start.
	macvlan(t, ns, "foreign0", "vf0", "02:00:00:00:00:08")
	e2 := env(t, ns.NL)
	e2.SysfsRoot = e.SysfsRoot
	rep = doctor(t, e2, p)
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Fail, "0 of 2 devices free; used outside virtap: vf0 vf1: no guest of this pool can start")
}

func TestVFHeadroomNearlyExhausted(t *testing.T) {
	ns := hostNS(t)
	ns.Veth(t, "pf0", "pf0p", nil)
	e := env(t, ns.NL)
	pcis := fakePF(t, ns, e.SysfsRoot, "pf0", "vf0", "vf1", "vf2", "vf3")
	reserve(t, e.StateDir, "pool", pcis[:3]...)
	rep := doctor(t, e, pol(t, poolPolicy))
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Warn, "1 of 4 devices free; reserved: vf0 vf1 vf2: the pool is nearly exhausted")
}

func TestVFHeadroomFull(t *testing.T) {
	ns := hostNS(t)
	ns.Veth(t, "pf0", "pf0p", nil)
	e := env(t, ns.NL)
	pcis := fakePF(t, ns, e.SysfsRoot, "pf0", "vf0", "vf1")
	reserve(t, e.StateDir, "pool", pcis...)
	rep := doctor(t, e, pol(t, poolPolicy))
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Warn, "0 of 2 devices free; reserved: vf0 vf1: the pool is full")
}

func TestVFHeadroomNoVFs(t *testing.T) {
	ns := hostNS(t)
	ns.Veth(t, "pf0", "pf0p", nil)
	e := env(t, ns.NL)
	fakePF(t, ns, e.SysfsRoot, "pf0")
	rep := doctor(t, e, pol(t, poolPolicy))
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Fail, `pf "pf0" has no virtual functions`)
	// A devices pool with one device missing still has headroom, with a warning.
	rep = doctor(t, e, pol(t, "[networks.pool]\nkind = \"passthrough\"\ndevices = [\"up0\", \"gone0\"]\n"))
	want(t, one(t, rep, CheckVFHeadroom, "pool"), Warn, "1 of 2 devices free; missing: gone0")
}

func TestVhostNet(t *testing.T) {
	e := env(t, nil)
	bridgeNet := func(vhost string) *policy.Policy {
		return pol(t, fmt.Sprintf("[networks.lan]\nkind = \"bridge\"\nbridge = \"br9\"\nvhost = %q\n", vhost))
	}
	rep := doctor(t, e, bridgeNet("on"))
	want(t, one(t, rep, CheckVhostNet, "lan"), Fail, "vhost = on but "+e.DevRoot+"/vhost-net does not exist")
	rep = doctor(t, e, bridgeNet("auto"))
	want(t, one(t, rep, CheckVhostNet, "lan"), OK, "userspace virtio-net")

	// A regular file is no device.
	path := filepath.Join(e.DevRoot, "vhost-net")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, bridgeNet("on"))
	want(t, one(t, rep, CheckVhostNet, "lan"), Fail, "is not a character device")
	os.Remove(path)

	nstest.RequireRoot(t)
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 238))); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, bridgeNet("on"))
	want(t, one(t, rep, CheckVhostNet, "lan"), OK, "vhost = on and")
	rep = doctor(t, e, bridgeNet("auto"))
	want(t, one(t, rep, CheckVhostNet, "lan"), OK, "guests use "+path)
}

func TestHooks(t *testing.T) {
	e := env(t, nil)
	p := pol(t, "")
	path := hooks.HookPath(e.HooksDir)
	rep := doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), Fail, "no hook at "+path)

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), Fail, "is not virtap's hook")

	if err := os.WriteFile(path, []byte("\x7fELF...."+hooks.BinaryMarker+"...."), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), Fail, "is not executable")

	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), OK, "virtap's hook is installed at "+path)

	// The Debian package's layout: a symlink to /usr/libexec/virtap/virtap-hook.
	target := filepath.Join(t.TempDir(), "virtap-hook")
	if err := os.Rename(path, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), OK, "virtap's hook is installed at "+path)
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	rep = doctor(t, e, p)
	want(t, one(t, rep, CheckHooks, ""), Fail, "symlink to nothing usable")
}

func TestLibvirtVersion(t *testing.T) {
	e := env(t, nil)
	p := pol(t, "")
	for _, c := range []struct {
		text   string
		err    error
		st     Status
		detail string
	}{
		{"libvirtd (libvirt) 9.0.0\n", nil, OK, "libvirt 9.0.0 runs qemu.d hooks"},
		{"6.5.0", nil, OK, "libvirt 6.5.0"},
		{"libvirtd (libvirt) 6.0.0", nil, Fail, "libvirt 6.0.0 runs only HOOKS/qemu"},
		{"6.4.9", nil, Fail, "needs 6.5.0 or later"},
		{"", errors.New("exec: \"libvirtd\": executable file not found in $PATH"), Warn, "not found"},
		{"garbage", nil, Warn, "no version number"},
	} {
		e.LibvirtVersion = func() (string, error) { return c.text, c.err }
		rep := doctor(t, e, p)
		want(t, one(t, rep, CheckLibvirt, ""), c.st, c.detail)
	}
	e.LibvirtVersion = nil
	want(t, one(t, doctor(t, e, p), CheckLibvirt, ""), Skip, "")
}

func TestParseLibvirtVersion(t *testing.T) {
	for in, v := range map[string][3]int{"libvirtd (libvirt) 9.0.0": {9, 0, 0}, "10.1": {10, 1, 0}, "virsh 6.10.2\n": {6, 10, 2}} {
		got, err := ParseLibvirtVersion(in)
		if err != nil || got != v {
			t.Errorf("%q: %v %v, want %v", in, got, err, v)
		}
	}
	if _, err := ParseLibvirtVersion("libvirt"); err == nil {
		t.Error("parsed a version out of nothing")
	}
}

func TestPolicyFailure(t *testing.T) {
	_, perr := policy.Parse("bad.toml", []byte("[networks.x]\nkind = \"nope\"\n"))
	if perr == nil {
		t.Fatal("bad policy parsed")
	}
	e := env(t, nil)
	rep := PolicyFailure(e, "bad.toml", "h", perr)
	want(t, one(t, rep, CheckPolicy, ""), Fail, "bad.toml:2")
	one(t, rep, CheckHooks, "") // host checks still run
	if !rep.Failed {
		t.Fatal("not failed")
	}
}

func TestRender(t *testing.T) {
	rep := &Report{Host: "h1"}
	rep.add(Result{Check: CheckParent, Network: "lan", Device: "eth0", Status: OK, Detail: "eth0 exists"})
	rep.add(Result{Check: CheckHairpin, Network: "lan,lan2", Device: "eth0", Status: Fail, Detail: "does not\nreflect", Advice: "turn on hairpin"})
	rep.add(Result{Check: CheckHooks, Status: Warn, Detail: "w"})
	var b bytes.Buffer
	if err := rep.WriteTable(&b, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "NETWORK") || !strings.Contains(lines[0], "CHECK") || !strings.Contains(lines[0], "STATUS") || !strings.Contains(lines[0], "DETAIL") {
		t.Fatalf("header %q", lines[0])
	}
	col := strings.Index(lines[0], "STATUS")
	if strings.Index(lines[1], "ok") != col || strings.Index(lines[2], "fail") != col {
		t.Fatalf("status column not aligned:\n%s", out)
	}
	if !strings.Contains(out, "does not reflect") || !strings.Contains(out, "-> turn on hairpin") || !strings.Contains(out, "FAILED: 1 ok, 1 warn, 1 fail, 0 skipped (host h1)") {
		t.Fatalf("table:\n%s", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatal("colour without a terminal")
	}
	b.Reset()
	_ = rep.WriteTable(&b, true)
	if !strings.Contains(b.String(), "\x1b[1;31mfail  \x1b[0m") {
		t.Fatalf("no colour:\n%q", b.String())
	}

	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Failed || back.Summary.Fail != 1 || len(back.Results) != 3 || back.Results[1].Network != "lan,lan2" || back.Results[1].Status != Fail {
		t.Fatalf("json: %s", b.String())
	}
}

// A bridge whose ports have no carrier still joins its guests: warn.
func TestBridgeWithoutCarrier(t *testing.T) {
	ns := hostNS(t)
	ns.Bridge(t, "br0")
	if err := ns.NL.LinkSetDown(ns.Link(t, "up0p")); err != nil {
		t.Fatal(err)
	}
	ns.AddPort(t, "br0", "up0", false)
	p := pol(t, "[networks.b]\nkind = \"bridge\"\nbridge = \"br0\"\n")
	rep := doctor(t, env(t, ns.NL), p)
	want(t, one(t, rep, CheckCarrier, "b"), Warn, "bridge br0 has no carrier")
	ns.Up(t, "up0p")
	waitOperUp(t, ns, "up0")
	rep = doctor(t, env(t, ns.NL), p)
	want(t, one(t, rep, CheckCarrier, "b"), OK, "br0 has carrier")
}

// ipvtap guests share the parent's MAC and macvtap passthrough owns the
// parent: neither spends the filter, however many devices there are.
func TestMACBudgetIpvtapAndPassthrough(t *testing.T) {
	ns := hostNS(t)
	macvlan(t, ns, "mv1", "up0", "02:00:00:00:00:01")
	macvlan(t, ns, "mv2", "up0", "02:00:00:00:00:02")
	e := env(t, ns.NL)
	var probed []string
	e.Probe = true
	e.Prober = func(_ context.Context, parent string) (vepa.ProbeResult, error) {
		probed = append(probed, parent)
		return vepa.ProbeResult{Detail: "stub: no reflection"}, nil
	}
	rep := doctor(t, e, pol(t, "[networks.ip]\nkind = \"ipvtap\"\nparent = \"up0\"\nflag = \"vepa\"\nmax_macs = 1\n"))
	want(t, one(t, rep, CheckMACBudget, "ip"), OK, "only ipvtap on up0")
	// ipvtap with flag vepa relies on the switch too.
	want(t, one(t, rep, CheckHairpin, "ip"), Fail, "stub: no reflection")
	rep = doctor(t, e, pol(t, macvtapPolicy("up0", "mode = \"passthrough\"\nmax_macs = 1")))
	want(t, one(t, rep, CheckMACBudget, "lan"), OK, "macvtap passthrough on up0")
	// Mixed macvtap and ipvtap on one parent cannot run (EBUSY): the policy
	// itself is refused, naming both networks.
	if _, err := policy.Parse("test.toml", []byte(macvtapPolicy("up0", "max_macs = 1")+"[networks.ip]\nkind = \"ipvtap\"\nparent = \"up0\"\nmax_macs = 64\n")); err == nil || !strings.Contains(err.Error(), `macvtap network "lan" and ipvtap network "ip" share parent up0`) {
		t.Fatalf("mixed parent: %v", err)
	}
	if len(probed) != 1 {
		t.Fatalf("probed %v, want once (only the vepa-flag ipvtap)", probed)
	}
}

// A probe that cannot run (here: it fails) warns instead of guessing.
func TestHairpinProbeError(t *testing.T) {
	ns := hostNS(t)
	e := env(t, ns.NL)
	e.Probe = true
	e.Prober = func(context.Context, string) (vepa.ProbeResult, error) {
		return vepa.ProbeResult{}, errors.New("create macvtap: operation not supported")
	}
	rep := doctor(t, e, pol(t, macvtapPolicy("up0", `mode = "vepa"`)))
	want(t, one(t, rep, CheckHairpin, "lan"), Warn, "cannot probe the switch behind up0: create macvtap")
	// An interrupted probe stops the run and says so.
	e.Prober = func(context.Context, string) (vepa.ProbeResult, error) {
		return vepa.ProbeResult{}, fmt.Errorf("%w: interrupt", vepa.ErrInterrupted)
	}
	rep, err := Run(context.Background(), e, pol(t, macvtapPolicy("up0", `mode = "vepa"`)), "h")
	if !errors.Is(err, vepa.ErrInterrupted) || rep == nil || len(rep.Find(CheckHooks, "")) != 0 {
		t.Fatalf("interrupted: %v, %+v", err, rep)
	}
}
