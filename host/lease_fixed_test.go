package host

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/store"
)

func TestLeaseForFixedAddress(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pool, _ := ParsePool("198.51.100.0/24", "198.51.100.100-198.51.100.101", "198.51.100.1")
	a := store.Holder{UUID: uuid.NewString(), MAC: "52:54:00:00:00:01"}
	b := store.Holder{UUID: uuid.NewString(), MAC: "52:54:00:00:00:01"}
	got, err := LeaseFor(st, "edge", pool, "198.51.100.7", a)
	if err != nil || got.String() != "198.51.100.7" {
		t.Fatalf("fixed: %v %v", got, err)
	}
	if again, err := LeaseFor(st, "edge", pool, "198.51.100.7", a); err != nil || again != got {
		t.Fatalf("fixed again: %v %v", again, err)
	}
	if _, err := LeaseFor(st, "edge", pool, "198.51.100.7", b); err == nil || !strings.Contains(err.Error(), "leased to another guest") {
		t.Fatalf("a second guest took a fixed address: %v", err)
	}
	if dyn, err := LeaseFor(st, "edge", pool, "", b); err != nil || dyn.String() != "198.51.100.100" {
		t.Fatalf("dynamic: %v %v", dyn, err)
	}
}
