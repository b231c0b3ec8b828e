package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// VirtapWiring puts guests on policy networks that virtap provisions: the
// guest XML says <interface type='network'><source network='N'/>, Prepare
// writes the topology's networks into a policy and runs `virtap provision`.
// Network names start with the topology's Prefix, so that parallel tests
// sharing one state directory (one installed hook) never share a network,
// a pool or a host shim.
type VirtapWiring struct {
	V *Virtap

	mu     sync.Mutex
	nets   map[string]map[string]string // topology prefix -> network -> TOML body
	extra  map[string]string            // topology prefix -> TOML appended (host sections)
	guests map[string][]*Guest          // topology prefix -> provisioned guests
}

// NewVirtapWiring returns a wiring that provisions with v.
func NewVirtapWiring(v *Virtap) *VirtapWiring {
	return &VirtapWiring{V: v, nets: map[string]map[string]string{}, extra: map[string]string{}, guests: map[string][]*Guest{}}
}

var (
	_ Wiring      = (*VirtapWiring)(nil)
	_ GoneChecker = (*VirtapWiring)(nil)
)

// Name is "virtap".
func (w *VirtapWiring) Name() string { return "virtap" }

// MacvtapNetwork is the name of the macvtap network on uplink in mode.
func MacvtapNetwork(topo *Topology, uplink int, mode string) string {
	return fmt.Sprintf("%s-%s%d", topo.Prefix, mode, uplink)
}

// Interface joins the macvtap network of uplink in mode (defining it).
func (w *VirtapWiring) Interface(_ testing.TB, topo *Topology, uplink int, mode, mac string) string {
	name := MacvtapNetwork(topo, uplink, mode)
	w.AddNetwork(topo, name, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = %q\n", topo.Uplinks[uplink], mode))
	return NetworkInterface(name, mac)
}

// AddNetwork defines network name (its TOML keys, without the table
// header) in the topology's policy. Replacing a definition is fine.
func (w *VirtapWiring) AddNetwork(topo *Topology, name, body string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nets[topo.Prefix] == nil {
		w.nets[topo.Prefix] = map[string]string{}
	}
	w.nets[topo.Prefix][name] = body
}

// AddPolicy appends raw TOML (e.g. a [hosts.X.networks.N] section) to the
// topology's policy.
func (w *VirtapWiring) AddPolicy(topo *Topology, toml string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.extra[topo.Prefix] += "\n" + toml + "\n"
}

// publish hands the topology's policy to the installed hook's policy.
func (w *VirtapWiring) publish(t testing.TB, topo *Topology) {
	t.Helper()
	if err := w.V.PublishPolicy(topo.Prefix, w.PolicyText(topo)); err != nil {
		t.Fatalf("publish the policy of %s to the hook: %v", topo.Prefix, err)
	}
}

// PolicyText is the topology's policy as TOML.
func (w *VirtapWiring) PolicyText(topo *Topology) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for n := range w.nets[topo.Prefix] {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "# virtap e2e policy of topology %s\n", topo.Prefix)
	for _, n := range names {
		fmt.Fprintf(&b, "\n[networks.%s]\n%s", n, w.nets[topo.Prefix][n])
	}
	b.WriteString(w.extra[topo.Prefix])
	return b.String()
}

// PolicyFile writes the topology's policy into a test temp dir.
func (w *VirtapWiring) PolicyFile(t testing.TB, topo *Topology) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(p, []byte(w.PolicyText(topo)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Prepare provisions g.XML with the topology's policy.
func (w *VirtapWiring) Prepare(t testing.TB, topo *Topology, g *Guest) {
	t.Helper()
	pol := w.PolicyFile(t, topo)
	w.publish(t, topo)
	out, err := w.V.Provision(pol, "", g.XML)
	if err != nil {
		t.Fatalf("provision %s: %v\npolicy:\n%s", g.Name, err, w.PolicyText(topo))
	}
	if !strings.Contains(out, "<interface") || out == g.XML {
		t.Fatalf("provision %s changed nothing:\n%s", g.Name, out)
	}
	g.XML = out
	g.FilterSeen = w.V.FilterSeen
	w.mu.Lock()
	w.guests[topo.Prefix] = append(w.guests[topo.Prefix], g)
	w.mu.Unlock()
}

// CheckGone fails the test when anything virtap made for the topology's
// guests is left: a device tagged for one of them or for one of the
// topology's networks (host shims), or anything `virtap status` reports
// about them (libvirt guest, record, reservation, lease).
func (w *VirtapWiring) CheckGone(t testing.TB, topo *Topology) {
	t.Helper()
	w.mu.Lock()
	guests := append([]*Guest(nil), w.guests[topo.Prefix]...)
	w.mu.Unlock()
	if err := w.Left(topo, guests...); err != nil {
		t.Fatal(err)
	}
}

// Left reports what virtap left for these guests of the topology (nil
// when nothing).
func (w *VirtapWiring) Left(topo *Topology, guests ...*Guest) error {
	var left []string
	links, err := TaggedLinks()
	if err != nil {
		return err
	}
	for _, l := range links {
		mine := strings.Contains(l.Alias, ":"+topo.Prefix+"-")
		for _, g := range guests {
			mine = mine || strings.Contains(strings.ToLower(l.Alias), strings.ToLower(g.UUID))
		}
		if mine {
			left = append(left, fmt.Sprintf("device %s (%s, alias %s)", l.Name, l.Type, l.Alias))
		}
	}
	st, err := w.V.Status()
	if err != nil {
		return err
	}
	for _, g := range guests {
		for _, m := range st.Mentions(g.UUID) {
			left = append(left, g.Name+": "+m)
		}
	}
	for _, r := range st.Reservations {
		if strings.HasPrefix(r.Pool, topo.Prefix+"-") {
			left = append(left, fmt.Sprintf("reservation of %s in pool %s by %s", r.Device, r.Pool, r.Holder.Name))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("virtap left behind: %s", strings.Join(left, "; "))
	}
	return nil
}

// CheckRunning fails the test unless `virtap status` shows every
// provisioned guest of the topology running, with a state record (written
// by the hook at prepare) for each interface its metadata names.
func (w *VirtapWiring) CheckRunning(t testing.TB, topo *Topology) {
	t.Helper()
	w.mu.Lock()
	guests := append([]*Guest(nil), w.guests[topo.Prefix]...)
	w.mu.Unlock()
	st, err := w.V.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Running(guests...); err != nil {
		t.Fatal(err)
	}
}
