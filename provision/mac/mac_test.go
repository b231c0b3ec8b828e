package mac

import (
	"testing"
)

func TestDeriveIsStableLocalUnicast(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 5000; i++ {
		m := Derive("0b5f3c1e-4a5d-4d1e-9c7a-1f2e3d4c5b6a", i, 0, nil)
		if m[0]&1 != 0 || m[0]&2 == 0 {
			t.Fatalf("index %d: %s is not locally administered unicast", i, m)
		}
		if seen[m.String()] {
			t.Fatalf("index %d: %s repeats", i, m)
		}
		seen[m.String()] = true
		if again := Derive("0b5f3c1e-4a5d-4d1e-9c7a-1f2e3d4c5b6a", i, 0, nil); again.String() != m.String() {
			t.Fatalf("not deterministic: %s then %s", m, again)
		}
	}
	if Derive("a", 0, 0, nil).String() == Derive("b", 0, 0, nil).String() {
		t.Fatal("different seeds gave one MAC")
	}
	if Derive("a", 0, 0, nil).String() == Derive("a", 0, 1, nil).String() {
		t.Fatal("attempt does not change the MAC")
	}
}

func TestDeriveKeepsPrefix(t *testing.T) {
	p, err := ParsePrefix("52:54:00")
	if err != nil {
		t.Fatal(err)
	}
	m := Derive("guest", 1, 0, p)
	if m.String()[:8] != "52:54:00" {
		t.Fatalf("prefix lost: %s", m)
	}
	for _, bad := range []string{"01:00", "00:11:22", "52:54:00:11", "zz", "5:4"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

func TestNormalize(t *testing.T) {
	got, err := Normalize(" 52:54:00:AB:CD:EF ")
	if err != nil || got != "52:54:00:ab:cd:ef" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := Normalize("52:54:00"); err == nil {
		t.Fatal("short MAC accepted")
	}
}
