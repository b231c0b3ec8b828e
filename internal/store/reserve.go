package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Holder is the guest interface that holds a device or an address.
type Holder struct {
	UUID string `json:"uuid"`
	MAC  string `json:"mac,omitempty"`
	Name string `json:"name,omitempty"` // a label for messages only
}

func (h Holder) String() string {
	var b strings.Builder
	if h.Name != "" {
		fmt.Fprintf(&b, "%q ", h.Name)
	}
	fmt.Fprintf(&b, "(uuid %s", h.UUID)
	if h.MAC != "" {
		fmt.Fprintf(&b, ", mac %s", h.MAC)
	}
	b.WriteString(")")
	return b.String()
}

func normalizeHolder(h Holder) (Holder, error) {
	var err error
	if h.UUID, err = NormalizeUUID(h.UUID); err != nil {
		return h, err
	}
	if h.MAC != "" {
		if h.MAC, err = NormalizeMAC(h.MAC); err != nil {
			return h, err
		}
	}
	return h, nil
}

// Reservation is one device of a pool held by one guest interface.
type Reservation struct {
	Pool   string    `json:"pool"`
	Device string    `json:"device"`
	Holder Holder    `json:"holder"`
	Since  time.Time `json:"since"`
	// Data is free-form state of the holder of the reservation, e.g. the VF
	// settings to restore on release (see AnnotateReservation).
	Data map[string]string `json:"data,omitempty"`
	// Boot is the kernel boot id when the device was reserved.
	Boot string `json:"boot,omitempty"`
}

// PoolExhaustedError says that no candidate device of a pool was free.
type PoolExhaustedError struct {
	Pool       string
	Candidates int               // free-looking devices offered to Reserve
	Holders    map[string]Holder // device -> holder, for the whole pool
	// Busy lists devices of the pool that the caller left out because
	// something other than virtap uses them (filled in by callers such as
	// the passthrough package).
	Busy []string
}

func (e *PoolExhaustedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device pool %q is exhausted", e.Pool)
	if len(e.Holders) == 0 && len(e.Busy) == 0 {
		b.WriteString(": it has no usable devices")
		return b.String()
	}
	devs := make([]string, 0, len(e.Holders))
	for d := range e.Holders {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	if len(devs) > 0 {
		fmt.Fprintf(&b, ": %d held by guests: ", len(devs))
		for i, d := range devs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s by %s", d, e.Holders[d])
		}
	}
	if len(e.Busy) > 0 {
		if len(devs) > 0 {
			b.WriteString(";")
		} else {
			b.WriteString(":")
		}
		fmt.Fprintf(&b, " %d in use outside virtap: %s", len(e.Busy), strings.Join(e.Busy, ", "))
	}
	return b.String()
}

// heldInOtherPool reports whether another pool holds device: two pools can
// name one device (a devices list naming a VF of another pool's PF), and
// the policy cannot see VF membership; devices are keyed by PCI address,
// so one look-up per pool finds it. Cost: O(pools).
func heldInOtherPool(tx *bolt.Tx, pool, device string) bool {
	held := false
	_ = tx.Bucket(bRes).ForEachBucket(func(k []byte) error {
		if string(k) != pool && tx.Bucket(bRes).Bucket(k).Get([]byte(device)) != nil {
			held = true
		}
		return nil
	})
	return held
}

// Reserve atomically gives holder h the first device of candidates that no
// one holds in pool, and returns it. If h (same UUID and MAC) already holds a
// device of the pool, that device is returned whatever candidates says, so a
// re-run hook gets the same answer. When no candidate is free the error is a
// *PoolExhaustedError. A device another pool holds is not free. Cost:
// O(len(candidates) x pools) key look-ups, independent of the number of
// other records.
func (s *Store) Reserve(pool string, candidates []string, h Holder) (string, error) {
	if err := checkName("pool", pool); err != nil {
		return "", err
	}
	h, err := normalizeHolder(h)
	if err != nil {
		return "", err
	}
	var got string
	err = s.update(func(tx *bolt.Tx) error {
		hkey := join(pool, h.MAC)
		if hb := tx.Bucket(bResH).Bucket([]byte(h.UUID)); hb != nil {
			if d := hb.Get(hkey); d != nil {
				got = string(d)
				return nil
			}
		}
		pb, err := tx.Bucket(bRes).CreateBucketIfNotExists([]byte(pool))
		if err != nil {
			return err
		}
		for _, c := range candidates {
			if c == "" || pb.Get([]byte(c)) != nil || heldInOtherPool(tx, pool, c) {
				continue
			}
			if err := checkName("device", c); err != nil {
				return err
			}
			r := Reservation{Pool: pool, Device: c, Holder: h, Since: s.now().UTC(), Boot: s.boot}
			if err := putJSON(pb, []byte(c), r); err != nil {
				return err
			}
			hb, err := tx.Bucket(bResH).CreateBucketIfNotExists([]byte(h.UUID))
			if err != nil {
				return err
			}
			got = c
			return hb.Put(hkey, []byte(c))
		}
		e := &PoolExhaustedError{Pool: pool, Candidates: len(candidates), Holders: map[string]Holder{}}
		err = pb.ForEach(func(k, v []byte) error {
			var r Reservation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			e.Holders[string(k)] = r.Holder
			return nil
		})
		if err != nil {
			return err
		}
		return e
	})
	if err != nil {
		return "", err
	}
	s.log.Debug("reserved device", "pool", pool, "device", got, "uuid", h.UUID, "mac", h.MAC)
	return got, nil
}

// ReservationOf returns the reservation that holder (uuid, mac) has in pool.
func (s *Store) ReservationOf(pool, domUUID, mac string) (Reservation, bool, error) {
	h, err := normalizeHolder(Holder{UUID: domUUID, MAC: mac})
	if err != nil {
		return Reservation{}, false, err
	}
	var (
		r  Reservation
		ok bool
	)
	err = s.view(func(tx *bolt.Tx) error {
		_, r, ok, err = heldReservation(tx, pool, h)
		return err
	})
	return r, ok, err
}

// HolderReservations returns all reservations of a domain, in every pool.
func (s *Store) HolderReservations(domUUID string) ([]Reservation, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	var out []Reservation
	err = s.view(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bResH).Bucket([]byte(u))
		if hb == nil {
			return nil
		}
		return hb.ForEach(func(k, v []byte) error {
			pool, _, _ := split2(k)
			r, ok, err := getReservation(tx, pool, string(v))
			if err == nil && ok {
				out = append(out, r)
			}
			return err
		})
	})
	return out, err
}

// AnnotateReservation merges data into the reservation of device in pool,
// which must be held by domUUID.
func (s *Store) AnnotateReservation(pool, device, domUUID string, data map[string]string) error {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		r, ok, err := getReservation(tx, pool, device)
		if err != nil {
			return err
		}
		if !ok || r.Holder.UUID != u {
			return fmt.Errorf("reservation of %s in pool %q by %s: %w", device, pool, u, ErrNotFound)
		}
		if r.Data == nil {
			r.Data = map[string]string{}
		}
		for k, v := range data {
			r.Data[k] = v
		}
		return putJSON(tx.Bucket(bRes).Bucket([]byte(pool)), []byte(device), r)
	})
}

// Release frees the device that holder (uuid, mac) holds in pool and
// returns that reservation; releasing nothing is not an error.
func (s *Store) Release(pool, domUUID, mac string) (Reservation, bool, error) {
	h, err := normalizeHolder(Holder{UUID: domUUID, MAC: mac})
	if err != nil {
		return Reservation{}, false, err
	}
	var (
		r  Reservation
		ok bool
	)
	err = s.update(func(tx *bolt.Tx) error {
		var device string
		device, r, ok, err = heldReservation(tx, pool, h)
		if err != nil || device == "" {
			return err
		}
		hb := tx.Bucket(bResH).Bucket([]byte(h.UUID))
		hkey := join(pool, h.MAC)
		if ok && r.Holder.UUID == h.UUID {
			if err := tx.Bucket(bRes).Bucket([]byte(pool)).Delete([]byte(device)); err != nil {
				return err
			}
		}
		if err := hb.Delete(hkey); err != nil {
			return err
		}
		return dropIfEmpty(tx.Bucket(bResH), []byte(h.UUID))
	})
	return r, ok, err
}

// ReleaseHolder frees every reservation of a domain, in every pool, and
// returns what it freed. Cost: O(reservations of that domain).
func (s *Store) ReleaseHolder(domUUID string) ([]Reservation, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return nil, err
	}
	var out []Reservation
	err = s.update(func(tx *bolt.Tx) error {
		out, err = releaseHolder(tx, u)
		return err
	})
	if err == nil && len(out) > 0 {
		s.log.Debug("released reservations", "uuid", u, "count", len(out))
	}
	return out, err
}

func releaseHolder(tx *bolt.Tx, u string) ([]Reservation, error) {
	resh := tx.Bucket(bResH)
	hb := resh.Bucket([]byte(u))
	if hb == nil {
		return nil, nil
	}
	var out []Reservation
	err := hb.ForEach(func(k, v []byte) error {
		pool, _, _ := split2(k)
		r, ok, err := getReservation(tx, pool, string(v))
		if err != nil {
			return err
		}
		if ok && r.Holder.UUID == u {
			out = append(out, r)
			return tx.Bucket(bRes).Bucket([]byte(pool)).Delete(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, resh.DeleteBucket([]byte(u))
}

// Reservations returns the reservations of a pool, sorted by device.
func (s *Store) Reservations(pool string) ([]Reservation, error) {
	var out []Reservation
	err := s.view(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bRes).Bucket([]byte(pool))
		if pb == nil {
			return nil
		}
		return pb.ForEach(func(k, v []byte) error {
			var r Reservation
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("reservation %s/%s: %w", pool, k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Pools returns the names of the pools that have or had reservations.
func (s *Store) Pools() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bRes).ForEach(func(k, v []byte) error {
			if v == nil {
				out = append(out, string(k))
			}
			return nil
		})
	})
	return out, err
}

func getReservation(tx *bolt.Tx, pool, device string) (Reservation, bool, error) {
	pb := tx.Bucket(bRes).Bucket([]byte(pool))
	if pb == nil {
		return Reservation{}, false, nil
	}
	v := pb.Get([]byte(device))
	if v == nil {
		return Reservation{}, false, nil
	}
	var r Reservation
	if err := json.Unmarshal(v, &r); err != nil {
		return Reservation{}, false, fmt.Errorf("reservation %s/%s: %w", pool, device, err)
	}
	return r, true, nil
}

func dropIfEmpty(parent *bolt.Bucket, name []byte) error {
	b := parent.Bucket(name)
	if b == nil {
		return nil
	}
	if k, _ := b.Cursor().First(); k == nil {
		return parent.DeleteBucket(name)
	}
	return nil
}

// heldReservation returns the device holder h holds in pool ("" when none)
// and that device's reservation (ok false when its record is missing).
func heldReservation(tx *bolt.Tx, pool string, h Holder) (string, Reservation, bool, error) {
	device, held := heldDevice(tx, pool, h)
	if !held {
		return "", Reservation{}, false, nil
	}
	r, ok, err := getReservation(tx, pool, device)
	return device, r, ok, err
}

// heldDevice looks up, in the holder index, the device holder h has in pool.
func heldDevice(tx *bolt.Tx, pool string, h Holder) (string, bool) {
	hb := tx.Bucket(bResH).Bucket([]byte(h.UUID))
	if hb == nil {
		return "", false
	}
	d := hb.Get(join(pool, h.MAC))
	if d == nil {
		return "", false
	}
	return string(d), true
}
