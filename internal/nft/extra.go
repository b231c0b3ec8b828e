package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// Extra addresses (issue 16): addresses a guest may use besides its own,
// such as those of containers it runs on ipvlan over its NIC (one MAC, many
// IPs). They change at run time, so they are not rules but the elements of
// two sets per interface, "g<mac>-x4" and "g<mac>-x6": the ARP sender, IPv4
// source, IPv6 source and neighbour-discovery target checks each look an
// address up there after the fixed ones. Adding or deleting an element
// changes what the guest may send at once, with no rule rebuilt and no
// counter reset. Prefixes are stored expanded (a /28 is 16 elements), so
// the sets are plain hash sets and an element is deleted exactly as added.

// ErrNoFilter is returned when an interface has no filter to change (the
// guest is not running, or its network is trusted).
var ErrNoFilter = errors.New("the interface has no anti-spoofing filter")

// ExtraSetName is the name of an interface's set of extra addresses of one
// family (4 or 6).
func ExtraSetName(base string, family int) string {
	if family == 6 {
		return base + "-x6"
	}
	return base + "-x4"
}

func extraSet(t *nftables.Table, base string, family int) *nftables.Set {
	kt := nftables.TypeIPAddr
	if family == 6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: ExtraSetName(base, family), KeyType: kt}
}

// setNames lists the sets of a table (none when the table is missing).
func setNames(c *nftables.Conn, t *nftables.Table) (map[string]bool, error) {
	out := map[string]bool{}
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return out, nil
		}
		return nil, fmt.Errorf("nftables: look up table %s: %w", t.Name, err)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets of %s: %w", t.Name, err)
	}
	for _, s := range sets {
		out[s.Name] = true
	}
	return out, nil
}

// extraSets queues what an interface's extra-address sets need in the
// transaction: made when missing, and their elements replaced by extras
// (atomically: the flush and the adds commit together).
func extraSets(c *nftables.Conn, t *nftables.Table, base string, have map[string]bool, extras []netip.Addr) (x4, x6 *nftables.Set, err error) {
	var sets [2]*nftables.Set
	for i, fam := range []int{4, 6} {
		s := extraSet(t, base, fam)
		if !have[s.Name] {
			if err := c.AddSet(s, nil); err != nil {
				return nil, nil, fmt.Errorf("nftables: set %s: %w", s.Name, err)
			}
		} else {
			c.FlushSet(s)
		}
		if els := setElements(extras, fam); len(els) > 0 {
			if err := c.SetAddElements(s, els); err != nil {
				return nil, nil, fmt.Errorf("nftables: elements of %s: %w", s.Name, err)
			}
		}
		sets[i] = s
	}
	return sets[0], sets[1], nil
}

// setElements are the addresses of one family as set elements.
func setElements(as []netip.Addr, family int) []nftables.SetElement {
	var out []nftables.SetElement
	for _, a := range as {
		a = a.Unmap()
		if a.Is4() != (family == 4) {
			continue
		}
		out = append(out, nftables.SetElement{Key: a.AsSlice()})
	}
	return out
}

// AddExtras lets a filtered interface use more addresses, at once. Adding
// an address it already has is success. ErrNoFilter when the interface has
// no filter here.
func (m *Manager) AddExtras(domain uuid.UUID, mac net.HardwareAddr, addrs []netip.Addr) error {
	return m.changeExtras(domain, mac, addrs, true)
}

// DelExtras takes addresses back from a filtered interface, at once.
// Deleting an address it does not have is success. ErrNoFilter when the
// interface has no filter here.
func (m *Manager) DelExtras(domain uuid.UUID, mac net.HardwareAddr, addrs []netip.Addr) error {
	return m.changeExtras(domain, mac, addrs, false)
}

func (m *Manager) changeExtras(domain uuid.UUID, mac net.HardwareAddr, addrs []netip.Addr, add bool) error {
	if err := checkExtras(addrs); err != nil {
		return err
	}
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table(domain)
	base := ChainName(mac)
	have, err := setNames(c, t)
	if err != nil {
		return err
	}
	for _, fam := range []int{4, 6} {
		s := extraSet(t, base, fam)
		if !have[s.Name] {
			return fmt.Errorf("interface %s of domain %s: %w", mac, domain, ErrNoFilter)
		}
		els := setElements(addrs, fam)
		if !add {
			cur, err := m.extrasIn(c, s)
			if err != nil {
				return err
			}
			els = setElements(intersect(addrs, cur), fam)
		}
		if len(els) == 0 {
			continue
		}
		if add {
			err = c.SetAddElements(s, els)
		} else {
			err = c.SetDeleteElements(s, els)
		}
		if err != nil {
			return fmt.Errorf("nftables: elements of %s: %w", s.Name, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: extra addresses of %s: %w", mac, err)
	}
	m.log.Info("extra addresses changed", "uuid", domain.String(), "mac", mac.String(), "added", add, "addresses", len(addrs))
	return nil
}

func checkExtras(addrs []netip.Addr) error {
	for _, a := range addrs {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Zone() != "" {
			return fmt.Errorf("filter: address %v cannot be a guest's source address", a)
		}
	}
	return nil
}

func intersect(want, have []netip.Addr) []netip.Addr {
	in := map[netip.Addr]bool{}
	for _, a := range have {
		in[a.Unmap()] = true
	}
	var out []netip.Addr
	for _, a := range want {
		if in[a.Unmap()] {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func (m *Manager) extrasIn(c *nftables.Conn, s *nftables.Set) ([]netip.Addr, error) {
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("nftables: elements of %s: %w", s.Name, err)
	}
	var out []netip.Addr
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// Extras lists the extra addresses an interface's filter allows now,
// sorted; ErrNoFilter when it has no filter here.
func (m *Manager) Extras(domain uuid.UUID, mac net.HardwareAddr) ([]netip.Addr, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t := table(domain)
	base := ChainName(mac)
	have, err := setNames(c, t)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, fam := range []int{4, 6} {
		s := extraSet(t, base, fam)
		if !have[s.Name] {
			return nil, fmt.Errorf("interface %s of domain %s: %w", mac, domain, ErrNoFilter)
		}
		as, err := m.extrasIn(c, s)
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// delExtraSets queues the removal of an interface's extra-address sets
// (after its chains, in the same transaction).
func delExtraSets(c *nftables.Conn, t *nftables.Table, base string, have map[string]bool) {
	for _, fam := range []int{4, 6} {
		if n := ExtraSetName(base, fam); have[n] {
			c.DelSet(&nftables.Set{Table: t, Name: n})
		}
	}
}
