package netdev

import (
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
)

// guestDeviceName matches the names virtap gives the guest devices it
// creates (provision.DeviceName: "vt", a kind letter, 12 base32 letters).
// libvirt's macvtapN, vnetN and anything an operator names differ.
var guestDeviceName = regexp.MustCompile(`^vt[ip][a-z2-7]{12}$`)

// IsGuestDeviceName says whether name has the shape of a guest device
// virtap creates.
func IsGuestDeviceName(name string) bool { return guestDeviceName.MatchString(name) }

// OwnedBy is the one test of "this device is domain u's", used before
// every delete or adoption of a guest device:
//
//   - a device tagged for u (its alias names u's UUID) is u's;
//   - a device tagged for anything else (another guest, a probe, a shim)
//     is not;
//   - an untagged device is u's only in the crash window between the
//     kernel's link creation and the alias write (the kernel ignores
//     IFLA_IFALIAS on RTM_NEWLINK, so tagging is a second request): u's own
//     write-ahead record claimed it at prepare (claimedKind is the kind
//     that record says; "" when there is no such claim), it has a virtap
//     guest device name, no alias at all, and is a macvtap or ipvtap of
//     that kind. libvirt's macvtaps never match.
func OwnedBy(l netlink.Link, u uuid.UUID, claimedKind string) bool {
	a := l.Attrs()
	if t, ok := ParseTag(a.Alias); ok {
		return t.For(u)
	}
	return claimedKind != "" && a.Alias == "" && IsGuestDeviceName(a.Name) && l.Type() == claimedKind &&
		(claimedKind == KindMacvtap || claimedKind == KindIPvtap)
}

// DeleteFor removes the device called name if OwnedBy says it is domain
// u's; anything else is refused with ErrNotOurs and left alone. Gone is
// success.
func (m *Manager) DeleteFor(name string, u uuid.UUID, claimedKind string) error {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if !OwnedBy(l, u, claimedKind) {
		return fmt.Errorf("%w: %s (a %s with alias %q) is not domain %s's", ErrNotOurs, name, l.Type(), l.Attrs().Alias, u)
	}
	if err := m.h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	m.log.Info("deleted device", "name", name, "index", l.Attrs().Index, "alias", l.Attrs().Alias, "domain", u.String())
	return nil
}

// FindFor is Find that also says whether the device is domain u's
// (OwnedBy, without a claim: only a tag for u counts).
func (m *Manager) FindFor(name string, u uuid.UUID) (d Device, exists, owned bool, err error) {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return Device{}, false, false, nil
		}
		return Device{}, false, false, fmt.Errorf("look up %s: %w", name, err)
	}
	return m.device(l, nil), true, OwnedBy(l, u, ""), nil
}
