package netdev

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// checkExisting decides what to do with a device that already has the
// spec's name: return it (ours, same shape) or refuse.
func (m *Manager) checkExisting(s Spec, d Device) (Device, error) {
	if d.Tag != s.Tag {
		if d.Ours() {
			return Device{}, fmt.Errorf("%w: %s exists, tagged %q, want %q", ErrNotOurs, s.Name, d.Tag, s.Tag)
		}
		return Device{}, fmt.Errorf("%w: %s exists without virtap's tag; remove it by hand if it is a leftover (ip link del %s)", ErrNotOurs, s.Name, s.Name)
	}
	if d.Kind != s.Kind || d.Parent != s.Parent || d.Mode != s.Mode || d.VLANID != s.VLANID {
		return Device{}, fmt.Errorf("%w: %s is %s on %s mode %q vlan %d, want %s on %s mode %q vlan %d",
			ErrMismatch, s.Name, d.Kind, d.Parent, d.Mode, d.VLANID, s.Kind, s.Parent, s.Mode, s.VLANID)
	}
	if s.Up && !d.Up {
		l, err := m.h.LinkByIndex(d.Index)
		if err == nil {
			err = m.h.LinkSetUp(l)
		}
		if err != nil {
			return Device{}, fmt.Errorf("set %s up: %w", s.Name, err)
		}
		d.Up = true
	}
	m.log.Debug("device exists with our tag", "name", d.Name, "index", d.Index, "tag", d.Tag.String())
	return d, nil
}

func (m *Manager) buildLink(s Spec, parent netlink.Link) netlink.Link {
	la := netlink.NewLinkAttrs() // TxQLen -1: a 0 here would really set txqlen 0
	la.Name = s.Name
	la.ParentIndex = parent.Attrs().Index
	la.Alias = s.Tag.String()
	la.MTU = s.MTU
	la.Index = s.Index
	if s.TxQLen > 0 {
		la.TxQLen = s.TxQLen
	}
	if s.MAC != nil {
		la.HardwareAddr = s.MAC
	}
	switch s.Kind {
	case KindMacvtap:
		// Always an explicit mode: MACVLAN_MODE_DEFAULT sends none and the
		// kernel then picks VEPA.
		return &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: macvlanModes[s.Mode]}}
	case KindMacvlan:
		return &netlink.Macvlan{LinkAttrs: la, Mode: macvlanModes[s.Mode]}
	case KindVLAN:
		return &netlink.Vlan{LinkAttrs: la, VlanId: s.VLANID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	case KindIPvtap:
		return &netlink.IPVtap{IPVlan: netlink.IPVlan{LinkAttrs: la, Mode: ipvlanModes[s.Mode], Flag: ipvlanFlags[s.Flag]}}
	default:
		return &netlink.IPVlan{LinkAttrs: la, Mode: ipvlanModes[s.Mode], Flag: ipvlanFlags[s.Flag]}
	}
}

// Create makes the device described by s, tagged with s.Tag. It is safe to
// re-run: if a device of that name exists with the same tag (and kind,
// parent, mode) it is returned unchanged (set up if s.Up). A device of that
// name without the tag gives ErrNotOurs and is not touched. If anything
// fails after the link was added, the link is deleted again.
func (m *Manager) Create(s Spec) (dev Device, err error) {
	if s.Kind == KindIPvtap || s.Kind == KindIPvlan {
		if s.Flag == "" {
			s.Flag = "bridge"
		}
	}
	if err := s.Validate(); err != nil {
		return Device{}, err
	}
	log := m.log.With("device", s.Name, "kind", s.Kind, "parent", s.Parent, "mode", s.Mode)
	// Round trips are the cost here (RTNL serialises creation): no lookup
	// of the name first (EEXIST says it exists), up at creation, and the
	// index from LinkAdd's own read-back.
	parent, err := m.parent(s.Parent)
	if err != nil {
		if isNotFound(err) {
			if d, ok, ferr := m.Find(s.Name); ferr == nil && ok {
				return m.checkExisting(s, d)
			}
			return Device{}, fmt.Errorf("%w: %s (for %s)", ErrNoParent, s.Parent, s.Name)
		}
		return Device{}, fmt.Errorf("look up parent %s: %w", s.Parent, err)
	}
	link := m.buildLink(s, parent)
	if s.Up {
		link.Attrs().Flags |= net.FlagUp
	}
	err = m.h.LinkAdd(link)
	if err != nil && errors.Is(err, unix.ENODEV) {
		// The cached parent went away or changed: look it up once more.
		m.forgetParent(s.Parent)
		if parent, err = m.parent(s.Parent); err == nil {
			link = m.buildLink(s, parent)
			if s.Up {
				link.Attrs().Flags |= net.FlagUp
			}
			err = m.h.LinkAdd(link)
		}
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			// The name exists: ours from an earlier run, or not ours.
			if d, ok, ferr := m.Find(s.Name); ferr == nil && ok {
				return m.checkExisting(s, d)
			}
		}
		return Device{}, m.explainAddError(s, err)
	}
	// From here on, any failure removes the link again (revert).
	created := link
	if created.Attrs().Index == 0 { // LinkAdd could not read it back
		if created, err = m.h.LinkByName(s.Name); err != nil {
			if derr := m.h.LinkDel(link); derr != nil && !isNotFound(derr) {
				log.Error("cannot remove half-made device", "error", derr)
			}
			return Device{}, fmt.Errorf("read back %s: %w", s.Name, err)
		}
	}
	defer func() {
		if err != nil {
			if derr := m.h.LinkDel(created); derr != nil && !isNotFound(derr) {
				log.Error("cannot remove half-made device", "error", derr)
				err = errors.Join(err, fmt.Errorf("remove half-made %s: %w", s.Name, derr))
			}
		}
	}()
	if m.afterAdd != nil {
		if err = m.afterAdd(created); err != nil {
			return Device{}, err
		}
	}
	// The kernel ignores IFLA_IFALIAS in RTM_NEWLINK: tag now.
	if err = m.h.LinkSetAlias(created, s.Tag.String()); err != nil {
		return Device{}, fmt.Errorf("tag %s: %w", s.Name, err)
	}
	if created, err = m.h.LinkByIndex(created.Attrs().Index); err != nil {
		return Device{}, fmt.Errorf("read back %s: %w", s.Name, err)
	}
	dev = m.device(created, nil)
	if dev.Tag != s.Tag || dev.Mode != s.Mode || dev.VLANID != s.VLANID || (s.Flag != "" && dev.Flag != s.Flag) {
		err = fmt.Errorf("%s: kernel reports tag %q mode %q flag %q, asked for %q %q %q",
			s.Name, dev.Tag, dev.Mode, dev.Flag, s.Tag, s.Mode, s.Flag)
		return Device{}, err
	}
	if dev.TapPath != "" {
		if err = waitCharDev(dev.TapPath, m.TapWait); err != nil {
			return Device{}, err
		}
	}
	log.Info("created device", "index", dev.Index, "mac", dev.MAC.String(), "tap", dev.TapPath)
	return dev, nil
}

// explainAddError turns the kernel's terse answers into something a user
// can act on.
func (m *Manager) explainAddError(s Spec, err error) error {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP):
		return fmt.Errorf("create %s %s: kernel lacks %s support (module not loaded?): %w", s.Kind, s.Name, s.Kind, err)
	case (s.Kind == KindMacvtap || s.Kind == KindMacvlan) && errors.Is(err, unix.EINVAL):
		if kids, kerr := m.MacvlanChildren(s.Parent); kerr == nil && len(kids) > 0 {
			for _, k := range kids {
				if k.Mode == "passthrough" {
					return fmt.Errorf("create %s on %s: %s already holds the parent in passthrough mode (one device per parent): %w", s.Name, s.Parent, k.Name, err)
				}
			}
			if s.Mode == "passthrough" {
				return fmt.Errorf("create %s on %s in passthrough mode: the parent already has %d macvlan/macvtap devices (passthrough needs it alone): %w", s.Name, s.Parent, len(kids), err)
			}
		}
	case errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EBUSY):
		return fmt.Errorf("create %s on %s: MAC %s already in use on the parent: %w", s.Name, s.Parent, s.MAC, err)
	}
	return fmt.Errorf("create %s %s on %s mode %s: %w", s.Kind, s.Name, s.Parent, s.Mode, err)
}

// waitCharDev waits until path exists and is a character device (devtmpfs
// creates /dev/tapN asynchronously with the link).
func waitCharDev(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pause := 50 * time.Microsecond
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("not a character device")
			}
			return fmt.Errorf("%s did not appear within %v (is /dev a devtmpfs?): %w", path, limit, err)
		}
		// devtmpfs usually has the node by now: poll fast, then back off.
		time.Sleep(pause)
		if pause < 2*time.Millisecond {
			pause *= 2
		}
	}
}
