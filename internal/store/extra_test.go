package store

import (
	"errors"
	"net/netip"
	"testing"
)

func TestExtras(t *testing.T) {
	s := openT(t, t.TempDir())
	const a, b = "0b4c1c62-56e6-4a41-8f55-4f0b2f2f6a01", "0b4c1c62-56e6-4a41-8f55-4f0b2f2f6a02"
	const macA, macB = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
	pfx := netip.MustParsePrefix
	if got, err := s.AllExtras(); err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v %v", got, err)
	}
	if ok, err := s.AddExtra(a, "web", macA, "lan", pfx("192.0.2.50/32"), 16); err != nil || !ok {
		t.Fatalf("add: %v %v", ok, err)
	}
	if ok, err := s.AddExtra(a, "web", macA, "lan", pfx("192.0.2.50/32"), 16); err != nil || ok {
		t.Fatalf("add again: %v %v, want false, nil", ok, err)
	}
	var ce *ExtraConflictError
	if _, err := s.AddExtra(b, "db", macB, "lan", pfx("192.0.2.48/28"), 16); !errors.As(err, &ce) {
		t.Fatalf("overlap with another guest's: %v", err)
	}
	if ok, err := s.AddExtra(b, "db", macB, "other", pfx("192.0.2.48/28"), 16); err != nil || !ok {
		t.Fatalf("same addresses on another network: %v %v", ok, err)
	}
	var capErr *ExtraCapError
	if _, err := s.AddExtra(a, "web", macA, "lan", pfx("2001:db8::40/124"), 16); !errors.As(err, &capErr) || capErr.Have != 1 || capErr.Add != 16 {
		t.Fatalf("over the cap: %v", err)
	}
	if ok, err := s.AddExtra(a, "web", macA, "lan", pfx("2001:db8::51/128"), 16); err != nil || !ok {
		t.Fatal(err)
	}
	got, err := s.ExtrasOf(a)
	if err != nil || len(got) != 1 || len(got[0].Prefixes) != 2 || got[0].Prefixes[0] != "192.0.2.50/32" || got[0].Count() != 2 {
		t.Fatalf("ExtrasOf = %+v, %v", got, err)
	}
	if ok, err := s.DelExtra(a, macA, pfx("192.0.2.50/32")); err != nil || !ok {
		t.Fatalf("del: %v %v", ok, err)
	}
	if ok, err := s.DelExtra(a, macA, pfx("192.0.2.50/32")); err != nil || ok {
		t.Fatalf("del again: %v %v", ok, err)
	}
	if err := s.Forget(a); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ExtrasOf(a); len(got) != 0 {
		t.Errorf("Forget left %+v", got)
	}
	if rel, err := s.ReleaseExtras(b); err != nil || len(rel) != 1 {
		t.Errorf("ReleaseExtras = %+v, %v", rel, err)
	}
	if got, _ := s.AllExtras(); len(got) != 0 {
		t.Errorf("left: %+v", got)
	}
}
