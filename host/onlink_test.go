package host

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// TestOnLinkFilters: the responder's filters on a lower are found, made
// once per address, removed per address and all with the responder, and a
// filter that is not virtap's stays. (The reach itself needs ipvlan: the
// test host VM's TestOnLink.)
func TestOnLinkFilters(t *testing.T) {
	hn := nstest.New(t)
	hn.Veth(t, "up0", "up0p", nil)
	st, err := store.Open(filepath.Join(t.TempDir(), "state"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(hclog.NewNullLogger(), netdev.New(nil, hn.NL), st, paths.Roots{})
	up := hn.Link(t, "up0")
	// Someone else's filter on the lower, at another priority.
	ingress := netlink.MakeHandle(0xffff, 0)
	if err := hn.NL.QdiscAdd(&netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: up.Attrs().Index, Handle: ingress, Parent: netlink.HANDLE_INGRESS}}); err != nil {
		t.Fatal(err)
	}
	if err := hn.NL.FilterAdd(&netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: up.Attrs().Index, Parent: ingress, Priority: 7, Protocol: unix.ETH_P_ARP},
		Actions: []netlink.Action{netlink.NewMirredAction(hn.Link(t, "up0p").Attrs().Index)}}); err != nil {
		t.Fatal(err)
	}
	undo := &revert{}
	a, b, err := r.ensureResponder("up0", undo)
	if err != nil {
		t.Fatal(err)
	}
	if b.Attrs().HardwareAddr.String() != up.Attrs().HardwareAddr.String() {
		t.Errorf("responder B has MAC %s, want the lower's %s", b.Attrs().HardwareAddr, up.Attrs().HardwareAddr)
	}
	addrs := []netip.Addr{netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("2001:db8:21::21")}
	for i := 0; i < 2; i++ { // twice: idempotent
		for _, ad := range addrs {
			made, err := r.answerFor("up0", "up0p", a, b, ad)
			if err != nil || made != (i == 0) {
				t.Fatalf("answerFor %s, run %d: made %v, %v", ad, i, made, err)
			}
		}
	}
	ours, _, err := r.ourFilters("up0", a.Attrs().Index)
	if err != nil || len(ours) != 2 || filterTarget(ours[0]) == filterTarget(ours[1]) {
		t.Fatalf("virtap's filters on up0: %v, %v; want one per address", ours, err)
	}
	pn, _ := hn.NL.NeighProxyList(b.Attrs().Index, netlink.FAMILY_V4)
	pn6, _ := hn.NL.NeighProxyList(b.Attrs().Index, netlink.FAMILY_V6)
	if pn = append(pn, pn6...); len(pn) != 2 {
		t.Errorf("proxy entries on %s: %v, want 2", b.Attrs().Name, pn)
	}
	if err := r.stopAnswering("up0", addrs[0]); err != nil {
		t.Fatal(err)
	}
	if ours, _, _ = r.ourFilters("up0", a.Attrs().Index); len(ours) != 1 || filterTarget(ours[0]) != addrs[1] {
		t.Errorf("after stopping %s: %v", addrs[0], ours)
	}
	if err := r.dropResponder("up0"); err != nil {
		t.Fatal(err)
	}
	if _, err := hn.NL.LinkByName(a.Attrs().Name); err == nil {
		t.Errorf("responder survived dropResponder")
	}
	fs, err := hn.NL.FilterList(up, ingress)
	if err != nil || len(fs) != 1 || fs[0].Attrs().Priority != 7 || fs[0].Attrs().Protocol != unix.ETH_P_ARP {
		t.Errorf("filters left on up0: %+v, %v; want only the foreign one", fs, err)
	}
	// A responder no record uses (a crash after the records went): gc.
	if a, b, err = r.ensureResponder("up0", &revert{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.answerFor("up0", "up0p", a, b, addrs[0]); err != nil {
		t.Fatal(err)
	}
	acts, err := r.GC(func(uuid.UUID) bool { return false }, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.NL.LinkByName(a.Attrs().Name); err == nil || len(acts) != 1 || acts[0].What != "onlink" {
		t.Errorf("gc left the unused responder (actions %+v)", acts)
	}
	if fs, _ := hn.NL.FilterList(up, ingress); len(fs) != 1 {
		t.Errorf("gc left filters: %+v", fs)
	}
}
