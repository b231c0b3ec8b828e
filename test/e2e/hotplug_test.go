package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/test/harness"
)

// hotplugScript runs in the guest (in the background, after its first
// ping round): it reports a NIC eth1 when it appears (its MAC), sends a
// few frames on it, and reports when it is gone.
const hotplugScript = `(
while [ ! -e /sys/class/net/eth1 ]; do usleep 200000; done
echo "VIRTAP-HOTPLUG eth1 $(cat /sys/class/net/eth1/address)"
ip link set eth1 up
i=0
while [ -e /sys/class/net/eth1 ] && [ $i -lt 600 ]; do
	[ $((i % 5)) = 0 ] && arping -c 1 -w 1 -I eth1 192.0.2.1 >/dev/null 2>&1
	usleep 200000
	i=$((i + 1))
done
while [ -e /sys/class/net/eth1 ]; do usleep 200000; done
echo "VIRTAP-UNPLUG eth1"
) &
`

// vrun runs virtap against libvirt (held up while libvirtd must not restart).
func vrun(v *harness.Virtap, args ...string) (string, error) {
	defer harness.HoldLibvirt()()
	out, _, err := v.Run(nil, args...)
	return out, err
}

// domXMLs returns a domain's live and persistent XML.
func domXMLs(t *testing.T, name string) (live, config *domain.Doc) {
	t.Helper()
	for _, x := range []struct {
		args []string
		to   **domain.Doc
	}{{[]string{"dumpxml", name}, &live}, {[]string{"dumpxml", "--inactive", name}, &config}} {
		out, err := harness.Virsh(x.args...)
		if err != nil {
			t.Fatal(err)
		}
		if *x.to, err = domain.Parse([]byte(out)); err != nil {
			t.Fatal(err)
		}
	}
	return live, config
}

// hasIface says whether a document has an interface with mac, and its
// record an entry for it on network (network "": any entry).
func hasIface(d *domain.Doc, mac, network string) (iface, entry bool) {
	for _, i := range d.Interfaces {
		iface = iface || strings.EqualFold(i.MAC, mac)
	}
	ir, ok := d.Record.ByMAC(mac)
	return iface, ok && (network == "" || ir.Network == network)
}

// statusDrift is what this test reads of `virtap status --json`.
type statusDrift struct {
	Drift []struct {
		Guest      string `json:"guest"`
		Definition []struct {
			Network string `json:"network"`
			Fields  []struct{ Field, Was, Now string }
		} `json:"definition"`
		Live []struct {
			Network string `json:"network"`
		} `json:"live"`
		Fix string `json:"fix"`
	} `json:"drift"`
}

func driftOf(t *testing.T, v *harness.Virtap, pol string) statusDrift {
	t.Helper()
	out, err := vrun(v, "--policy", pol, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s statusDrift
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return s
}

// TestVirtapHotplugAndDrift is issue 17 end to end, on one running guest
// (TCG, ACPI) on a trusted macvtap network:
//   - `virtap attach` gives it a NIC on an untrusted network: the guest
//     sees it (its serial log names eth1 with the MAC), the anti-spoofing
//     filter is on libvirt's new macvtap and counts the guest's frames,
//     `virtap status` lists it with a state record, the persistent XML has
//     the interface and its record entry;
//   - attaching to a network the policy lacks fails with a message naming
//     it and changes nothing;
//   - `virtap detach` removes all of it: the guest loses eth1, no device,
//     no filter chain, no record, not in the live or persistent XML;
//   - the policy's mode bridge -> vepa shows as drift in status, `define
//     --all --dry-run` prints the diff and changes nothing, `define --all`
//     applies it (and names the guest as needing a restart).
//
// Not parallel: `define --all` looks at every defined domain, so no other
// test's guest may be defined meanwhile (parallel tests wait for this one).
func TestVirtapHotplugAndDrift(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	topo := harness.NewTopology(t, 1, false)
	w := harness.NewVirtapWiring(v)
	lan := harness.MacvtapNetwork(topo, 0, "bridge")
	dmz := topo.Prefix + "-dmz"
	w.AddNetwork(topo, dmz, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\ntrust = \"untrusted\"\n", topo.Uplinks[0]))
	cfg := harness.GuestConfig{IP: harness.GuestIP(0) + "/24", Peers: []string{harness.ExtIP}, Tries: 15, Interval: 2, NoLoop: true, Post: hotplugScript}
	g := env.NewGuest(t, "e2e-"+topo.Prefix+"-hp", cfg, w.Interface(t, topo, 0, "bridge", ""))
	w.Prepare(t, topo, g)
	g.Start()
	waitPing(g, harness.ExtIP)
	pol := w.PolicyFile(t, topo)
	u := uuid.MustParse(g.UUID)

	// Attach on the untrusted network.
	mark := g.Mark()
	start := time.Now()
	out, err := vrun(v, "--policy", pol, "attach", "--json", g.Name, dmz)
	if err != nil {
		g.Dump()
		t.Fatal(err)
	}
	var doc struct {
		Result struct {
			Interface domain.IfaceRecord `json:"interface"`
			Device    string             `json:"device"`
			Filter    bool               `json:"filter"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("attach --json: %v\n%s", err, out)
	}
	att := doc.Result
	mac := att.Interface.MAC
	t.Logf("attached %s on %s in %s: %s", mac, dmz, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	g.WaitAfter(mark, `^VIRTAP-HOTPLUG eth1 `+regexp.QuoteMeta(strings.ToLower(mac))+`$`, loopTimeout)
	t.Logf("the guest saw eth1 %s after %s", mac, time.Since(start).Round(time.Millisecond))
	var target string
	lifs, err := g.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, li := range lifs {
		if strings.EqualFold(li.MAC, mac) {
			target = li.Target
			if li.Type != "direct" || li.Source != topo.Uplinks[0] || li.Mode != "bridge" {
				t.Fatalf("attached interface: %+v", li)
			}
		}
	}
	if target == "" || target != att.Device || !att.Filter {
		t.Fatalf("live target %q, attach said %+v", target, att)
	}
	hw, _ := net.ParseMAC(mac)
	cs, err := nft.New(nil).Counters(u)
	if err != nil || filterDevice(cs, hw) != target {
		t.Fatalf("filter of %s: on %q, want %s (%v)", mac, filterDevice(cs, hw), target, err)
	}
	live, config := domXMLs(t, g.Name)
	for what, d := range map[string]*domain.Doc{"live": live, "persistent": config} {
		if i, e := hasIface(d, mac, dmz); !i || !e {
			t.Fatalf("%s XML: interface %v, record entry %v", what, i, e)
		}
	}
	var seen uint64
	deadline := time.Now().Add(loopTimeout)
	for seen == 0 && time.Now().Before(deadline) {
		st, err := v.Status()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Running(g); err != nil { // every interface of the record has a state record
			t.Fatal(err)
		}
		listed := false
		for _, sg := range st.Guests {
			for _, i := range sg.Interfaces {
				listed = listed || sg.Name == g.Name && strings.EqualFold(i.MAC, mac) && i.Network == dmz && i.Trust == "untrusted"
			}
		}
		if !listed {
			t.Fatalf("status does not list %s on %s for %s: %+v", mac, dmz, g.Name, st.Guests)
		}
		for _, f := range st.Filters {
			if f.Device == target {
				seen = f.Seen
			}
		}
		time.Sleep(time.Second)
	}
	if seen == 0 {
		t.Fatalf("the filter on %s saw no frame of the guest's eth1", target)
	}
	t.Logf("status: %s filtered on %s, %d frame(s) seen", mac, target, seen)

	// A refused attach changes nothing: not the guest's interfaces, not its
	// XML (record and interfaces), not the tagged devices, not the filters.
	refused := func(t *testing.T, want string, args ...string) {
		t.Helper()
		before, _ := g.Interfaces()
		links, _ := harness.TaggedLinks()
		filters, _ := nft.New(nil).Installed(u)
		_, err := vrun(v, append([]string{"--policy", pol, "attach"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("attach %v: want an error with %q, got %v", args, want, err)
		}
		t.Logf("refused: %v", err)
		after, _ := g.Interfaces()
		links2, _ := harness.TaggedLinks()
		filters2, _ := nft.New(nil).Installed(u)
		if fmt.Sprint(before) != fmt.Sprint(after) || len(links) != len(links2) || fmt.Sprint(filters) != fmt.Sprint(filters2) {
			t.Fatalf("a refused attach changed something: interfaces %v -> %v, tagged links %d -> %d, filters %v -> %v",
				before, after, len(links), len(links2), filters, filters2)
		}
		l2, c2 := domXMLs(t, g.Name)
		if l2.Record.Element() != live.Record.Element() || c2.Record.Element() != config.Record.Element() || len(c2.Interfaces) != len(config.Interfaces) {
			t.Fatal("a refused attach changed the domain's XML")
		}
	}
	t.Run("unknown-network", func(t *testing.T) {
		refused(t, fmt.Sprintf("network %q is not in", topo.Prefix+"-nosuch"), g.Name, topo.Prefix+"-nosuch")
	})
	// libvirt refuses the device after virtap recorded it and did the host
	// side: everything is rolled back.
	t.Run("libvirt-refuses", func(t *testing.T) {
		refused(t, "rolled back", "--model", "nosuchnic", g.Name, dmz)
	})

	// Detach: nothing of it is left.
	mark = g.Mark()
	if out, err = vrun(v, "--policy", pol, "detach", g.Name, mac); err != nil {
		g.Dump()
		t.Fatal(err)
	}
	t.Logf("detach: %s", strings.TrimSpace(out))
	g.WaitAfter(mark, `^VIRTAP-UNPLUG eth1$`, loopTimeout)
	live, config = domXMLs(t, g.Name)
	for what, d := range map[string]*domain.Doc{"live": live, "persistent": config} {
		if i, e := hasIface(d, mac, ""); i || e {
			t.Fatalf("after detach, %s XML: interface %v, record entry %v", what, i, e)
		}
	}
	if _, err := netlink.LinkByName(target); err == nil {
		t.Fatalf("macvtap %s still there after detach", target)
	}
	if cs, err := nft.New(nil).Counters(u); err != nil || filterDevice(cs, hw) != "" {
		t.Fatalf("filter chain of %s left: %+v %v", mac, cs, err)
	}
	st, err := v.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Running(g); err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Mentions(g.UUID) {
		if strings.Contains(strings.ToLower(m), strings.ToLower(mac)) {
			t.Fatalf("status still mentions %s: %s", mac, m)
		}
	}

	t.Run("drift", func(t *testing.T) { driftScenario(t, v, w, topo, g, lan) })

	destroyAll(t, g)
	w.CheckGone(t, topo)
}

// driftScenario: the guest's network changes mode in the policy (bridge ->
// vepa): drift in status, a dry run that prints the diff and changes
// nothing, then define --all.
func driftScenario(t *testing.T, v *harness.Virtap, w *harness.VirtapWiring, topo *harness.Topology, g *harness.Guest, lan string) {
	pol := w.PolicyFile(t, topo)
	if s := driftOf(t, v, pol); len(s.Drift) != 0 {
		t.Fatalf("drift before the policy changed: %+v", s.Drift)
	}
	w.AddNetwork(topo, lan, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"vepa\"\n", topo.Uplinks[0]))
	pol = w.PolicyFile(t, topo)
	s := driftOf(t, v, pol)
	if len(s.Drift) != 1 || s.Drift[0].Guest != g.Name || len(s.Drift[0].Definition) != 1 ||
		fmt.Sprint(s.Drift[0].Definition[0].Fields) != "[{mode bridge vepa}]" || !strings.Contains(s.Drift[0].Fix, "virtap define --domain "+g.Name) {
		t.Fatalf("drift after bridge -> vepa: %+v", s.Drift)
	}
	text, err := vrun(v, "--policy", pol, "status")
	if err != nil || !strings.Contains(text, "DRIFT: guest "+g.Name) {
		t.Fatalf("status text lacks the drift: %v\n%s", err, text)
	}
	_, before := domXMLs(t, g.Name)
	out, err := vrun(v, "--policy", pol, "define", "--all", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("define --all --dry-run:\n%s", out)
	for _, want := range []string{"-      <source dev='" + topo.Uplinks[0] + "' mode='bridge'/>", `mode="vepa"`, "would redefine 1 domain(s)", g.Name + " would need a restart"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run lacks %q", want)
		}
	}
	if _, after := domXMLs(t, g.Name); string(after.Raw) != string(before.Raw) {
		t.Fatal("define --all --dry-run changed the persistent XML")
	}
	out, err = vrun(v, "--policy", pol, "define", "--all")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("define --all:\n%s", out)
	if !strings.Contains(out, "redefined 1 domain(s)") || !strings.Contains(out, g.Name+" runs with its old interfaces until it is restarted") {
		t.Fatalf("define --all said:\n%s", out)
	}
	live, config := domXMLs(t, g.Name)
	if ir := config.Record.Interfaces; len(ir) != 1 || ir[0].Mode != "vepa" || !strings.Contains(string(config.Raw), `mode="vepa"`) {
		t.Fatalf("persistent XML after define --all:\n%s", config.Raw)
	}
	if ir := live.Record.Interfaces; len(ir) != 1 || ir[0].Mode != "bridge" {
		t.Fatalf("the running guest's record changed: %+v", ir)
	}
	s = driftOf(t, v, pol)
	if len(s.Drift) != 1 || len(s.Drift[0].Definition) != 0 || len(s.Drift[0].Live) != 1 || !strings.Contains(s.Drift[0].Fix, "restart") {
		t.Fatalf("after define --all, want only the running guest to drift: %+v", s.Drift)
	}
	if out, err := vrun(v, "--policy", pol, "define", "--all", "--dry-run"); err != nil || !strings.Contains(out, "would redefine 0 domain(s); 1 already match") {
		t.Fatalf("second dry run: %v\n%s", err, out)
	}
}
