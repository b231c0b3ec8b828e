// Package nstest builds throwaway network namespaces and small topologies
// (veth pairs, Linux bridges acting as switches, addressed "external hosts")
// for tests that need real kernel network objects.
//
// The usual shape of a test:
//
//	func TestX(t *testing.T) {
//		nstest.RequireRoot(t)
//		host := nstest.New(t)        // the test goroutine now runs in a fresh netns
//		sw := nstest.NewDetached(t)  // another netns, e.g. a switch
//		host.Veth(t, "up0", "swup", sw)
//		...
//	}
//
// New locks the test goroutine to its OS thread and moves that thread into the
// new namespace; t.Cleanup moves it back and releases the namespace. Namespaces
// are anonymous: the kernel frees them (and every link in them) once the last
// handle is closed, so a failing test leaves nothing behind on the host. The
// one exception is NewNamed (for test/harness, whose topologies must be
// reachable by `ip netns exec` and serve programs too): its caller deletes it.
//
// Tests in a package that uses New must not call t.Parallel in a way that
// moves the test goroutine; everything else here is safe to use from the
// goroutine that called New.
package nstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// InCI reports whether the environment variable CI is "true": then nothing
// may skip for lack of root or packages.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips the test when the process is not root, unless the
// environment variable CI is "true": then a missing privilege is a failure,
// so that a CI run can never pass by skipping. It is the one such helper of
// the repository (test/harness uses it too).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatal("test needs root (CAP_NET_ADMIN) and CI=true: refusing to skip")
	}
	t.Skip("test needs root (CAP_NET_ADMIN); skipping because CI is not \"true\"")
}

// NS is one network namespace made for a test.
type NS struct {
	// Handle refers to the namespace; valid until the test's cleanup.
	Handle netns.NsHandle
	// NL is a netlink handle whose sockets live in the namespace, usable
	// from any goroutine.
	NL *netlink.Handle
}

// New creates a fresh network namespace, locks the calling goroutine to its
// OS thread and switches that thread into the namespace. On t.Cleanup the
// thread is switched back to the namespace it was in and the namespace is
// released. Call it from the test goroutine (not from a helper goroutine).
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("nstest: get current netns: %v", err)
	}
	h, err := netns.New() // creates and switches this thread
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("nstest: create netns: %v", err)
	}
	ns := &NS{Handle: h}
	t.Cleanup(func() {
		if ns.NL != nil {
			ns.NL.Close()
		}
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime kills a locked thread
			// when its goroutine exits, so the wrong netns cannot leak.
			t.Errorf("nstest: restore original netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
		h.Close()
	})
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("nstest: netlink handle: %v", err)
	}
	ns.NL = nl
	ns.mustUp(t, "lo")
	return ns
}

// NewDetached creates a fresh network namespace without entering it (the
// calling thread stays where it is). Use it for switches and external
// hosts. It is released on t.Cleanup.
func NewDetached(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var h netns.NsHandle
	err := inThread(func() error {
		var err error
		h, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("nstest: create detached netns: %v", err)
	}
	ns := &NS{Handle: h}
	t.Cleanup(func() {
		if ns.NL != nil {
			ns.NL.Close()
		}
		h.Close()
	})
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("nstest: netlink handle: %v", err)
	}
	ns.NL = nl
	ns.mustUp(t, "lo")
	return ns
}

// inThread runs f on a fresh locked OS thread and restores that thread's
// netns afterwards (or lets it die if it cannot).
func inThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // thread dies locked: harmless
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return // stay locked: the thread is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs f with a locked OS thread inside the namespace and returns f's
// error. The calling goroutine's own namespace is not affected.
func (ns *NS) Do(f func() error) error {
	return Run(ns.Handle, f)
}

// Run runs f on a locked OS thread inside the namespace h, then restores the
// thread. If the thread cannot be restored it is discarded, never reused.
func Run(h netns.NsHandle, f func() error) error {
	return inThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return f()
	})
}

// Link returns the link called name in the namespace or fails the test.
func (ns *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := ns.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("nstest: link %q: %v", name, err)
	}
	return l
}

func (ns *NS) mustUp(t testing.TB, name string) {
	t.Helper()
	l, err := ns.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("nstest: link %q: %v", name, err)
	}
	if err := ns.NL.LinkSetUp(l); err != nil {
		t.Fatalf("nstest: set %q up: %v", name, err)
	}
}

// Up sets the named links up.
func (ns *NS) Up(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		ns.mustUp(t, n)
	}
}

// Veth creates a veth pair: name in ns and peerName in peer (peer may be ns
// itself or nil for the same namespace). Both ends are set up.
func (ns *NS) Veth(t testing.TB, name, peerName string, peer *NS) {
	t.Helper()
	if peer == nil {
		peer = ns
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	v := &netlink.Veth{LinkAttrs: la, PeerName: peerName}
	if peer != ns {
		v.PeerNamespace = netlink.NsFd(peer.Handle)
	}
	if err := ns.NL.LinkAdd(v); err != nil {
		t.Fatalf("nstest: add veth %s/%s: %v", name, peerName, err)
	}
	ns.mustUp(t, name)
	peer.mustUp(t, peerName)
	ns.WaitOperUp(t, name)
	peer.WaitOperUp(t, peerName)
}

// WaitOperUp waits until link name reports operstate up. The kernel's
// linkwatch moves a link there asynchronously after carrier comes, later
// under load; code that reads operstate (pool usage, doctor) would
// otherwise see "lowerlayerdown" on a link the test just set up.
func (ns *NS) WaitOperUp(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := ns.Link(t, name)
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nstest: %s: operstate %s, not up after 10s", name, l.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Bridge creates a Linux bridge (a learning switch) named name, up.
// Multicast snooping is off; STP is off (the default), so ports forward at once.
func (ns *NS) Bridge(t testing.TB, name string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	off := false
	br := &netlink.Bridge{LinkAttrs: la, MulticastSnooping: &off}
	if err := ns.NL.LinkAdd(br); err != nil {
		t.Fatalf("nstest: add bridge %s: %v", name, err)
	}
	ns.mustUp(t, name)
}

// AddPort attaches link port to bridge br and sets the port's hairpin mode
// (reflective relay: frames may leave by the port they came in).
func (ns *NS) AddPort(t testing.TB, br, port string, hairpin bool) {
	t.Helper()
	b := ns.Link(t, br)
	p := ns.Link(t, port)
	if err := ns.NL.LinkSetMaster(p, b); err != nil {
		t.Fatalf("nstest: enslave %s to %s: %v", port, br, err)
	}
	ns.SetHairpin(t, port, hairpin)
	ns.mustUp(t, port)
}

// SetHairpin turns hairpin mode of bridge port port on or off.
func (ns *NS) SetHairpin(t testing.TB, port string, on bool) {
	t.Helper()
	if err := ns.NL.LinkSetHairpin(ns.Link(t, port), on); err != nil {
		t.Fatalf("nstest: hairpin %s=%v: %v", port, on, err)
	}
}

// Hairpin reports whether the kernel has hairpin mode on for bridge port port.
func (ns *NS) Hairpin(t testing.TB, port string) bool {
	t.Helper()
	pi, err := ns.NL.LinkGetProtinfo(ns.Link(t, port))
	if err != nil {
		t.Fatalf("nstest: protinfo %s: %v", port, err)
	}
	return pi.Hairpin
}

// AddAddr adds cidr (e.g. "192.0.2.2/24") to link name.
func (ns *NS) AddAddr(t testing.TB, name, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatalf("nstest: parse %q: %v", cidr, err)
	}
	if err := ns.NL.AddrAdd(ns.Link(t, name), a); err != nil {
		t.Fatalf("nstest: add %s to %s: %v", cidr, name, err)
	}
}

// MAC returns the hardware address of link name.
func (ns *NS) MAC(t testing.TB, name string) net.HardwareAddr {
	t.Helper()
	return ns.Link(t, name).Attrs().HardwareAddr
}

var indexSeq atomic.Int32

// FreshIndex returns an interface index for a link a test is about to
// create, unlikely to be used by any other test process at the same time.
//
// Why it matters: a macvtap's character device is /dev/tap<ifindex> in the
// single, global devtmpfs, while interface indexes are per namespace. Two test
// namespaces (for example two packages tested in parallel) that each create a
// macvtap with index 5 would fight over /dev/tap5. Passing a fresh index to
// the link's creation avoids that.
func FreshIndex() int {
	base := 100000 + (os.Getpid()%20000)*64
	return base + int(indexSeq.Add(1)%64)
}

// Switched is a small topology: the test's namespace (Host) has an uplink
// veth whose far end is a port of a Linux bridge in a "switch" namespace;
// an "external host" namespace is attached to the same bridge with an address.
//
//	Host: Uplink ──veth── Switch: SwitchPort ─┐
//	                                          Bridge
//	External: ExtLink (ExtIP/24) ──veth── ExtPort ─┘
type Switched struct {
	Host, Switch, External *NS
	Uplink                 string // in Host, the parent for macvtap devices
	Bridge                 string // in Switch
	SwitchPort             string // in Switch, the uplink's bridge port (hairpin here)
	ExtPort                string // in Switch
	ExtLink                string // in External
	ExtIP                  net.IP
	ExtMAC                 net.HardwareAddr
}

// NewSwitched builds the Switched topology around host (usually the
// namespace from New). hairpin sets reflective relay on the uplink's switch
// port. Addresses come from the documentation range 192.0.2.0/24: the
// external host is 192.0.2.2.
func NewSwitched(t testing.TB, host *NS, hairpin bool) *Switched {
	t.Helper()
	s := &Switched{
		Host: host, Switch: NewDetached(t), External: NewDetached(t),
		Uplink: "up0", Bridge: "br0", SwitchPort: "swup", ExtPort: "swext", ExtLink: "ext0",
		ExtIP: net.ParseIP("192.0.2.2").To4(),
	}
	s.Switch.Bridge(t, s.Bridge)
	host.Veth(t, s.Uplink, s.SwitchPort, s.Switch)
	s.External.Veth(t, s.ExtLink, s.ExtPort, s.Switch)
	s.Switch.AddPort(t, s.Bridge, s.SwitchPort, hairpin)
	s.Switch.AddPort(t, s.Bridge, s.ExtPort, false)
	s.External.AddAddr(t, s.ExtLink, "192.0.2.2/24")
	s.ExtMAC = s.External.MAC(t, s.ExtLink)
	return s
}

// SetHairpin changes reflective relay on the uplink's switch port.
func (s *Switched) SetHairpin(t testing.TB, on bool) {
	t.Helper()
	s.Switch.SetHairpin(t, s.SwitchPort, on)
}
