package store

import (
	"net/netip"
	"testing"
)

// TestReleaseLease: one interface's lease goes, the same domain's other
// interface keeps its own, and releasing again is no error.
func TestReleaseLease(t *testing.T) {
	s := openT(t, t.TempDir())
	p := netip.MustParsePrefix("192.0.2.0/29")
	a, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, nil, Holder{UUID: uuidN(1), MAC: macN(1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, nil, Holder{UUID: uuidN(1), MAC: macN(2)})
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := s.ReleaseLease("lan", uuidN(1), macN(1))
	if err != nil || !ok || l.Addr != a {
		t.Fatalf("release %s: %+v %v %v", a, l, ok, err)
	}
	if _, ok, err := s.ReleaseLease("lan", uuidN(1), macN(1)); err != nil || ok {
		t.Fatalf("release twice: %v %v", ok, err)
	}
	ls, err := s.Leases("lan")
	if err != nil || len(ls) != 1 || ls[0].Addr != b {
		t.Fatalf("the other interface's lease: %+v %v", ls, err)
	}
	if _, ok, err := s.ReleaseLease("lan", uuidN(1), macN(2)); err != nil || !ok {
		t.Fatalf("last lease: %v %v", ok, err)
	}
	if freed, err := s.ReleaseLeases(uuidN(1)); err != nil || len(freed) != 0 {
		t.Fatalf("left: %+v %v", freed, err)
	}
	if bad, err := s.Check(); err != nil || len(bad) != 0 {
		t.Fatalf("store check: %v %v", bad, err)
	}
}
