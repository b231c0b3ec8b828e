package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ReleaseLease frees the lease one interface (domain UUID and MAC) holds
// in a network: a NIC that was hot-unplugged. None is success (ok false).
func (s *Store) ReleaseLease(network, domUUID, mac string) (Lease, bool, error) {
	h, err := normalizeHolder(Holder{UUID: domUUID, MAC: mac})
	if err != nil {
		return Lease{}, false, err
	}
	var out Lease
	var found bool
	err = s.update(func(tx *bolt.Tx) error {
		hb := tx.Bucket(bLeaseH).Bucket([]byte(h.UUID))
		if hb == nil {
			return nil
		}
		hkey := join(network, h.MAC)
		k := hb.Get(hkey)
		if k == nil {
			return nil
		}
		if nb := tx.Bucket(bLeases).Bucket([]byte(network)); nb != nil {
			if raw := nb.Get(k); raw != nil {
				var l Lease
				if err := json.Unmarshal(raw, &l); err != nil {
					return fmt.Errorf("lease %s: %w", network, err)
				}
				if l.Holder.UUID == h.UUID && l.Holder.MAC == h.MAC {
					out, found = l, true
					if err := nb.Delete(k); err != nil {
						return err
					}
				}
			}
		}
		if err := hb.Delete(hkey); err != nil {
			return err
		}
		if k, _ := hb.Cursor().First(); k == nil {
			return tx.Bucket(bLeaseH).DeleteBucket([]byte(h.UUID))
		}
		return nil
	})
	return out, found, err
}
