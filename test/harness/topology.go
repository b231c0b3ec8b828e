package harness

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/internal/run"
)

// Addresses of the topology's L2 segment (a documentation range).
const (
	Subnet = "192.0.2.0/24"
	ExtIP  = "192.0.2.1"
)

// GuestIP returns 192.0.2.(10+i) for guest i, without prefix length.
func GuestIP(i int) string { return fmt.Sprintf("192.0.2.%d", 10+i) }

// Topology is a physical network stand-in:
//
//	init netns:  Uplinks[i] (veth, up, no address)  <- macvtaps go on these
//	                 |
//	SwitchNS:    p<i> ports of bridge br0 (hairpin per port = reflective relay)
//	                 |
//	                x0 -- veth -- eth0 in ExtNS (192.0.2.1/24): the external host
//
// All names carry Prefix ("vt" + 5 random hex digits), unique per test.
type Topology struct {
	Prefix   string
	Uplinks  []string // init-netns devices, e.g. vt1a2b3u0
	SwitchNS string   // named netns (ip netns exec works), holds br0
	ExtNS    string   // named netns of the external host
	Bridge   string   // bridge name inside SwitchNS
	Ports    []string // bridge ports in SwitchNS, Ports[i] is the far end of Uplinks[i]

	mu     sync.Mutex
	closed bool
	sw     *nstest.NS // SwitchNS
	ext    *nstest.NS // ExtNS
}

// NewTopology builds the topology with nUplinks uplinks and the given
// hairpin setting on their bridge ports. Everything is removed on
// t.Cleanup (also when the test fails or the build fails half-way).
func NewTopology(t testing.TB, nUplinks int, hairpin bool) *Topology {
	t.Helper()
	nstest.RequireRoot(t)
	topo, err := newTopology(nUplinks, hairpin)
	if topo != nil {
		t.Cleanup(func() {
			if err := topo.Close(); err != nil {
				t.Errorf("topology cleanup: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	return topo
}

// StartTopology is NewTopology for programs (no testing.TB): on error it
// removes what it made; otherwise the caller must Close the topology.
func StartTopology(nUplinks int, hairpin bool) (*Topology, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("a topology needs root")
	}
	topo, err := newTopology(nUplinks, hairpin)
	if err != nil {
		if topo != nil {
			err = errors.Join(err, topo.Close())
		}
		return nil, err
	}
	return topo, nil
}

func newTopology(nUplinks int, hairpin bool) (*Topology, error) {
	if nUplinks < 1 || nUplinks > 9 {
		return nil, fmt.Errorf("nUplinks %d out of 1..9", nUplinks)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	p := "vt" + hex.EncodeToString(rnd[:])[:5]
	topo := &Topology{Prefix: p, SwitchNS: p + "-sw", ExtNS: p + "-ext", Bridge: "br0"}
	var err error
	if topo.sw, err = nstest.NewNamed(topo.SwitchNS); err != nil {
		return topo, err // Close removes a half-made one
	}
	if topo.ext, err = nstest.NewNamed(topo.ExtNS); err != nil {
		return topo, err
	}
	return topo, topo.build(nUplinks, hairpin)
}

// build makes the links. The namespaces come from nstest; the links do not:
// nstest's link helpers (Veth, Bridge, AddPort) fail a test on error and
// clean up through it, while a Topology also serves programs without a
// testing.TB (StartTopology: bench, the demo), returns errors and is torn
// down by Close; its uplinks live in the init namespace, where libvirtd
// puts the guests' macvtaps, not in a test's throwaway one.
func (t *Topology) build(nUplinks int, hairpin bool) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: t.Bridge}}
	if err := t.sw.NL.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	brl, err := t.sw.NL.LinkByName(t.Bridge)
	if err != nil {
		return err
	}
	if err := t.sw.NL.LinkSetUp(brl); err != nil {
		return err
	}
	for i := 0; i < nUplinks; i++ {
		up, port := fmt.Sprintf("%su%d", t.Prefix, i), fmt.Sprintf("p%d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: up}, PeerName: port, PeerNamespace: netlink.NsFd(t.sw.Handle)}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("uplink %s: %w", up, err)
		}
		t.Uplinks = append(t.Uplinks, up)
		t.Ports = append(t.Ports, port)
		if err := t.attach(port, hairpin); err != nil {
			return err
		}
		l, err := netlink.LinkByName(up)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "x0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(t.ext.Handle)}
	if err := t.sw.NL.LinkAdd(veth); err != nil {
		return fmt.Errorf("external host veth: %w", err)
	}
	if err := t.attach("x0", false); err != nil {
		return err
	}
	eth0, err := t.ext.NL.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(ExtIP + "/24")
	if err := t.ext.NL.AddrAdd(eth0, addr); err != nil {
		return err
	}
	return t.ext.NL.LinkSetUp(eth0)
}

func (t *Topology) attach(port string, hairpin bool) error {
	l, err := t.sw.NL.LinkByName(port)
	if err != nil {
		return err
	}
	br, err := t.sw.NL.LinkByName(t.Bridge)
	if err != nil {
		return err
	}
	if err := t.sw.NL.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("enslave %s: %w", port, err)
	}
	if err := t.sw.NL.LinkSetUp(l); err != nil {
		return err
	}
	return t.sw.NL.LinkSetHairpin(l, hairpin)
}

// AddExtAddr adds an address (e.g. "192.0.2.254") to the external host's
// interface, so that guests waiting for it as their trigger (GuestConfig.On)
// see it answer.
func (t *Topology) AddExtAddr(ip string) error {
	eth0, err := t.ext.NL.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(ip + "/32")
	if err != nil {
		return err
	}
	return t.ext.NL.AddrAdd(eth0, addr)
}

// SetHairpin turns reflective relay on or off on every uplink's bridge port.
func (t *Topology) SetHairpin(on bool) error {
	for _, p := range t.Ports {
		l, err := t.sw.NL.LinkByName(p)
		if err != nil {
			return err
		}
		if err := t.sw.NL.LinkSetHairpin(l, on); err != nil {
			return fmt.Errorf("hairpin %v on %s: %w", on, p, err)
		}
	}
	return nil
}

// Hairpin reports the hairpin flag of uplink i's bridge port as the kernel has it.
func (t *Topology) Hairpin(i int) (bool, error) {
	l, err := t.sw.NL.LinkByName(t.Ports[i])
	if err != nil {
		return false, err
	}
	pi, err := t.sw.NL.LinkGetProtinfo(l)
	if err != nil {
		return false, err
	}
	return pi.Hairpin, nil
}

// ExtExec runs a program inside the external host's netns (test code may
// exec ip) and returns its combined output.
func (t *Topology) ExtExec(timeout time.Duration, args ...string) (string, error) {
	return run.Cmd(timeout, "ip", append([]string{"netns", "exec", t.ExtNS}, args...)...)
}

// ExtPing pings addr from the external host count times (1 s each at most)
// and returns nil if any reply came.
func (t *Topology) ExtPing(addr string, count int) error {
	if net.ParseIP(addr) == nil {
		return fmt.Errorf("not an address: %q", addr)
	}
	_, err := t.ExtExec(time.Duration(count+5)*time.Second, "ping", "-n", "-c", fmt.Sprint(count), "-W", "1", "-i", "0.2", addr)
	return err
}

// MacvtapsOn lists the macvtap/macvlan devices in the init netns whose lower
// device is uplink i (what libvirt or virtap created on it).
func (t *Topology) MacvtapsOn(i int) ([]string, error) {
	up, err := netlink.LinkByName(t.Uplinks[i])
	if err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if a.ParentIndex == up.Attrs().Index && (l.Type() == "macvtap" || l.Type() == "macvlan") {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

// Close deletes the uplinks and both namespaces (and so everything in them).
// Already-gone pieces are fine; calling it twice is fine.
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, up := range t.Uplinks {
		if l, err := netlink.LinkByName(up); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", up, err))
			}
		}
	}
	for _, ns := range []*nstest.NS{t.sw, t.ext} {
		if ns != nil {
			ns.Close()
		}
	}
	for _, name := range []string{t.SwitchNS, t.ExtNS} {
		if err := nstest.DeleteNamed(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Gone reports what of the topology still exists (nil when nothing does).
func (t *Topology) Gone() error {
	var left []string
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, t.Prefix) {
			left = append(left, "link "+l.Attrs().Name)
		}
	}
	for _, name := range []string{t.SwitchNS, t.ExtNS} {
		if nstest.NamedExists(name) {
			left = append(left, "netns "+name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, ", "))
	}
	return nil
}
