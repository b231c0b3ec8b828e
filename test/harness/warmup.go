package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/virtap/virtap/test/image"
	"github.com/virtap/virtap/test/internal/run"
	"github.com/vishvananda/netlink"
)

// Warm-up: on this kind of machine the first guest that libvirtd starts on
// a type='direct' macvtap after it (re)started could get a NIC that never
// passes a frame (test/README.md). So every time the harness starts
// libvirtd it first boots one throwaway guest on a throwaway macvtap (over a
// veth pair of its own, no traffic leaves the host), waits for its first counters,
// logs what they say, and destroys it. It runs while Restart keeps this
// process's other libvirt clients out, so it really is the first guest.

// VIRTAP_TEST_WARMUP=0 turns the warm-up off, to reproduce the dead NIC.

// SetWarmUp makes every later start of libvirtd by this handle boot a
// warm-up guest from img, and boots one now when this handle started the
// running libvirtd. A failed warm-up is logged, not fatal: the tests'
// own checks still stand.
func (l *Libvirt) SetWarmUp(img *image.GuestImage) {
	l.mu.Lock()
	l.warm = img
	owned := l.libvirtd != nil
	l.mu.Unlock()
	if owned {
		l.warmUp()
	}
}

func (l *Libvirt) warmUp() {
	l.mu.Lock()
	img := l.warm
	l.mu.Unlock()
	if img == nil {
		return
	}
	if os.Getenv("VIRTAP_TEST_WARMUP") == "0" {
		l.note("no warm-up guest (VIRTAP_TEST_WARMUP=0): the next guest is the first after libvirtd started")
		return
	}
	start := time.Now()
	rep, err := warmUpGuest(img)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err != nil:
		l.note("warm-up guest after libvirtd start failed after %s (tests go on): %v", took, err)
	case rep.Dead():
		l.note("warm-up guest after libvirtd start had a dead NIC (%s): %s", took, rep)
	default:
		l.note("warm-up guest after libvirtd start passed frames (%s): %s", took, rep)
	}
}

func (l *Libvirt) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.Notes = append(l.Notes, s)
	l.mu.Unlock()
	fmt.Fprintf(os.Stderr, "harness: %s\n", s)
}

// warmUpGuest boots the throwaway guest and returns its NIC's counters once
// the guest printed its first ones. It calls virsh directly (not through
// Virsh): Restart holds the gate that Virsh waits for.
func warmUpGuest(img *image.GuestImage) (rep NICReport, err error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return rep, err
	}
	id := hex.EncodeToString(rnd[:])[:5]
	parent, name := "vtwarm"+id, "virtap-warmup-"+id
	// A veth pair (this kernel may lack the dummy driver): frames sent out
	// of parent end at its peer, which has no address.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: parent}, PeerName: parent + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return rep, fmt.Errorf("warm-up parent %s: %w", parent, err)
	}
	defer func() {
		if l, e := netlink.LinkByName(parent); e == nil {
			if e := netlink.LinkDel(l); e != nil && err == nil {
				err = e
			}
		}
	}()
	for _, n := range []string{parent, parent + "p"} {
		if l, err := netlink.LinkByName(n); err != nil || netlink.LinkSetUp(l) != nil {
			return rep, fmt.Errorf("warm-up parent %s: cannot bring it up (%v)", n, err)
		}
	}
	dir, err := os.MkdirTemp("", "virtap-warmup-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	serial := filepath.Join(dir, "serial.log")
	// 198.51.100.2 pings 198.51.100.1, which nobody has: its ARP requests
	// are the frames counted on both sides.
	cfg := GuestConfig{IP: "198.51.100.2/24", Peers: []string{"198.51.100.1"}, Tries: 2, NoLoop: true}
	x := GuestXML(name, uuid.NewString(), img.Kernel, img.Initrd, cfg.Cmdline(), serial, DirectInterface(parent, "bridge", ""))
	xf := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(xf, []byte(x), 0o644); err != nil {
		return rep, err
	}
	virsh := func(args ...string) error {
		_, err := run.Cmd(VirshTimeout, "virsh", append([]string{"-c", URI}, args...)...)
		return err
	}
	if err := virsh("define", xf); err != nil {
		return rep, err
	}
	defer func() {
		_ = virsh("destroy", name)
		if e := virsh("undefine", name); e != nil && err == nil {
			err = e
		}
	}()
	if err := virsh("start", name); err != nil {
		return rep, err
	}
	if _, err := WaitSerial(serial, `^VIRTAP-STATS eth0 `, 90*time.Second); err != nil {
		return rep, fmt.Errorf("%w\n%s", err, run.Tail(serial, 2000))
	}
	return warmUpReport(name, parent, serial)
}

// warmUpReport reads the warm-up guest's counters: its macvtap is the only
// one on its parent.
func warmUpReport(name, parent, serial string) (NICReport, error) {
	rep := NICReport{Guest: name, FilterSeen: -1, TapFDs: qemuTapFDs(name)}
	rep.GuestTX, rep.GuestRX = GuestStats(serial, 0, "eth0")
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return rep, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return rep, err
	}
	for _, l := range links {
		if l.Attrs().ParentIndex == p.Attrs().Index && l.Type() == "macvtap" {
			rep.Dev, rep.MAC = l.Attrs().Name, l.Attrs().HardwareAddr.String()
		}
	}
	readHostCounters(&rep)
	return rep, nil
}
