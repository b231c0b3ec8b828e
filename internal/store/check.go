package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Check verifies the database pages (bbolt's own check), that every record
// decodes, and that the indexes agree with the records both ways. It returns
// one line per problem; none means consistent.
func (s *Store) Check() ([]string, error) {
	var problems []string
	err := s.view(func(tx *bolt.Tx) error {
		// bbolt's Check reads pages in a goroutine of its own, where a
		// page past the end of a damaged file faults fatally (no
		// SetPanicOnFault there). Touch every reachable page here first,
		// in this guarded goroutine, so such a file is a CorruptError.
		if err := touchAll(tx); err != nil {
			return err
		}
		for err := range tx.Check() {
			problems = append(problems, "page: "+err.Error())
		}
		want, bad, err := derive(tx)
		if err != nil {
			return err
		}
		problems = append(problems, bad...)
		for _, name := range [][]byte{bDevices, bPending} {
			problems = append(problems, diffFlat(string(name), tx.Bucket(name), want.flat[string(name)])...)
		}
		for _, name := range [][]byte{bResH, bLeaseH} {
			problems = append(problems, diffNested(string(name), tx.Bucket(name), want.nested[string(name)])...)
		}
		return nil
	})
	return problems, err
}

// Repair rebuilds every index from the primary records (domains,
// reservations, leases), dropping records that do not decode. It returns the
// problems Check saw before the repair.
func (s *Store) Repair() ([]string, error) {
	problems, err := s.Check()
	if err != nil || len(problems) == 0 {
		return problems, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		want, _, err := derive(tx)
		if err != nil {
			return err
		}
		for _, d := range want.undecodable {
			b := tx.Bucket(d.bucket[0])
			for _, name := range d.bucket[1:] {
				if b != nil {
					b = b.Bucket(name)
				}
			}
			if b == nil {
				continue
			}
			if err := b.Delete(d.key); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bDevices, bPending, bResH, bLeaseH} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			b, err := tx.CreateBucket(name)
			if err != nil {
				return err
			}
			for k, v := range want.flat[string(name)] {
				if err := b.Put([]byte(k), []byte(v)); err != nil {
					return err
				}
			}
			for sub, kv := range want.nested[string(name)] {
				sb, err := b.CreateBucket([]byte(sub))
				if err != nil {
					return err
				}
				for k, v := range kv {
					if err := sb.Put([]byte(k), []byte(v)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err == nil {
		s.log.Info("repaired state indexes", "problems", len(problems))
	}
	return problems, err
}

type badRecord struct {
	bucket [][]byte
	key    []byte
}

type derived struct {
	flat        map[string]map[string]string
	nested      map[string]map[string]map[string]string
	undecodable []badRecord
}

// derive computes what the indexes must hold from the primary records.
func derive(tx *bolt.Tx) (derived, []string, error) {
	w := derived{
		flat:   map[string]map[string]string{string(bDevices): {}, string(bPending): {}},
		nested: map[string]map[string]map[string]string{string(bResH): {}, string(bLeaseH): {}},
	}
	var problems []string
	err := tx.Bucket(bDomains).ForEach(func(k, v []byte) error {
		var d Domain
		if err := json.Unmarshal(v, &d); err != nil || d.UUID != string(k) {
			problems = append(problems, fmt.Sprintf("domains/%s: undecodable or mismatched record", k))
			w.undecodable = append(w.undecodable, badRecord{bucket: [][]byte{bDomains}, key: append([]byte(nil), k...)})
			return nil
		}
		for _, ifc := range d.Interfaces {
			key := string(join(d.UUID, ifc.MAC))
			if ifc.State != StateReady {
				w.flat[string(bPending)][key] = ifc.State
			}
			if ifc.Device != "" {
				w.flat[string(bDevices)][ifc.Device] = key
			}
		}
		return nil
	})
	if err != nil {
		return w, nil, err
	}
	add := func(index, sub, k, v string) {
		m := w.nested[index]
		if m[sub] == nil {
			m[sub] = map[string]string{}
		}
		m[sub][k] = v
	}
	err = tx.Bucket(bRes).ForEach(func(pool, v []byte) error {
		if v != nil {
			return nil
		}
		pb := tx.Bucket(bRes).Bucket(pool)
		return pb.ForEach(func(dev, v []byte) error {
			var r Reservation
			if err := json.Unmarshal(v, &r); err != nil || r.Holder.UUID == "" {
				problems = append(problems, fmt.Sprintf("res/%s/%s: undecodable record", pool, dev))
				w.undecodable = append(w.undecodable, badRecord{bucket: [][]byte{bRes, append([]byte(nil), pool...)}, key: append([]byte(nil), dev...)})
				return nil
			}
			add(string(bResH), r.Holder.UUID, string(join(string(pool), r.Holder.MAC)), string(dev))
			return nil
		})
	})
	if err != nil {
		return w, nil, err
	}
	err = tx.Bucket(bLeases).ForEach(func(network, v []byte) error {
		if v != nil {
			return nil
		}
		nb := tx.Bucket(bLeases).Bucket(network)
		return nb.ForEach(func(addr, v []byte) error {
			var l Lease
			if err := json.Unmarshal(v, &l); err != nil || l.Holder.UUID == "" {
				problems = append(problems, fmt.Sprintf("leases/%s/%x: undecodable record", network, addr))
				w.undecodable = append(w.undecodable, badRecord{bucket: [][]byte{bLeases, append([]byte(nil), network...)}, key: append([]byte(nil), addr...)})
				return nil
			}
			add(string(bLeaseH), l.Holder.UUID, string(join(string(network), l.Holder.MAC)), string(addr))
			return nil
		})
	})
	return w, problems, err
}

func diffFlat(name string, b *bolt.Bucket, want map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	_ = b.ForEach(func(k, v []byte) error {
		seen[string(k)] = true
		if w, ok := want[string(k)]; !ok {
			out = append(out, fmt.Sprintf("%s/%q: index entry without a record", name, k))
		} else if w != string(v) {
			out = append(out, fmt.Sprintf("%s/%q: index says %q, record says %q", name, k, v, w))
		}
		return nil
	})
	for k := range want {
		if !seen[k] {
			out = append(out, fmt.Sprintf("%s/%q: record without an index entry", name, k))
		}
	}
	return out
}

func diffNested(name string, b *bolt.Bucket, want map[string]map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	_ = b.ForEach(func(sub, v []byte) error {
		sb := b.Bucket(sub)
		if sb == nil {
			out = append(out, fmt.Sprintf("%s/%s: value where a bucket belongs", name, sub))
			return nil
		}
		seen[string(sub)] = true
		out = append(out, diffFlat(name+"/"+string(sub), sb, want[string(sub)])...)
		return nil
	})
	for sub, kv := range want {
		if !seen[sub] {
			for k := range kv {
				out = append(out, fmt.Sprintf("%s/%s/%q: record without an index entry", name, sub, k))
			}
		}
	}
	return out
}

// touchAll reads every key and value of every bucket, nested ones too, so
// that every page reachable from the root (branch, leaf, overflow) is read.
func touchAll(tx *bolt.Tx) error {
	var sink byte
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return walk(nb)
				}
				return nil
			}
			for i := 0; i < len(v); i += 1024 {
				sink ^= v[i]
			}
			return nil
		})
	}
	err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	_ = sink
	return err
}
