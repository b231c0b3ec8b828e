package store

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// populate writes n reservations (pools of 64 devices, one holder each),
// n domain records and n leases, in batches.
func populate(tb testing.TB, s *Store, n int) {
	tb.Helper()
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				u, m := uuidN(1_000_000+i), macN(i)
				pool := fmt.Sprint("fill-", i/64)
				dev := fmt.Sprint("vf", i%64)
				pb, err := tx.Bucket(bRes).CreateBucketIfNotExists([]byte(pool))
				if err != nil {
					return err
				}
				h := Holder{UUID: u, MAC: m, Name: fmt.Sprint("guest-", i)}
				if err := putJSON(pb, []byte(dev), Reservation{Pool: pool, Device: dev, Holder: h, Since: time.Now()}); err != nil {
					return err
				}
				hb, err := tx.Bucket(bResH).CreateBucketIfNotExists([]byte(u))
				if err != nil {
					return err
				}
				if err := hb.Put(join(pool, m), []byte(dev)); err != nil {
					return err
				}
				ifc := Iface{MAC: m, Device: fmt.Sprint("vt", i), Network: "lan", State: StateReady}
				if err := putJSON(tx.Bucket(bDomains), []byte(u), Domain{UUID: u, Name: h.Name, Interfaces: []Iface{ifc}}); err != nil {
					return err
				}
				if err := indexIface(tx, u, ifc); err != nil {
					return err
				}
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				nb, err := tx.Bucket(bLeases).CreateBucketIfNotExists([]byte("fill"))
				if err != nil {
					return err
				}
				if err := putJSON(nb, addrKey(a), Lease{Network: "fill", Addr: a, Holder: h}); err != nil {
					return err
				}
				lh, err := tx.Bucket(bLeaseH).CreateBucketIfNotExists([]byte(u))
				if err != nil {
					return err
				}
				if err := lh.Put(join("fill", m), addrKey(a)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func reserveRelease(tb testing.TB, s *Store, i int) {
	h := Holder{UUID: uuidN(i % 1000), MAC: macN(i % 1000)}
	if _, err := s.Reserve("hot", helperPool, h); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.ReleaseHolder(h.UUID); err != nil {
		tb.Fatal(err)
	}
}

func benchReserveRelease(b *testing.B, n int, noSync bool) {
	s, err := Open(b.TempDir(), Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	populate(b, s, n)
	// Warm up as TestReserveReleaseScales does: the first transactions after
	// populate pay for faulting in the freshly written tree and growing
	// the freelist; comparing sizes with and without that is not fair.
	for i := 0; i < 200; i++ {
		reserveRelease(b, s, i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		reserveRelease(b, s, i)
	}
}

// With fsync, as the hook runs.
func BenchmarkReserveRelease100(b *testing.B)    { benchReserveRelease(b, 100, false) }
func BenchmarkReserveRelease100000(b *testing.B) { benchReserveRelease(b, 100_000, false) }

// Without fsync: the cost of the tree work alone, the stricter comparison.
func BenchmarkReserveReleaseNoSync100(b *testing.B)    { benchReserveRelease(b, 100, true) }
func BenchmarkReserveReleaseNoSync100000(b *testing.B) { benchReserveRelease(b, 100_000, true) }
