package netdev

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/virtap/virtap/internal/nstest"
)

// TestDeleteStaleProbes: probe devices of dead processes (and with no pid)
// go; a live probe's and a non-probe device stay.
func TestDeleteStaleProbes(t *testing.T) {
	ns := nstest.New(t)
	s := nstest.NewSwitched(t, ns, false)
	// A pid that surely is gone: a child that has exited and been reaped.
	c := exec.Command("/bin/true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid
	m := New(testLogger(t), ns.NL)
	mk := func(name, id string) {
		t.Helper()
		if _, err := m.Create(Spec{Name: name, Kind: KindMacvtap, Parent: s.Uplink, Mode: "vepa",
			Tag: PurposeTag(ProbePurpose, id), Index: nstest.FreshIndex()}); err != nil {
			t.Fatal(err)
		}
	}
	mk("vtprbdeada", fmt.Sprintf("%d-00000001", dead))
	mk("vtprbdeadb", fmt.Sprintf("%d-00000001", dead))
	mk("vtprbnopid", "garbage")
	mk("vtprblivea", fmt.Sprintf("%d-00000002", os.Getpid())) // a running probe: keep
	if _, err := m.Create(Spec{Name: "shim0", Kind: KindMacvlan, Parent: s.Uplink, Mode: "bridge",
		Tag: PurposeTag("shim", "x")}); err != nil {
		t.Fatal(err)
	}
	removed, err := m.DeleteStaleProbes()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(sorted(removed), ",")
	if got != "vtprbdeada,vtprbdeadb,vtprbnopid" {
		t.Fatalf("removed %q", got)
	}
	if left := strings.Join(sorted(probeLinks(t, ns)), ","); left != "vtprblivea" {
		t.Fatalf("left %q", left)
	}
	if _, ok, _ := m.Find("shim0"); !ok {
		t.Fatal("non-probe device removed")
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// probeLinks lists the probe devices in ns.
func probeLinks(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	links, err := ns.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "vtprb") || strings.HasPrefix(l.Attrs().Alias, "virtap:probe:") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}
