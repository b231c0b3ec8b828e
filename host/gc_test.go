package host

import (
	"net/netip"
	"testing"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// Leases outlive a stop; gc frees them only for domains no longer defined,
// and none when it cannot know (at boot, --no-libvirt).
func TestGCFreesLeasesOfUndefinedDomains(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.New(t)
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pool, err := ParsePool("198.51.100.0/24", "198.51.100.10-198.51.100.20", "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := uuid.New(), uuid.New()
	for _, u := range []uuid.UUID{gone, kept} {
		if _, err := LeaseAddress(st, "edge", pool, store.Holder{UUID: u.String(), MAC: "52:54:00:00:00:01"}); err != nil {
			t.Fatal(err)
		}
	}
	r := New(hclog.NewNullLogger(), netdev.New(nil, nil), st, paths.Roots{})
	notRunning := func(uuid.UUID) bool { return false }
	if _, err := r.GC(notRunning, nil, false); err != nil {
		t.Fatal(err)
	}
	if ls, _ := st.Leases("edge"); len(ls) != 2 {
		t.Fatalf("gc without knowing defined domains freed leases: %+v", ls)
	}
	acts, err := r.GC(notRunning, func(u uuid.UUID) bool { return u == kept }, true)
	if err != nil || len(acts) != 1 || acts[0].What != "lease" || acts[0].Domain != gone.String() {
		t.Fatalf("dry run: %+v %v", acts, err)
	}
	if _, err := r.GC(notRunning, func(u uuid.UUID) bool { return u == kept }, false); err != nil {
		t.Fatal(err)
	}
	ls, _ := st.Leases("edge")
	if len(ls) != 1 || ls[0].Holder.UUID != kept.String() || ls[0].Addr != netip.MustParseAddr("198.51.100.11") {
		t.Fatalf("leases after gc: %+v", ls)
	}
}
