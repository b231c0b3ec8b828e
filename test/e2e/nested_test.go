package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/provision/domain"
	"github.com/virtap/virtap/test/harness"
)

// TestVirtapNestedAddress is issue 16 end to end: a guest on an untrusted
// macvtap has a second address on its NIC (one MAC, two IPs: how a
// container nested on ipvlan l2 looks on the wire) and pings the external
// host from it every second (ping -I SECOND). Dropped by the anti-spoofing
// filter at first; after `virtap addr add` it gets through within seconds,
// without a restart; after a guest restart still; after `virtap addr del`
// it is dropped again. The guest's own address reaches the external host
// throughout (the honest twin). Bad requests change nothing.
func TestVirtapNestedAddress(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 1, false)
	w := harness.NewVirtapWiring(v)
	nw := topo.Prefix + "-nested"
	w.AddNetwork(topo, nw, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\ntrust = \"untrusted\"\nlearn = \"none\"\n", topo.Uplinks[0]))
	name := "e2e-" + topo.Prefix + "-n"
	own, second := harness.GuestIP(0), harness.GuestIP(50)
	w.AddPolicy(topo, fmt.Sprintf("[guests.%q]\naddresses = { %q = %q }", name, nw, own))
	cfg := harness.GuestConfig{IP: own + "/24", Peers: []string{harness.ExtIP}, Tries: 15, Interval: 1, Post: nestedScript(second, harness.ExtIP)}
	g := env.NewGuest(t, name, cfg, harness.NetworkInterface(nw, ""))
	w.Prepare(t, topo, g)
	g.Start()
	waitPing(g, harness.ExtIP)
	pol := w.PolicyFile(t, topo)
	cli := func(args ...string) (string, error) {
		out, _, err := v.Run(nil, append([]string{"--policy", pol}, args...)...)
		return out, err
	}

	nestedDropped(t, g, "before addr add")
	waitLoopOK(g, harness.ExtIP) // the honest twin

	// Bad requests: a clear error, and nothing changes.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"addr", "add", name + "-nosuch", nw, second}, "no such domain"},
		{[]string{"addr", "add", name, nw + "-nosuch", second}, "is not in"},
		{[]string{"addr", "add", name, nw, "192.0.2.300"}, "is not an address"},
		{[]string{"addr", "add", name, nw, "192.0.2.0/24"}, "max_extra_addresses"},
		{[]string{"addr", "del", name, nw, second}, "is not an extra address"},
	} {
		out, err := cli(bad.args...)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("virtap %s: %v (out %q), want an error saying %q", strings.Join(bad.args, " "), err, out, bad.want)
		}
	}
	if rows := addrList(t, cli, name); len(rows) != 0 {
		t.Fatalf("bad requests left extra addresses: %+v", rows)
	}

	start := time.Now()
	if out, err := cli("addr", "add", name, nw, second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	g.WaitAfter(g.Mark(), `^VIRTAP-NESTED OK$`, 20*time.Second)
	t.Logf("MEASURED nested address reached %s %s after virtap addr add", harness.ExtIP, time.Since(start).Round(time.Millisecond))
	if rows := addrList(t, cli, name); len(rows) != 1 || rows[0].Address != second+"/32" || rows[0].Source != "added" {
		t.Fatalf("addr list after add: %+v", rows)
	}
	live, err := harness.DumpXML(name)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _, err := domain.ParseRecord([]byte(live)); err != nil || rec == nil || rec.Interfaces[0].Added != second+"/32" {
		t.Fatalf("the live record does not carry the added address: %+v %v", rec, err)
	}
	if cfgXML, err := harness.Virsh("dumpxml", "--inactive", name); err != nil || !strings.Contains(cfgXML, `added="`+second+`/32"`) {
		t.Fatalf("the persistent record does not carry the added address (%v)", err)
	}
	// Migration: the destination's migrate hook rewrites the XML for its
	// host and keeps the added address in the record (its prepare then
	// takes it into its store).
	out, _, err := v.Run([]byte(live), "--policy", pol, "hook", "qemu", name, "migrate", "begin", "-")
	if err != nil {
		t.Fatalf("migrate hook: %v", err)
	}
	if rec, _, err := domain.ParseRecord([]byte(out)); err != nil || rec == nil || rec.Interfaces[0].Added != second+"/32" {
		t.Fatalf("the migrate hook's XML lost the added address: %+v %v", rec, err)
	}

	// A restart: the hook re-applies the stored extra address.
	// (The serial log starts afresh: libvirt truncates it at start.)
	if err := harness.DestroyDomain(name); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(g.SerialLog); err != nil {
		t.Fatal(err)
	}
	if err := harness.StartDomain(name); err != nil {
		t.Fatal(err)
	}
	g.WaitAfter(0, `^VIRTAP-PING `+regexp.QuoteMeta(harness.ExtIP)+` OK$`, bootTimeout)
	g.WaitAfter(0, `^VIRTAP-NESTED OK$`, 30*time.Second)
	t.Logf("after a guest restart the nested address still reaches %s", harness.ExtIP)

	if out, err := cli("addr", "del", name, nw, second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	nestedDropped(t, g, "after addr del")
	waitLoopOK(g, harness.ExtIP)
	if rows := addrList(t, cli, name); len(rows) != 0 {
		t.Fatalf("addr list after del: %+v", rows)
	}
	destroyAll(t, g)
	w.CheckGone(t, topo)
}

// nestedScript adds the second address to the guest's NIC and pings peer
// from it once a second, forever, printing VIRTAP-NESTED OK|FAIL.
func nestedScript(second, peer string) string {
	return fmt.Sprintf(`ip addr add %[1]s/24 dev $DEV || echo VIRTAP-ERROR nested addr
( while :; do
	if ping -c 1 -W 1 -I %[1]s %[2]s >/dev/null 2>&1; then echo VIRTAP-NESTED OK; else echo VIRTAP-NESTED FAIL; fi
	sleep 1
done ) &
exit 0
`, second, peer)
}

// nestedDropped waits for the nested address to fail three times in a
// row (an answer in flight when the state changed may still arrive) and
// then asserts that no answer came in the next three rounds, and that the
// filter counted the drops.
func nestedDropped(t *testing.T, g *harness.Guest, stage string) {
	t.Helper()
	g.WaitAfter(g.Mark(), `^VIRTAP-NESTED FAIL$`, 20*time.Second)
	m := g.Mark()
	before := droppedNested(t, g)
	if _, err := harness.WaitSerialCount(g.SerialLog, m, `^VIRTAP-NESTED (OK|FAIL)$`, 3, 30*time.Second); err != nil {
		t.Fatalf("%s: %v", stage, err)
	}
	b, err := os.ReadFile(g.SerialLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := regexp.MustCompile(`(?m)^VIRTAP-NESTED OK\r?$`).FindAll(b[m:], -1); len(n) > 0 {
		t.Fatalf("%s: the nested address reached the external host %d times in 3 rounds", stage, len(n))
	}
	if after := droppedNested(t, g); after <= before {
		t.Errorf("%s: the filter's ip4-source and arp-ip drops did not rise (%d, then %d)", stage, before, after)
	}
	t.Logf("%s: the nested address is dropped (3 of 3 rounds)", stage)
}

func droppedNested(t *testing.T, g *harness.Guest) uint64 {
	t.Helper()
	cs, err := nft.New(nil).Counters(uuid.MustParse(g.UUID))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range cs {
		if c.Reason == nft.ReasonIPv4Source || c.Reason == nft.ReasonARPIP {
			n += c.Packets
		}
	}
	return n
}

type addrRow struct {
	Domain, UUID, MAC, Network, Address, Source string
}

func addrList(t *testing.T, cli func(...string) (string, error), dom string) []addrRow {
	t.Helper()
	out, err := cli("addr", "list", dom, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []addrRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("addr list --json: %v\n%s", err, out)
	}
	return rows
}
