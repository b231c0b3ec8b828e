package host

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
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

// The hook path: at start the filter's sets hold the store's extras and
// those the record brought (imported into the store first); ChangeExtras
// takes one back at once.
func TestStartAppliesStoredAndRecordedExtras(t *testing.T) {
	f := newFixture(t)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x09}
	f.libvirtMacvtap(t, "macvtap9", mac)
	g := f.liveGuest(t, mac, "macvtap9", "untrusted")
	g.Doc.Record.Interfaces[0].Added = "192.0.2.51/32"
	if _, err := f.r.Store.AddExtra(f.dom.String(), "web", mac.String(), "lan", netip.MustParsePrefix("192.0.2.50/32"), 16); err != nil {
		t.Fatal(err)
	}
	if err := f.r.importExtras(g); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Starting(g); err != nil {
		t.Fatal(err)
	}
	got, err := f.fm.Extras(f.dom, mac)
	if err != nil || fmt.Sprint(got) != "[192.0.2.50 192.0.2.51]" {
		t.Fatalf("filter extras = %v, %v", got, err)
	}
	es, _ := f.r.Store.ExtrasOf(f.dom.String())
	if len(es) != 1 || strings.Join(es[0].Prefixes, " ") != "192.0.2.50/32 192.0.2.51/32" {
		t.Fatalf("the record's extra was not imported into the store: %+v", es)
	}
	// Another guest's record bringing the same address is refused.
	other := f.liveGuest(t, net.HardwareAddr{0x52, 0x54, 0x00, 0x31, 0x00, 0x0a}, "macvtap9", "untrusted")
	other.UUID = uuid.New()
	other.Doc.Record.Interfaces[0].Added = "192.0.2.50/32"
	if err := f.r.importExtras(other); err == nil || !strings.Contains(err.Error(), "192.0.2.50") {
		t.Errorf("another guest's record took 192.0.2.50: %v", err)
	}
	if err := ChangeExtras(f.r.Log, f.r.Net.Handle(), f.dom, g.Doc.Record.Interfaces[0], "macvtap9", []netip.Addr{netip.MustParseAddr("192.0.2.50")}, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.fm.Extras(f.dom, mac); fmt.Sprint(got) != "[192.0.2.51]" {
		t.Errorf("after ChangeExtras del: %v", got)
	}
	// After a firewall reload (the table gone) the reconnect hook and gc
	// call Started: the filter comes back with what the store holds.
	if err := f.fm.Remove(f.dom); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Started(g); err != nil {
		t.Fatal(err)
	}
	if got, err := f.fm.Extras(f.dom, mac); err != nil || fmt.Sprint(got) != "[192.0.2.50 192.0.2.51]" {
		t.Errorf("after the filter came back: %v, %v", got, err)
	}
}

// An address another guest holds (own, fixed, leased, extra, added) is
// refused; the interface's own claims are not a conflict.
func TestConflictWithOtherGuests(t *testing.T) {
	me, other := uuid.New(), uuid.New()
	rec := func(ir domain.IfaceRecord) *domain.Record {
		return &domain.Record{Interfaces: []domain.IfaceRecord{ir}}
	}
	claims := append(ClaimsOfRecord("me", me, rec(domain.IfaceRecord{MAC: "52:54:00:00:00:01", Network: "lan", Fixed: "192.0.2.10", Added: "192.0.2.50/32"})),
		ClaimsOfRecord("other", other, rec(domain.IfaceRecord{MAC: "52:54:00:00:00:02", Network: "lan", Fixed: "192.0.2.11", Extra: "192.0.2.64/30", Address: "192.0.2.12"}))...)
	p := netip.MustParsePrefix
	for pfx, want := range map[string]string{
		"192.0.2.50/32":  "",        // mine already
		"192.0.2.10/32":  "",        // my own fixed address
		"192.0.2.11/32":  "fixed",   // the other's fixed address
		"192.0.2.12/32":  "address", // the other's pool address
		"192.0.2.66/32":  "extra",   // inside the other's extra prefix
		"192.0.2.64/28":  "extra",   // covers it
		"192.0.2.200/32": "",        // free
	} {
		err := Conflict(p(pfx), "lan", me.String(), "52:54:00:00:00:01", claims)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) || err != nil && !strings.Contains(err.Error(), "other") {
			t.Errorf("%s: %v, want %q", pfx, err, want)
		}
	}
	if err := Conflict(p("192.0.2.11/32"), "wan", me.String(), "52:54:00:00:00:01", claims); err != nil {
		t.Errorf("another network's claim conflicted: %v", err)
	}
}
