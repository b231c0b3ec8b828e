package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nft/spooftest"
	"github.com/virtap/virtap/test/harness"
)

// TestVirtapAntispoof is issues 8 and 15 end to end: two guests on
// macvtap bridge networks of one uplink, one untrusted (virtap's hook binds
// an nftables filter to the egress hook of libvirt's macvtap at start),
// one trusted (no filter). Both reach the external host with their own MAC
// and address; on the trigger each, as a rogue guest would: sends ARP and
// ICMP from a forged IPv4 address, runs a DHCP server (busybox udhcpd)
// that answers the external host's discovers, changes its MAC to a
// spoofed one and sends ARP and ICMP, then restores its MAC and pings
// again. A packet capture on the external host's interface (AF_PACKET,
// what tcpdump does) must see none of the untrusted guest's forged frames
// and those of the trusted guest (so the capture can tell), the untrusted
// guest's filter must count the drops by reason, and both guests must
// reach the external host again with their own MAC and address (the
// filter drops the forgery, not the guest).
func TestVirtapAntispoof(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	start := time.Now()
	topo := harness.NewTopology(t, 1, false)
	w := harness.NewVirtapWiring(v)
	untrusted, trusted := topo.Prefix+"-untrusted", topo.Prefix+"-trusted"
	for nw, trust := range map[string]string{untrusted: "untrusted", trusted: "trusted"} {
		w.AddNetwork(topo, nw, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\ntrust = %q\n", topo.Uplinks[0], trust))
	}
	const trigger = "192.0.2.254"
	// Locally administered unicast MACs that neither libvirt nor virtap
	// would pick (their prefix is 52:54:00 or the policy's mac_prefix),
	// and addresses no one on the segment has.
	spoofU, spoofT := "02:5f:00:e2:e0:0a", "02:5f:00:e2:e0:0b"
	forgedU, forgedT := "192.0.2.98", "192.0.2.97"
	mk := func(suffix, nw, ip, spoof, forged string) *harness.Guest {
		cfg := harness.GuestConfig{
			IP: ip + "/24", Peers: []string{harness.ExtIP}, Tries: 15, Interval: 1, NoLoop: true,
			On: trigger, OnRun: rogueScript(spoof, forged, harness.ExtIP),
		}
		g := env.NewGuest(t, "e2e-"+topo.Prefix+"-"+suffix, cfg, harness.NetworkInterface(nw, ""))
		w.Prepare(t, topo, g)
		return g
	}
	// The untrusted guest's static address is its fixed address in the
	// policy (the default learn = "dhcp" binds nothing without a DHCPACK).
	w.AddPolicy(topo, fmt.Sprintf("[guests.%q]\naddresses = { %q = %q }", "e2e-"+topo.Prefix+"-u", untrusted, harness.GuestIP(0)))
	gu := mk("u", untrusted, harness.GuestIP(0), spoofU, forgedU)
	gt := mk("t", trusted, harness.GuestIP(1), spoofT, forgedT)
	gu.Start()
	gt.Start()
	for _, g := range []*harness.Guest{gu, gt} {
		waitPing(g, harness.ExtIP) // its own MAC and address pass the filter
	}
	t.Logf("both guests reached %s %s after the test began", harness.ExtIP, time.Since(start).Round(time.Millisecond))
	w.CheckRunning(t, topo)

	liU, liT := liveIface(t, gu), liveIface(t, gt)
	for _, li := range []harness.LiveInterface{liU, liT} {
		if li.Type != "direct" || li.Source != topo.Uplinks[0] || li.Mode != "bridge" || li.Target == "" {
			t.Fatalf("want a bridge-mode macvtap on %s, got %+v", topo.Uplinks[0], li)
		}
	}
	macU, err := net.ParseMAC(liU.MAC)
	if err != nil {
		t.Fatal(err)
	}
	fm := nft.New(nil)
	uu, tu := uuid.MustParse(gu.UUID), uuid.MustParse(gt.UUID)
	before, err := fm.Counters(uu)
	if err != nil {
		t.Fatal(err)
	}
	if dev := filterDevice(before, macU); dev != liU.Target {
		t.Fatalf("untrusted guest: filter bound to %q, its macvtap is %s (counters %+v)", dev, liU.Target, before)
	}
	if cs, err := fm.Counters(tu); err != nil || len(cs) != 0 {
		t.Fatalf("trusted guest has a filter: %+v %v", cs, err)
	}

	capt := startCapture(t, topo.ExtNS, "eth0")
	stopDiscover := discoverLoop(t, newInjector(t, topo.ExtNS, "eth0"))
	mU, mT := gu.Mark(), gt.Mark()
	if err := topo.AddExtAddr(trigger); err != nil {
		t.Fatal(err)
	}
	gu.WaitAfter(mU, `^VIRTAP-SCRIPT on 0$`, bootTimeout)
	gt.WaitAfter(mT, `^VIRTAP-SCRIPT on 0$`, bootTimeout)
	stopDiscover()
	// The last frames the guests sent are already on the wire; give the
	// capture's socket a moment to hand them over.
	time.Sleep(300 * time.Millisecond)
	seen, err := capt.Stop()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	after, err := fm.Counters(uu)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capture on %s eth0: %s", topo.ExtNS, seen)
	t.Logf("untrusted filter before %v, after %v", nft.Dropped(before, macU), nft.Dropped(after, macU))

	for _, c := range []struct {
		g             *harness.Guest
		mark          int64
		spoof, forged string
	}{{gu, mU, spoofU, forgedU}, {gt, mT, spoofT, forgedT}} {
		c.g.WaitAfter(c.mark, `^VIRTAP-FORGED-IP `+regexp.QuoteMeta(c.forged)+`$`, time.Second)
		c.g.WaitAfter(c.mark, `^VIRTAP-DHCPD ran$`, time.Second)
		if line := c.g.WaitAfter(c.mark, `^VIRTAP-SPOOFED `, time.Second); !strings.HasSuffix(line, " "+c.spoof) {
			t.Fatalf("%s did not take the spoofed MAC %s: %q", c.g.Name, c.spoof, line)
		}
		c.g.WaitAfter(c.mark, `^VIRTAP-RESTORED OK$`, time.Second)
	}
	checkRogue(t, seen, rogue{mac: liT.MAC, spoof: spoofT, forged: forgedT}, true)
	checkRogue(t, seen, rogue{mac: liU.MAC, spoof: spoofU, forged: forgedU}, false)
	// The untrusted guest's honest frames arrive: its own MAC and address.
	if n := seen.Claimed(claimIP4From, harness.GuestIP(0)+" "+liU.MAC); n == 0 {
		t.Fatalf("untrusted guest: no IPv4 from its own address and MAC reached the external host (capture: %s)", seen)
	}
	dB, dA := nft.Dropped(before, macU), nft.Dropped(after, macU)
	for _, r := range []string{nft.ReasonMAC, nft.ReasonIPv4Source, nft.ReasonARPIP, nft.ReasonDHCPServer} {
		if dA[r] <= dB[r] {
			t.Errorf("untrusted guest: %q drops did not rise: %d before, %d after", r, dB[r], dA[r])
		}
	}
	var drops uint64
	for r := range dA {
		drops += dA[r] - dB[r]
	}
	if sB, sA := seenCount(before, macU), seenCount(after, macU); sA-sB < drops {
		t.Fatalf("untrusted guest: filter saw %d frames but dropped %d", sA-sB, drops)
	}
	if cs, err := fm.Counters(tu); err != nil || len(cs) != 0 {
		t.Fatalf("trusted guest has a filter after the spoof: %+v %v", cs, err)
	}

	destroyAll(t, gu, gt)
	if cs, err := fm.Counters(uu); err != nil || len(cs) != 0 {
		t.Fatalf("untrusted guest's filter left after destroy: %+v %v", cs, err)
	}
	w.CheckGone(t, topo)
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// rogue is what one guest forged.
type rogue struct{ mac, spoof, forged string }

// checkRogue checks what of a guest's forgeries reached the external host:
// every kind when arrive (the trusted guest: the capture can tell), none
// otherwise; its frames from its own MAC always.
func checkRogue(t *testing.T, seen captured, r rogue, arrive bool) {
	t.Helper()
	if seen.From(r.mac) == 0 {
		t.Errorf("guest %s: no frame from its own MAC reached the external host (capture: %s)", r.mac, seen)
	}
	for _, c := range []struct {
		what string
		n    int
	}{
		{"frames from its spoofed MAC " + r.spoof, seen.From(r.spoof)},
		{"IPv4 from its forged address " + r.forged, seen.Claimed(claimIP4Src, r.forged)},
		{"ARP from its forged address " + r.forged, seen.Claimed(claimARPSender, r.forged)},
		{"DHCP server messages", seen.Claimed(claimDHCPServer, r.mac)},
	} {
		switch {
		case arrive && c.n == 0:
			t.Errorf("guest %s: no %s reached the external host: the capture cannot tell (capture: %s)", r.mac, c.what, seen)
		case !arrive && c.n != 0:
			t.Errorf("guest %s: %d %s reached the external host (capture: %s)", r.mac, c.n, c.what, seen)
		}
	}
}

// discoverLoop sends a DHCPDISCOVER from the external host every 300 ms
// (rogue DHCP servers in the guests answer it) until the returned stop.
func discoverLoop(t *testing.T, inj *injector) (stop func()) {
	client := net.HardwareAddr{0x02, 0x5f, 0x00, 0xe2, 0xe0, 0xcc}
	msg := spooftest.BOOTP(1, client, nil, nil, spooftest.Opt(53, 1))
	msg = append(msg, make([]byte, 300-len(msg))...) // BOOTP's minimum size
	f := netdev.UDP4(inj.ifi.HardwareAddr, netdev.Broadcast, net.IPv4zero, net.IPv4bcast, 68, 67, msg)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := inj.send(f); err != nil {
				t.Errorf("send a DHCPDISCOVER: %v", err)
				return
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

// rogueScript is the guests' trigger script: send ARP and ICMP from the
// forged address (with its own MAC), run a DHCP server for a few seconds,
// then spoofScript. It prints VIRTAP-FORGED-IP <addr> and VIRTAP-DHCPD ran
// before spoofScript's lines.
func rogueScript(spoof, forged, peer string) string {
	return fmt.Sprintf(`ip addr add %[2]s/32 dev $DEV
n=0
while [ $n -lt 2 ]; do
	n=$((n + 1))
	arping -c 1 -w 1 -s %[2]s -I $DEV %[1]s >/dev/null 2>&1
	ping -c 1 -W 1 -I %[2]s %[1]s >/dev/null 2>&1
done
ip addr del %[2]s/32 dev $DEV
echo VIRTAP-FORGED-IP %[2]s
printf 'start 192.0.2.200\nend 192.0.2.209\ninterface %%s\nlease_file /tmp/udhcpd.leases\npidfile /tmp/udhcpd.pid\noption subnet 255.255.255.0\noption router %[2]s\n' $DEV >/tmp/udhcpd.conf
: >/tmp/udhcpd.leases
udhcpd -f -a 100 /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &
sleep 4
kill $!
echo VIRTAP-DHCPD ran
`, peer, forged) + spoofScript(spoof, peer)
}

// spoofScript is the MAC part of rogueScript: take MAC spoof, send to peer
// (ARP and ICMP, four rounds), then take the original MAC back and ping
// peer until it answers. It prints VIRTAP-SPOOFED <mac> and
// VIRTAP-RESTORED OK|FAIL and always exits 0.
func spoofScript(spoof, peer string) string {
	return fmt.Sprintf(`orig=$(cat /sys/class/net/$DEV/address)
ip link set $DEV down
ip link set $DEV address %[1]s || echo VIRTAP-ERROR spoof %[1]s
ip link set $DEV up
echo VIRTAP-SPOOFED $(cat /sys/class/net/$DEV/address)
n=0
while [ $n -lt 4 ]; do
	n=$((n + 1))
	arping -c 1 -w 1 -I $DEV %[2]s >/dev/null 2>&1
	ping -c 1 -W 1 %[2]s >/dev/null 2>&1
done
ip link set $DEV down
ip link set $DEV address $orig || echo VIRTAP-ERROR restore $orig
ip link set $DEV up
r=FAIL
n=0
while [ $n -lt 10 ]; do
	n=$((n + 1))
	if ping -c 1 -W 1 %[2]s >/dev/null 2>&1; then
		r=OK
		break
	fi
done
echo VIRTAP-RESTORED $r
exit 0
`, spoof, peer)
}

// filterDevice is the device the filter of mac is bound to ("" if none).
func filterDevice(cs []nft.Counter, mac net.HardwareAddr) string {
	for _, c := range cs {
		if c.MAC == mac.String() && c.Reason == nft.ReasonSeen {
			return c.Device
		}
	}
	return ""
}

// seenCount is the "seen" counter of mac's filter.
func seenCount(cs []nft.Counter, mac net.HardwareAddr) uint64 {
	for _, c := range cs {
		if c.MAC == mac.String() && c.Reason == nft.ReasonSeen {
			return c.Packets
		}
	}
	return 0
}
