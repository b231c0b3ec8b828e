package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/virtap/virtap/internal/ipam"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Lease is one address of an IP pool held by one guest interface.
type Lease struct {
	Network string     `json:"network"`
	Addr    netip.Addr `json:"addr"`
	Holder  Holder     `json:"holder"`
	Since   time.Time  `json:"since"`
}

// AddressesExhaustedError says that an IP pool has no free address left.
type AddressesExhaustedError struct {
	Network    string
	Prefix     netip.Prefix
	First      netip.Addr
	Last       netip.Addr
	Leased     int
	Excluded   int
	Unassigned bool // the range holds no assignable address at all
}

func (e *AddressesExhaustedError) Error() string {
	if e.Unassigned {
		return fmt.Sprintf("network %q: the range %s-%s of %s holds no assignable address", e.Network, e.First, e.Last, e.Prefix)
	}
	return fmt.Sprintf("network %q: no free address in %s-%s of %s (%d leased, %d excluded)",
		e.Network, e.First, e.Last, e.Prefix, e.Leased, e.Excluded)
}

func addrKey(a netip.Addr) []byte {
	k := a.As16()
	return k[:]
}

func keyAddr(k []byte, is4 bool) netip.Addr {
	var a16 [16]byte
	copy(a16[:], k)
	a := netip.AddrFrom16(a16)
	if is4 {
		return a.Unmap()
	}
	return a
}

// Lease gives holder h (its UUID and MAC) an address of network from prefix,
// within [rangeStart, rangeEnd] when those are valid, never one of exclude.
// The same holder always gets the same address back while its lease lasts
// and the address is still inside the range and not excluded. Allocation is
// lowest-free-first and reads only the leases of that network.
func (s *Store) Lease(network string, prefix netip.Prefix, rangeStart, rangeEnd netip.Addr, exclude []netip.Addr, h Holder) (netip.Addr, error) {
	if err := checkName("network", network); err != nil {
		return netip.Addr{}, err
	}
	if !prefix.IsValid() {
		return netip.Addr{}, fmt.Errorf("network %q: invalid prefix", network)
	}
	h, err := normalizeHolder(h)
	if err != nil {
		return netip.Addr{}, err
	}
	prefix = prefix.Masked()
	first, last, err := ipam.LeaseRange(prefix, rangeStart, rangeEnd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("network %q: %w", network, err)
	}
	excluded := map[netip.Addr]bool{}
	for _, a := range exclude {
		excluded[a.Unmap()] = true
	}
	is4 := prefix.Addr().Is4()
	var got netip.Addr
	err = s.update(func(tx *bolt.Tx) error {
		nb, err := tx.Bucket(bLeases).CreateBucketIfNotExists([]byte(network))
		if err != nil {
			return err
		}
		hb, err := tx.Bucket(bLeaseH).CreateBucketIfNotExists([]byte(h.UUID))
		if err != nil {
			return err
		}
		hkey := join(network, h.MAC)
		if k := hb.Get(hkey); k != nil {
			a := keyAddr(k, is4)
			if a.Compare(first) >= 0 && a.Compare(last) <= 0 && !excluded[a] {
				got = a
				return nil
			}
			// The policy moved: give the old address back.
			if err := nb.Delete(k); err != nil {
				return err
			}
		}
		if first.Compare(last) > 0 {
			return &AddressesExhaustedError{Network: network, Prefix: prefix, First: first, Last: last, Unassigned: true}
		}
		c := nb.Cursor()
		k, _ := c.Seek(addrKey(first))
		cand, leased, nex := first, 0, 0
		for {
			for k != nil && bytes.Compare(k, addrKey(cand)) < 0 {
				k, _ = c.Next()
			}
			switch {
			case k != nil && bytes.Equal(k, addrKey(cand)):
				leased++
			case excluded[cand]:
				nex++
			default:
				got = cand
				l := Lease{Network: network, Addr: cand, Holder: h, Since: s.now().UTC()}
				if err := putJSON(nb, addrKey(cand), l); err != nil {
					return err
				}
				return hb.Put(hkey, addrKey(cand))
			}
			if cand == last {
				return &AddressesExhaustedError{Network: network, Prefix: prefix, First: first, Last: last, Leased: leased, Excluded: nex}
			}
			cand = cand.Next()
		}
	})
	if err != nil {
		return netip.Addr{}, err
	}
	s.log.Debug("leased address", "network", network, "addr", got.String(), "uuid", h.UUID, "mac", h.MAC)
	return got, nil
}

// ReleaseLeases frees every lease of a domain and returns what it freed.
func (s *Store) ReleaseLeases(domUUID string) ([]Lease, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	var out []Lease
	err = s.update(func(tx *bolt.Tx) error {
		out, err = releaseLeases(tx, u)
		return err
	})
	return out, err
}

func releaseLeases(tx *bolt.Tx, u string) ([]Lease, error) {
	lh := tx.Bucket(bLeaseH)
	hb := lh.Bucket([]byte(u))
	if hb == nil {
		return nil, nil
	}
	var out []Lease
	err := hb.ForEach(func(k, v []byte) error {
		network, _, _ := split2(k)
		nb := tx.Bucket(bLeases).Bucket([]byte(network))
		if nb == nil {
			return nil
		}
		raw := nb.Get(v)
		if raw == nil {
			return nil
		}
		var l Lease
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("lease %s: %w", network, err)
		}
		if l.Holder.UUID != u {
			return nil
		}
		out = append(out, l)
		return nb.Delete(v)
	})
	if err != nil {
		return nil, err
	}
	return out, lh.DeleteBucket([]byte(u))
}

// Leases returns the leases of a network, sorted by address.
func (s *Store) Leases(network string) ([]Lease, error) {
	var out []Lease
	err := s.view(func(tx *bolt.Tx) error {
		nb := tx.Bucket(bLeases).Bucket([]byte(network))
		if nb == nil {
			return nil
		}
		return nb.ForEach(func(k, v []byte) error {
			var l Lease
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("lease %s: %w", network, err)
			}
			out = append(out, l)
			return nil
		})
	})
	return out, err
}

// LeaseNetworks lists the networks that have (or had) leases.
func (s *Store) LeaseNetworks() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bLeases).ForEach(func(k, v []byte) error {
			if v == nil {
				out = append(out, string(k))
			}
			return nil
		})
	})
	return out, err
}
