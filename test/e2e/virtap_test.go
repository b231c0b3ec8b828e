package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/doctor"
	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/test/harness"
)

// The scenarios of scenario_test.go again, with guests that join a policy
// network (<interface type='network'>) provisioned by `virtap provision`
// and started through virtap's installed hook. After destroy, nothing
// virtap made may be left (VirtapWiring.CheckGone).

func TestVirtapMacvtapBridge(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	scenarioBridge(t, env, harness.NewVirtapWiring(v))
}

func TestVirtapVEPAHairpin(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	scenarioVEPA(t, env, harness.NewVirtapWiring(v))
}

func TestVirtapPrivate(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	scenarioPrivate(t, env, harness.NewVirtapWiring(v))
}

// vguest makes a guest of the topology on iface (an <interface> joining a
// policy network), provisioned by w, at ip (without length), pinging peers
// every interval seconds (0: 1).
func vguest(t *testing.T, env *harness.Env, w *harness.VirtapWiring, topo *harness.Topology, suffix, iface, ip string, interval int, peers ...string) *harness.Guest {
	t.Helper()
	if interval == 0 {
		interval = 1
	}
	cfg := harness.GuestConfig{IP: ip + "/24", Peers: peers, Tries: 15, Interval: interval}
	g := env.NewGuest(t, "e2e-"+topo.Prefix+"-"+suffix, cfg, iface)
	w.Prepare(t, topo, g)
	return g
}

// waitPing waits for the guest's first-round result towards peer to be OK.
func waitPing(g *harness.Guest, peer string) {
	g.Wait(`^VIRTAP-PING `+regexp.QuoteMeta(peer)+` OK$`, bootTimeout)
}

// waitLoopOK waits for a ping-loop success towards peer after the current
// end of the guest's serial log.
func waitLoopOK(g *harness.Guest, peer string) {
	g.WaitAfter(g.Mark(), `^VIRTAP-LOOP \d+ `+regexp.QuoteMeta(peer)+` OK$`, loopTimeout)
}

// destroyAll destroys guests (and undefines them), failing the test on error.
func destroyAll(t *testing.T, guests ...*harness.Guest) {
	t.Helper()
	for _, g := range guests {
		if err := g.Destroy(); err != nil {
			t.Fatalf("destroy %s: %v", g.Name, err)
		}
		t.Logf("%s destroyed and undefined at %s", g.Name, time.Now().UTC().Format(time.RFC3339Nano))
	}
}

// liveIface returns the guest's only live interface.
func liveIface(t *testing.T, g *harness.Guest) harness.LiveInterface {
	t.Helper()
	ifs, err := g.Interfaces()
	if err != nil {
		t.Fatalf("%s: %v", g.Name, err)
	}
	if len(ifs) != 1 {
		t.Fatalf("%s: want one interface, got %+v", g.Name, ifs)
	}
	return ifs[0]
}

// hostBridge makes a Linux bridge in the init netns with the given port,
// removed when the test ends.
func hostBridge(t *testing.T, name, port string) *netlink.Bridge {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil && l.Type() == "bridge" {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", name, err)
			}
		}
	})
	p, err := netlink.LinkByName(port)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(p, br); err != nil {
		t.Fatalf("enslave %s to %s: %v", port, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	return br
}

// bridgePorts lists the ports of the init-netns bridge except skip.
func bridgePorts(t *testing.T, br, skip string) []string {
	t.Helper()
	b, err := netlink.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == b.Attrs().Index && l.Attrs().Name != skip {
			out = append(out, l.Attrs().Name)
		}
	}
	return sortedCopy(out)
}

// TestVirtapLinuxBridge is setup 1 (kind = "bridge"): a Linux bridge on the
// host with the uplink as a port; guests get taps on it (libvirt's
// type='bridge') and reach each other through the host bridge and the
// external host through the uplink.
func TestVirtapLinuxBridge(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 1, false)
	brName := topo.Prefix + "br"
	hostBridge(t, brName, topo.Uplinks[0])
	w := harness.NewVirtapWiring(v)
	nw := topo.Prefix + "-office"
	w.AddNetwork(topo, nw, fmt.Sprintf("kind = \"bridge\"\nbridge = %q\n", brName))
	ipA, ipB := harness.GuestIP(0), harness.GuestIP(1)
	a := vguest(t, env, w, topo, "a", harness.NetworkInterface(nw, ""), ipA, 1, harness.ExtIP, ipB)
	b := vguest(t, env, w, topo, "b", harness.NetworkInterface(nw, ""), ipB, 1, harness.ExtIP, ipA)
	a.Start()
	b.Start()
	waitPing(a, harness.ExtIP)
	waitPing(b, harness.ExtIP)
	waitLoopOK(a, ipB)
	waitLoopOK(b, ipA)
	w.CheckRunning(t, topo)
	var taps []string
	for _, g := range []*harness.Guest{a, b} {
		li := liveIface(t, g)
		if li.Type != "bridge" || li.Source != brName || li.Target == "" {
			t.Fatalf("%s: want a tap on bridge %s, got %+v", g.Name, brName, li)
		}
		taps = append(taps, li.Target)
	}
	if got := bridgePorts(t, brName, topo.Uplinks[0]); fmt.Sprint(got) != fmt.Sprint(sortedCopy(taps)) {
		t.Fatalf("ports of %s besides the uplink: %v, the domains' taps: %v", brName, got, taps)
	}
	for _, ip := range []string{ipA, ipB} {
		if err := topo.ExtPing(ip, 3); err != nil {
			t.Fatalf("external host to %s: %v", ip, err)
		}
	}
	destroyAll(t, a, b)
	if got := bridgePorts(t, brName, topo.Uplinks[0]); len(got) != 0 {
		t.Fatalf("taps left on %s after destroy: %v", brName, got)
	}
	w.CheckGone(t, topo)
}

// TestVirtapPassthroughPool: a pool (kind = "passthrough") of two devices,
// veth stand-ins for VFs whose far ends are switch ports. Two guests run
// and reach each other and the external host through the switch; a third
// fails to start with an error naming the pool; once one guest is
// destroyed the third starts on the freed device; after destroy the pool
// devices are free and virtap left nothing.
func TestVirtapPassthroughPool(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 2, false)
	w := harness.NewVirtapWiring(v)
	pool := topo.Prefix + "-pool"
	w.AddNetwork(topo, pool, fmt.Sprintf("kind = \"passthrough\"\ndevices = [%q, %q]\nmode = \"passthrough\"\n", topo.Uplinks[0], topo.Uplinks[1]))
	var macs []string
	for _, u := range topo.Uplinks {
		l, err := netlink.LinkByName(u)
		if err != nil {
			t.Fatal(err)
		}
		macs = append(macs, l.Attrs().HardwareAddr.String())
	}
	ip := []string{harness.GuestIP(0), harness.GuestIP(1), harness.GuestIP(2)}
	nic := harness.NetworkInterface(pool, "")
	g0 := vguest(t, env, w, topo, "g0", nic, ip[0], 2, harness.ExtIP, ip[1])
	g1 := vguest(t, env, w, topo, "g1", nic, ip[1], 2, harness.ExtIP, ip[0])
	g2 := vguest(t, env, w, topo, "g2", nic, ip[2], 2, harness.ExtIP)
	g0.Start()
	g1.Start()
	err := g2.TryStart()
	if err == nil {
		t.Fatalf("third guest on a pool of two started")
	}
	if !strings.Contains(err.Error(), pool) || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("third guest: the error should name the exhausted pool %q: %v", pool, err)
	}
	t.Logf("third guest refused: %v", err)
	if st, err := harness.DomainState(g2.Name); err != nil || st != "shut off" {
		t.Fatalf("%s after the refused start: %q %v", g2.Name, st, err)
	}
	for _, g := range []*harness.Guest{g0, g1} {
		li := liveIface(t, g)
		if li.Type != "ethernet" || li.Target == "" {
			t.Fatalf("%s: want an ethernet interface on virtap's device, got %+v", g.Name, li)
		}
	}
	waitPing(g0, harness.ExtIP)
	waitPing(g1, harness.ExtIP)
	waitLoopOK(g0, ip[1])
	waitLoopOK(g1, ip[0])
	st, err := v.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Running(g0, g1); err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, r := range st.Reservations {
		if r.Pool == pool {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("want 2 reservations in pool %s, got %+v", pool, st.Reservations)
	}

	destroyAll(t, g0)
	g2.Start()
	waitPing(g2, harness.ExtIP)
	if err := topo.ExtPing(ip[2], 3); err != nil {
		t.Fatalf("external host to %s: %v", ip[2], err)
	}
	if st, err = v.Status(); err != nil {
		t.Fatal(err)
	}
	if err := st.Running(g1, g2); err != nil {
		t.Fatal(err)
	}

	destroyAll(t, g1, g2)
	w.CheckGone(t, topo)
	for i, u := range topo.Uplinks {
		taps, err := topo.MacvtapsOn(i)
		if err != nil {
			t.Fatal(err)
		}
		if len(taps) != 0 {
			t.Fatalf("pool device %s still has %v on it", u, taps)
		}
		l, err := netlink.LinkByName(u)
		if err != nil {
			t.Fatalf("pool device %s is gone: %v", u, err)
		}
		if got := l.Attrs().HardwareAddr.String(); got != macs[i] {
			t.Logf("note: pool device %s has MAC %s after release, %s before (passthru macvtap sets the lower's MAC)", u, got, macs[i])
		}
	}
}

// hostSubnet returns the first of the documentation /24s that the init
// netns neither holds an address in nor routes (besides a default route):
// this host's own network may well use 192.0.2.0/24 (the topology's subnet
// lives only inside namespaces, but a host shim lives in the init netns).
func hostSubnet(t *testing.T) string {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"198.51.100", "203.0.113", "192.0.2"} {
		ip := net.ParseIP(base + ".10")
		used := false
		for _, r := range routes {
			if r.Dst != nil && r.Dst.Contains(ip) && r.Dst.IP.To4() != nil {
				if ones, _ := r.Dst.Mask.Size(); ones > 0 {
					used = true
				}
			}
		}
		if !used {
			return base
		}
	}
	t.Fatalf("every documentation /24 is routed on this host: %v", routes)
	return ""
}

// TestVirtapHostAccess: with host_access, the host (init netns) reaches its
// macvtap guests through virtap's macvlan shim, which libvirt alone cannot
// do (the kernel hands no frames between a macvtap and its parent); the
// shim lives while a guest of the network runs.
func TestVirtapHostAccess(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 1, false)
	base := hostSubnet(t)
	extIP, hostIP, ipA, ipB := base+".1", base+".2", base+".10", base+".11"
	if _, err := topo.ExtExec(10*time.Second, "ip", "addr", "add", extIP+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	w := harness.NewVirtapWiring(v)
	nw := topo.Prefix + "-lan"
	w.AddNetwork(topo, nw, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\nhost_access = %q\n", topo.Uplinks[0], hostIP+"/24"))
	shim := host.ShimName(nw, topo.Uplinks[0])
	if _, err := netlink.LinkByName(shim); err == nil {
		t.Fatalf("shim %s exists before any guest", shim)
	}
	a := vguest(t, env, w, topo, "a", harness.NetworkInterface(nw, ""), ipA, 2, extIP, hostIP)
	b := vguest(t, env, w, topo, "b", harness.NetworkInterface(nw, ""), ipB, 2, extIP, hostIP)
	a.Start()
	b.Start()
	l, err := netlink.LinkByName(shim)
	if err != nil {
		t.Fatalf("no shim %s while guests run: %v", shim, err)
	}
	if l.Type() != "macvlan" || l.Attrs().Alias != "virtap:shim:"+nw {
		t.Fatalf("shim %s: type %s alias %q", shim, l.Type(), l.Attrs().Alias)
	}
	for _, g := range []*harness.Guest{a, b} {
		waitPing(g, extIP)
		waitPing(g, hostIP) // the guest reaches the host
	}
	hostPing := func(ip string) error {
		out, err := exec.Command("ping", "-n", "-c", "3", "-W", "1", "-i", "0.2", ip).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for _, ip := range []string{ipA, ipB} {
		if err := hostPing(ip); err != nil {
			t.Fatalf("the host cannot reach guest %s through the shim: %v", ip, err)
		}
	}
	w.CheckRunning(t, topo)

	destroyAll(t, a)
	if _, err := netlink.LinkByName(shim); err != nil {
		t.Fatalf("shim %s removed while guest %s still runs: %v", shim, b.Name, err)
	}
	if err := hostPing(ipB); err != nil {
		t.Fatalf("the host cannot reach guest %s after the other stopped: %v", ipB, err)
	}
	destroyAll(t, b)
	if _, err := netlink.LinkByName(shim); err == nil {
		t.Fatalf("shim %s left after the last guest stopped", shim)
	}
	w.CheckGone(t, topo)
}

// TestVirtapDoctorHairpin runs `virtap doctor` against the topology: its
// VEPA reflective-relay probe says the switch reflects with hairpin on and
// does not with hairpin off (and doctor then exits 1). No guests.
func TestVirtapDoctorHairpin(t *testing.T) {
	v := needVirtap(t)
	harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 1, true)
	w := harness.NewVirtapWiring(v)
	nw := harness.MacvtapNetwork(topo, 0, "vepa")
	w.Interface(t, topo, 0, "vepa", "")
	pol := w.PolicyFile(t, topo)
	for _, hairpin := range []bool{true, false} {
		if err := topo.SetHairpin(hairpin); err != nil {
			t.Fatal(err)
		}
		release := harness.HoldLibvirt() // doctor reads libvirt's domains
		out, stderr, err := v.Run(nil, "--policy", pol, "doctor", "--json", "--hooks-dir", harness.HooksDir)
		release()
		var rep doctor.Report
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
			t.Fatalf("doctor --json: %v (exit: %v)\n%s\n%s", jerr, err, out, stderr)
		}
		hp := rep.Find(doctor.CheckHairpin, nw)
		if len(hp) != 1 {
			t.Fatalf("hairpin %v: want one hairpin result for %s, got %+v", hairpin, nw, rep.Results)
		}
		if hooksOK := rep.Find(doctor.CheckHooks, ""); len(hooksOK) == 0 || hooksOK[0].Status != doctor.OK {
			t.Errorf("doctor does not see the installed hook: %+v", hooksOK)
		}
		if hairpin {
			if hp[0].Status != doctor.OK || !strings.Contains(hp[0].Detail, "reflects") {
				t.Fatalf("hairpin on: %+v", hp[0])
			}
		} else {
			if hp[0].Status != doctor.Fail || !strings.Contains(hp[0].Detail, "does not reflect") || err == nil || !rep.Failed {
				t.Fatalf("hairpin off: exit error %v, %+v", err, hp[0])
			}
		}
		t.Logf("hairpin %v: %s: %s", hairpin, hp[0].Status, hp[0].Detail)
		if taps, err := topo.MacvtapsOn(0); err != nil || len(taps) != 0 {
			t.Fatalf("probe devices left on %s: %v %v", topo.Uplinks[0], taps, err)
		}
	}
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }
