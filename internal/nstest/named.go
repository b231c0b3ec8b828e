package nstest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NamedDir is where named namespaces are bound (iproute2's directory).
const NamedDir = "/var/run/netns"

// NewNamed creates a network namespace bound to NamedDir/name, so that
// `ip netns exec name` reaches it, without entering it; lo is up. Unlike New
// and NewDetached it takes no testing.TB and outlives the process: the
// caller releases it with Close and removes it with DeleteNamed (also after
// an error). The end-to-end harness uses it: its topologies serve programs
// (bench, the demo) too, and its guests' tests run ping in them by name.
func NewNamed(name string) (*NS, error) {
	h := netns.None()
	err := inThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // creates and switches this thread
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	ns := &NS{Handle: h}
	if ns.NL, err = netlink.NewHandleAt(h); err != nil {
		ns.Close()
		return nil, fmt.Errorf("netns %s: netlink handle: %w", name, err)
	}
	lo, err := ns.NL.LinkByName("lo")
	if err == nil {
		err = ns.NL.LinkSetUp(lo)
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netns %s: lo up: %w", name, err)
	}
	return ns, nil
}

// Close releases the handles of a namespace from NewNamed; the namespace
// itself stays while its name is bound (DeleteNamed). Calling it twice is fine.
func (ns *NS) Close() {
	if ns.NL != nil {
		ns.NL.Close()
		ns.NL = nil
	}
	if ns.Handle.IsOpen() {
		_ = ns.Handle.Close()
		ns.Handle = netns.None()
	}
}

// NamedExists reports whether a namespace called name is bound.
func NamedExists(name string) bool {
	_, err := os.Stat(filepath.Join(NamedDir, name))
	return err == nil
}

// DeleteNamed unbinds the named namespace name (the kernel frees it, and
// every link in it, once nothing else holds it). A missing one is fine.
func DeleteNamed(name string) error {
	if !NamedExists(name) {
		return nil // never created, or already gone
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}
