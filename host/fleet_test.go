package host

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/store"
)

// The address leased fleet-wide at define time comes from virtap's record:
// no fleet store is asked (host does not even link the etcd client), it is
// kept in this host's store, and it must lie in the pool.
func TestGuestAddressFromRecord(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := &Realiser{Store: st}
	pool, _ := ParsePool("198.51.100.0/24", "198.51.100.100-198.51.100.120", "198.51.100.1")
	g := &Guest{UUID: uuid.New(), Name: "web1"}
	ir := IfaceRecordAlias{MAC: "52:54:00:00:00:01", Network: "edge", Kind: "ipvtap", Addresses: "198.51.100.0/24", Range: "198.51.100.100-198.51.100.120", Leased: "198.51.100.117"}
	a, err := r.guestAddress(g, ir, pool)
	if err != nil || a.String() != "198.51.100.117" {
		t.Fatalf("leased in the record: %s, %v", a, err)
	}
	ls, _ := st.Leases("edge")
	if len(ls) != 1 || ls[0].Addr != a || ls[0].Holder.UUID != g.UUID.String() {
		t.Fatalf("local copy of the lease: %+v", ls)
	}
	other := &Guest{UUID: uuid.New(), Name: "web2"}
	if _, err := r.guestAddress(other, ir, pool); err == nil || !strings.Contains(err.Error(), "held on this host by another guest") {
		t.Fatalf("a second guest with the same recorded address: %v", err)
	}
	for _, bad := range []string{"198.51.100.1", "198.51.100.50", "203.0.113.5", "nope"} {
		ir.Leased = bad
		if _, err := r.guestAddress(g, ir, pool); err == nil || !strings.Contains(err.Error(), "re-provision") {
			t.Errorf("recorded address %s: %v; want refused", bad, err)
		}
	}
	ir.Leased, ir.Address = "198.51.100.7", "198.51.100.8"
	if _, err := r.guestAddress(g, ir, pool); err == nil || !strings.Contains(err.Error(), "fixes this guest's address") {
		t.Errorf("recorded address against the policy's fixed one: %v", err)
	}
}
