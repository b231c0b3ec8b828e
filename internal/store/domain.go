package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Interface states: the write-ahead intent protocol (see the package doc).
const (
	// StatePending: the record was written, the host change may not exist yet.
	StatePending = "pending"
	// StateReady: the host change exists.
	StateReady = "ready"
	// StateReleasing: the host change is being undone.
	StateReleasing = "releasing"
)

// Domain is what virtap made on this host for one guest.
type Domain struct {
	UUID       string    `json:"uuid"`
	Name       string    `json:"name,omitempty"` // a label only
	Interfaces []Iface   `json:"interfaces"`
	Updated    time.Time `json:"updated"`
	// Boot is the kernel boot id when the record was last written: a
	// record of another boot describes a guest that cannot be running.
	Boot string `json:"boot,omitempty"`
	// Seq is the store transaction that last wrote the record: gc keeps
	// a domain whose record is newer than its snapshot of libvirt.
	Seq uint64 `json:"seq,omitempty"`
}

// Iface is one guest interface, keyed by MAC within its domain.
type Iface struct {
	MAC     string `json:"mac"`
	Network string `json:"network,omitempty"` // policy network
	Kind    string `json:"kind,omitempty"`    // macvtap | ipvtap | bridge | passthrough
	Device  string `json:"device,omitempty"`  // host device made or reserved
	Parent  string `json:"parent,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Pool    string `json:"pool,omitempty"`
	// State is StatePending, StateReady or StateReleasing; empty means
	// StatePending (a record is an intent until marked ready).
	State string            `json:"state"`
	Extra map[string]string `json:"extra,omitempty"`
}

// PendingIface is an interface record whose host change is not known to
// exist (pending) or not known to be gone (releasing).
type PendingIface struct {
	UUID string
	Name string
	Iface
}

// NormalizeUUID returns the canonical lower-case form of a domain UUID.
func NormalizeUUID(s string) (string, error) {
	u, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("invalid domain uuid %q: %w", s, err)
	}
	return u.String(), nil
}

// NormalizeMAC returns the lower-case colon form of a MAC address.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("invalid mac %q", s)
	}
	return hw.String(), nil
}

// checkName rejects names that cannot be keys (empty, NUL, too long).
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(s) > 255 || strings.ContainsRune(s, 0) {
		return fmt.Errorf("invalid %s %q", what, s)
	}
	return nil
}

func validState(s string) bool {
	return s == StatePending || s == StateReady || s == StateReleasing
}

// PutIface inserts or replaces (by MAC) an interface of domain uuid and sets
// the domain's name label when name is not empty. An empty State is stored
// as StatePending.
func (s *Store) PutIface(domUUID, name string, ifc Iface) error {
	return s.PutIfaces(domUUID, name, []Iface{ifc})
}

// PutIfaces upserts several interface records of one domain in a single
// transaction (one fsync): the hook records interfaces that need no host
// change of their own (libvirt's macvtaps, bridges) this way.
func (s *Store) PutIfaces(domUUID, name string, ifcs []Iface) error {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return err
	}
	for i := range ifcs {
		ifc := &ifcs[i]
		if ifc.MAC, err = NormalizeMAC(ifc.MAC); err != nil {
			return err
		}
		if ifc.State == "" {
			ifc.State = StatePending
		}
		if !validState(ifc.State) {
			return fmt.Errorf("invalid interface state %q", ifc.State)
		}
		if ifc.Device != "" {
			if err := checkName("device", ifc.Device); err != nil {
				return err
			}
		}
	}
	if len(ifcs) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		d, _, err := getDomain(tx, u)
		if err != nil {
			return err
		}
		d.UUID = u
		if name != "" {
			d.Name = name
		}
		for _, ifc := range ifcs {
			replaced := false
			for i := range d.Interfaces {
				if d.Interfaces[i].MAC == ifc.MAC {
					unindexIface(tx, u, d.Interfaces[i])
					d.Interfaces[i] = ifc
					replaced = true
				}
			}
			if !replaced {
				d.Interfaces = append(d.Interfaces, ifc)
			}
			if err := indexIface(tx, u, ifc); err != nil {
				return err
			}
		}
		d.Updated, d.Boot, d.Seq = s.now().UTC(), s.boot, uint64(tx.ID())
		return putJSON(tx.Bucket(bDomains), []byte(u), d)
	})
}

// SetIfaceState moves an interface record to another state.
func (s *Store) SetIfaceState(domUUID, mac, state string) error {
	if !validState(state) {
		return fmt.Errorf("invalid interface state %q", state)
	}
	return s.modifyIface(domUUID, mac, func(ifc *Iface) { ifc.State = state })
}

// SetIfaceExtra merges values into an interface's Extra map.
func (s *Store) SetIfaceExtra(domUUID, mac string, extra map[string]string) error {
	return s.modifyIface(domUUID, mac, func(ifc *Iface) {
		if ifc.Extra == nil {
			ifc.Extra = map[string]string{}
		}
		for k, v := range extra {
			ifc.Extra[k] = v
		}
	})
}

// ErrNotFound is returned when a record that must exist does not.
var ErrNotFound = errors.New("not found")

func (s *Store) modifyIface(domUUID, mac string, fn func(*Iface)) error {
	u, m, err := normalizeIface(domUUID, mac)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		d, ok, err := getDomain(tx, u)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("domain %s: %w", u, ErrNotFound)
		}
		for i := range d.Interfaces {
			if d.Interfaces[i].MAC != m {
				continue
			}
			unindexIface(tx, u, d.Interfaces[i])
			fn(&d.Interfaces[i])
			if err := indexIface(tx, u, d.Interfaces[i]); err != nil {
				return err
			}
			d.Updated, d.Boot, d.Seq = s.now().UTC(), s.boot, uint64(tx.ID())
			return putJSON(tx.Bucket(bDomains), []byte(u), d)
		}
		return fmt.Errorf("interface %s of domain %s: %w", m, u, ErrNotFound)
	})
}

// RemoveIface deletes an interface record; the domain record goes with its
// last interface. Removing what is not there is not an error.
func (s *Store) RemoveIface(domUUID, mac string) error {
	u, m, err := normalizeIface(domUUID, mac)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		d, ok, err := getDomain(tx, u)
		if err != nil || !ok {
			return err
		}
		kept := d.Interfaces[:0]
		for _, ifc := range d.Interfaces {
			if ifc.MAC == m {
				unindexIface(tx, u, ifc)
				continue
			}
			kept = append(kept, ifc)
		}
		d.Interfaces = kept
		if len(d.Interfaces) == 0 {
			return tx.Bucket(bDomains).Delete([]byte(u))
		}
		d.Updated, d.Boot, d.Seq = s.now().UTC(), s.boot, uint64(tx.ID())
		return putJSON(tx.Bucket(bDomains), []byte(u), d)
	})
}

// GetDomain returns the record of one domain.
func (s *Store) GetDomain(domUUID string) (Domain, bool, error) {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return Domain{}, false, err
	}
	var (
		d  Domain
		ok bool
	)
	err = s.view(func(tx *bolt.Tx) error {
		d, ok, err = getDomain(tx, u)
		return err
	})
	return d, ok, err
}

// DeleteDomain removes a domain's record and its interfaces (not its
// reservations or leases: see Forget). Deleting what is not there is not an
// error.
func (s *Store) DeleteDomain(domUUID string) error {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return deleteDomain(tx, u) })
}

// Forget removes everything recorded for a domain in one transaction: its
// record, its reservations, its leases and its extra addresses.
func (s *Store) Forget(domUUID string) error {
	u, err := NormalizeUUID(domUUID)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := deleteDomain(tx, u); err != nil {
			return err
		}
		if _, err := releaseHolder(tx, u); err != nil {
			return err
		}
		if _, err := releaseExtras(tx, u); err != nil {
			return err
		}
		_, err := releaseLeases(tx, u)
		return err
	})
}

// Domains returns all domain records, sorted by UUID.
func (s *Store) Domains() ([]Domain, error) {
	var out []Domain
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bDomains).ForEach(func(k, v []byte) error {
			var d Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("domain record %s: %w", k, err)
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// Pending returns the interfaces whose state is not ready (from an index,
// without reading every domain), sorted by UUID then MAC.
func (s *Store) Pending() ([]PendingIface, error) {
	var out []PendingIface
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bPending).ForEach(func(k, _ []byte) error {
			u, m, _ := split2(k)
			d, ok, err := getDomain(tx, u)
			if err != nil || !ok {
				return err
			}
			for _, ifc := range d.Interfaces {
				if ifc.MAC == m {
					out = append(out, PendingIface{UUID: u, Name: d.Name, Iface: ifc})
				}
			}
			return nil
		})
	})
	return out, err
}

// DeviceOwner returns the domain and MAC whose interface record names a
// host device.
func (s *Store) DeviceOwner(device string) (domUUID, mac string, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bDevices).Get([]byte(device))
		if v != nil {
			domUUID, mac, _ = split2(v)
			ok = true
		}
		return nil
	})
	return domUUID, mac, ok, err
}

func getDomain(tx *bolt.Tx, u string) (Domain, bool, error) {
	v := tx.Bucket(bDomains).Get([]byte(u))
	if v == nil {
		return Domain{UUID: u}, false, nil
	}
	var d Domain
	if err := json.Unmarshal(v, &d); err != nil {
		return Domain{}, false, fmt.Errorf("domain record %s: %w", u, err)
	}
	return d, true, nil
}

func deleteDomain(tx *bolt.Tx, u string) error {
	d, ok, err := getDomain(tx, u)
	if err != nil || !ok {
		return err
	}
	for _, ifc := range d.Interfaces {
		unindexIface(tx, u, ifc)
	}
	return tx.Bucket(bDomains).Delete([]byte(u))
}

func indexIface(tx *bolt.Tx, u string, ifc Iface) error {
	key := join(u, ifc.MAC)
	if ifc.State != StateReady {
		if err := tx.Bucket(bPending).Put(key, []byte(ifc.State)); err != nil {
			return err
		}
	}
	if ifc.Device != "" {
		return tx.Bucket(bDevices).Put([]byte(ifc.Device), key)
	}
	return nil
}

// unindexIface drops the index entries of an interface; a device index entry
// is dropped only when it still points at this interface.
func unindexIface(tx *bolt.Tx, u string, ifc Iface) {
	key := join(u, ifc.MAC)
	_ = tx.Bucket(bPending).Delete(key)
	if ifc.Device != "" {
		b := tx.Bucket(bDevices)
		if string(b.Get([]byte(ifc.Device))) == string(key) {
			_ = b.Delete([]byte(ifc.Device))
		}
	}
}

// normalizeIface normalises the key of an interface record: domain UUID and MAC.
func normalizeIface(domUUID, mac string) (u, m string, err error) {
	if u, err = NormalizeUUID(domUUID); err != nil {
		return "", "", err
	}
	if m, err = NormalizeMAC(mac); err != nil {
		return "", "", err
	}
	return u, m, nil
}
