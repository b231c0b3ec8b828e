package netdev

import (
	"fmt"
)

// DeleteClaimed removes an untagged device that virtap's write-ahead record
// claims: the caller recorded the name before creating the device, and a
// crash between the kernel's link creation and the alias write (the kernel
// ignores IFLA_IFALIAS on RTM_NEWLINK, so tagging is a second request) left
// it without a tag. It deletes only when the device is untagged and of the
// kind the record says (macvtap or ipvtap); a tagged device goes through
// Delete, anything else is refused with ErrNotOurs. Gone is success.
func (m *Manager) DeleteClaimed(name, kind string) error {
	l, err := m.h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if _, ok := ParseTag(l.Attrs().Alias); ok {
		return m.deleteLink(m.h, l)
	}
	if l.Attrs().Alias != "" || l.Type() != kind || (kind != KindMacvtap && kind != KindIPvtap) {
		return fmt.Errorf("%w: %s is a %s with alias %q, not an untagged %s that virtap claimed", ErrNotOurs, name, l.Type(), l.Attrs().Alias, kind)
	}
	if err := m.h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	m.log.Info("deleted untagged device that virtap's record claims", "name", name, "kind", kind)
	return nil
}
