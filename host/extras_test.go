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

// Extra addresses outlive a stop like leases; gc frees them only for
// domains no longer defined.
func TestGCFreesExtrasOfUndefinedDomains(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.New(t)
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gone, kept := uuid.New(), uuid.New()
	for i, u := range []uuid.UUID{gone, kept} {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(50 + i)}), 32)
		if _, err := st.AddExtra(u.String(), "g", "52:54:00:00:00:01", "lan", p, 16); err != nil {
			t.Fatal(err)
		}
	}
	r := New(hclog.NewNullLogger(), netdev.New(nil, nil), st, paths.Roots{})
	notRunning := func(uuid.UUID) bool { return false }
	if _, err := r.GC(notRunning, nil, false); err != nil {
		t.Fatal(err)
	}
	if es, _ := st.AllExtras(); len(es) != 2 {
		t.Fatalf("gc without knowing defined domains freed extras: %+v", es)
	}
	acts, err := r.GC(notRunning, func(u uuid.UUID) bool { return u == kept }, false)
	if err != nil || len(acts) != 1 || acts[0].What != "extra" || acts[0].Name != "lan/192.0.2.50/32" {
		t.Fatalf("gc: %+v %v", acts, err)
	}
	if es, _ := st.AllExtras(); len(es) != 1 || es[0].UUID != kept.String() {
		t.Fatalf("extras after gc: %+v", es)
	}
}

func TestParsePrefixesExpand(t *testing.T) {
	ps, err := ParsePrefixes(" 192.0.2.48/30  2001:db8::50 ")
	if err != nil || len(ps) != 2 {
		t.Fatal(ps, err)
	}
	if as := ExpandAll(append(ps, ps[1])); len(as) != 5 {
		t.Errorf("ExpandAll = %v", as)
	}
	if _, err := ParsePrefixes("192.0.2.48/30 nope"); err == nil {
		t.Error("a bad record entry was accepted")
	}
}
