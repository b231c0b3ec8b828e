package nstest

import (
	"testing"

	"github.com/vishvananda/netns"
)

func TestNewEntersFreshNamespace(t *testing.T) {
	RequireRoot(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	ns := New(t)
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if now.Equal(before) {
		t.Fatal("New did not switch the thread into a new namespace")
	}
	if !now.Equal(ns.Handle) {
		t.Fatal("thread namespace is not the returned handle")
	}
	links, err := ns.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("fresh namespace should hold only lo, has %d links", len(links))
	}
}

func TestDoRunsInOtherNamespace(t *testing.T) {
	host := New(t)
	other := NewDetached(t)
	var inside netns.NsHandle
	if err := other.Do(func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(other.Handle) || inside.Equal(host.Handle) {
		t.Fatal("Do did not run in the given namespace")
	}
	cur, _ := netns.Get()
	defer cur.Close()
	if !cur.Equal(host.Handle) {
		t.Fatal("Do changed the caller's namespace")
	}
}

func TestSwitchedTopology(t *testing.T) {
	host := New(t)
	s := NewSwitched(t, host, true)
	if !s.Switch.Hairpin(t, s.SwitchPort) {
		t.Fatal("hairpin should be on")
	}
	s.SetHairpin(t, false)
	if s.Switch.Hairpin(t, s.SwitchPort) {
		t.Fatal("hairpin should be off")
	}
	up := host.Link(t, s.Uplink)
	if up.Attrs().OperState.String() == "down" {
		t.Fatal("uplink is down")
	}
	addrs, err := s.External.NL.AddrList(s.External.Link(t, s.ExtLink), 2)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(s.ExtIP) {
		t.Fatalf("external address: %v %v", addrs, err)
	}
	port := s.Switch.Link(t, s.SwitchPort)
	if port.Attrs().MasterIndex != s.Switch.Link(t, s.Bridge).Attrs().Index {
		t.Fatal("uplink's far end is not a bridge port")
	}
}
