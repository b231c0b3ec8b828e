package store

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Extra addresses (issue 16): addresses a guest interface may use besides
// its own, for containers nested in the guest. One record per interface,
// keyed uuid \x00 mac in the bucket "extras", which is made by the first
// write (a store made before it has none, and reads see no extras).
var bExtras = []byte("extras")

// Extra is one interface's extra addresses.
type Extra struct {
	UUID    string `json:"uuid"`
	Name    string `json:"name,omitempty"` // a label
	MAC     string `json:"mac"`
	Network string `json:"network"`
	// Prefixes, masked and sorted: "192.0.2.50/32", "2001:db8::40/124".
	Prefixes []string `json:"prefixes"`
}

// Size is how many addresses p covers (capped far above any sane limit).
func Size(p netip.Prefix) int {
	host := p.Addr().BitLen() - p.Bits()
	if host > 30 {
		return 1 << 30
	}
	return 1 << host
}

// Count is how many addresses the record's prefixes cover.
func (e Extra) Count() int {
	n := 0
	for _, s := range e.Prefixes {
		if p, err := netip.ParsePrefix(s); err == nil {
			n += Size(p)
		}
	}
	return n
}

// ExtraConflictError: the addresses overlap another guest's extras.
type ExtraConflictError struct {
	Prefix netip.Prefix
	Holder Extra // the other interface
	Other  string
}

func (e *ExtraConflictError) Error() string {
	return fmt.Sprintf("%s overlaps %s, an extra address of guest %s (%s) interface %s on network %q",
		e.Prefix, e.Other, e.Holder.Name, e.Holder.UUID, e.Holder.MAC, e.Holder.Network)
}

// ExtraCapError: the interface would hold more than its cap.
type ExtraCapError struct {
	Have, Add, Max int
}

func (e *ExtraCapError) Error() string {
	return fmt.Sprintf("the interface has %d extra addresses; %d more would exceed the network's max_extra_addresses = %d", e.Have, e.Add, e.Max)
}

// AddExtra gives an interface the addresses of p on network, in one
// transaction that checks that no other interface holds an overlapping
// one on that network and that the interface then holds at most max
// addresses. It reports false (and changes nothing) when the interface
// already holds exactly p.
func (s *Store) AddExtra(domUUID, name, mac, network string, p netip.Prefix, max int) (bool, error) {
	u, m, err := normalizeIface(domUUID, mac)
	if err != nil {
		return false, err
	}
	if !p.IsValid() || network == "" {
		return false, fmt.Errorf("extra address %v on network %q: invalid", p, network)
	}
	p = p.Masked()
	added := false
	err = s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bExtras)
		if err != nil {
			return err
		}
		mine := Extra{UUID: u, Name: name, MAC: m, Network: network}
		err = forExtras(b, func(e Extra) error {
			if e.UUID == u && e.MAC == m {
				mine = e
				return nil
			}
			if e.Network != network {
				return nil
			}
			for _, o := range e.Prefixes {
				if op, err := netip.ParsePrefix(o); err == nil && op.Overlaps(p) {
					return &ExtraConflictError{Prefix: p, Holder: e, Other: o}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, o := range mine.Prefixes {
			if o == p.String() {
				return nil
			}
		}
		if have := mine.Count(); have+Size(p) > max {
			return &ExtraCapError{Have: have, Add: Size(p), Max: max}
		}
		if name != "" {
			mine.Name = name
		}
		mine.Network = network
		mine.Prefixes = sortPrefixes(append(mine.Prefixes, p.String()))
		added = true
		return putJSON(b, join(u, m), mine)
	})
	return added, err
}

// DelExtra takes p back from an interface; false when it did not hold it.
func (s *Store) DelExtra(domUUID, mac string, p netip.Prefix) (bool, error) {
	u, m, err := normalizeIface(domUUID, mac)
	if err != nil {
		return false, err
	}
	p = p.Masked()
	found := false
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bExtras)
		if b == nil {
			return nil
		}
		e, ok, err := getExtra(b, join(u, m))
		if err != nil || !ok {
			return err
		}
		var keep []string
		for _, o := range e.Prefixes {
			if o == p.String() {
				found = true
				continue
			}
			keep = append(keep, o)
		}
		if !found {
			return nil
		}
		if len(keep) == 0 {
			return b.Delete(join(u, m))
		}
		e.Prefixes = keep
		return putJSON(b, join(u, m), e)
	})
	return found, err
}

// ExtrasOf lists one domain's extra addresses (every interface), sorted by
// MAC; AllExtras every domain's, sorted by UUID then MAC.
func (s *Store) ExtrasOf(domUUID string) ([]Extra, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	all, err := s.AllExtras()
	var out []Extra
	for _, e := range all {
		if e.UUID == u {
			out = append(out, e)
		}
	}
	return out, err
}

// AllExtras lists every interface's extra addresses.
func (s *Store) AllExtras() ([]Extra, error) {
	var out []Extra
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bExtras)
		if b == nil {
			return nil
		}
		return forExtras(b, func(e Extra) error { out = append(out, e); return nil })
	})
	return out, err
}

// ReleaseExtras forgets a domain's extra addresses (gc, once libvirt no
// longer knows the domain) and returns what it held.
func (s *Store) ReleaseExtras(domUUID string) ([]Extra, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	var out []Extra
	err = s.update(func(tx *bolt.Tx) error {
		var err error
		out, err = releaseExtras(tx, u)
		return err
	})
	return out, err
}

func releaseExtras(tx *bolt.Tx, u string) ([]Extra, error) {
	b := tx.Bucket(bExtras)
	if b == nil {
		return nil, nil
	}
	var out []Extra
	var keys [][]byte
	err := forExtras(b, func(e Extra) error {
		if e.UUID == u {
			out = append(out, e)
			keys = append(keys, join(e.UUID, e.MAC))
		}
		return nil
	})
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
	}
	return out, err
}

func forExtras(b *bolt.Bucket, fn func(Extra) error) error {
	return b.ForEach(func(k, v []byte) error {
		var e Extra
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("extra addresses %q: %w", k, err)
		}
		return fn(e)
	})
}

func getExtra(b *bolt.Bucket, k []byte) (Extra, bool, error) {
	v := b.Get(k)
	if v == nil {
		return Extra{}, false, nil
	}
	var e Extra
	if err := json.Unmarshal(v, &e); err != nil {
		return Extra{}, false, fmt.Errorf("extra addresses %q: %w", k, err)
	}
	return e, true, nil
}

func sortPrefixes(ps []string) []string {
	sort.Slice(ps, func(i, j int) bool {
		a, _ := netip.ParsePrefix(ps[i])
		b, _ := netip.ParsePrefix(ps[j])
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
	return ps
}
