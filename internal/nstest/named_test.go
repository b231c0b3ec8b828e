package nstest

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netns"
)

// A named namespace is reachable by name, holds only lo (up), leaves the
// caller where it was, and DeleteNamed removes it (twice is fine).
func TestNewNamed(t *testing.T) {
	RequireRoot(t)
	name := fmt.Sprintf("nstest%d", os.Getpid()%100000)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	ns, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		_ = DeleteNamed(name)
	})
	if !NamedExists(name) {
		t.Fatalf("%s/%s is not bound", NamedDir, name)
	}
	byName, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	if !byName.Equal(ns.Handle) || byName.Equal(before) {
		t.Fatal("the name does not refer to the new namespace")
	}
	links, err := ns.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("want only lo, up; have %d links", len(links))
	}
	now, _ := netns.Get()
	defer now.Close()
	if !now.Equal(before) {
		t.Fatal("NewNamed moved the caller's thread")
	}
	ns.Close()
	ns.Close()
	if err := DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	if NamedExists(name) {
		t.Fatal("still bound after DeleteNamed")
	}
	if err := DeleteNamed(name); err != nil {
		t.Fatalf("second DeleteNamed: %v", err)
	}
}
