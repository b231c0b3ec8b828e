package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/test/harness"
)

// TestVirtapAntispoof is issue 8 end to end: two guests on macvtap bridge
// networks of one uplink, one untrusted (virtap's hook binds an nftables
// filter to the egress hook of libvirt's macvtap at start), one trusted
// (no filter). Both reach the external host with their own MAC; on the
// trigger each changes its MAC to a spoofed one and sends ARP and ICMP to
// the external host, then restores its MAC and pings again. A packet
// capture on the external host's interface (AF_PACKET, what tcpdump does)
// must see none of the untrusted guest's spoofed frames and some of the
// trusted guest's (so the capture can tell), the untrusted guest's filter
// must count the drops, and both guests must reach the external host
// again with their own MAC (the filter drops the spoof, not the guest).
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
	// would pick (their prefix is 52:54:00 or the policy's mac_prefix).
	spoofU, spoofT := "02:5f:00:e2:e0:0a", "02:5f:00:e2:e0:0b"
	mk := func(suffix, nw, ip, spoof string) *harness.Guest {
		cfg := harness.GuestConfig{
			IP: ip + "/24", Peers: []string{harness.ExtIP}, Tries: 15, Interval: 1, NoLoop: true,
			On: trigger, OnRun: spoofScript(spoof, harness.ExtIP),
		}
		g := env.NewGuest(t, "e2e-"+topo.Prefix+"-"+suffix, cfg, harness.NetworkInterface(nw, ""))
		w.Prepare(t, topo, g)
		return g
	}
	// The untrusted guest's static address is its fixed address in the
	// policy (the default learn = "dhcp" binds nothing without a DHCPACK).
	w.AddPolicy(topo, fmt.Sprintf("[guests.%q]\naddresses = { %q = %q }", "e2e-"+topo.Prefix+"-u", untrusted, harness.GuestIP(0)))
	gu := mk("u", untrusted, harness.GuestIP(0), spoofU)
	gt := mk("t", trusted, harness.GuestIP(1), spoofT)
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
	mU, mT := gu.Mark(), gt.Mark()
	if err := topo.AddExtAddr(trigger); err != nil {
		t.Fatal(err)
	}
	gu.WaitAfter(mU, `^VIRTAP-SCRIPT on 0$`, loopTimeout)
	gt.WaitAfter(mT, `^VIRTAP-SCRIPT on 0$`, loopTimeout)
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
		g     *harness.Guest
		mark  int64
		spoof string
	}{{gu, mU, spoofU}, {gt, mT, spoofT}} {
		if line := c.g.WaitAfter(c.mark, `^VIRTAP-SPOOFED `, time.Second); !strings.HasSuffix(line, " "+c.spoof) {
			t.Fatalf("%s did not take the spoofed MAC %s: %q", c.g.Name, c.spoof, line)
		}
		c.g.WaitAfter(c.mark, `^VIRTAP-RESTORED OK$`, time.Second)
	}

	// The capture can tell: the trusted guest's spoofed frames arrive.
	if n := seen.From(spoofT); n == 0 {
		t.Fatalf("trusted guest: no frame from its spoofed MAC %s reached the external host (capture: %s)", spoofT, seen)
	}
	if n := seen.From(liT.MAC); n == 0 {
		t.Fatalf("trusted guest: no frame from its own MAC %s reached the external host (capture: %s)", liT.MAC, seen)
	}
	// The untrusted guest's own frames arrive, its spoofed ones do not.
	if n := seen.From(liU.MAC); n == 0 {
		t.Fatalf("untrusted guest: no frame from its own MAC %s reached the external host (capture: %s)", liU.MAC, seen)
	}
	if n := seen.From(spoofU); n != 0 {
		t.Fatalf("untrusted guest: %d frames from its spoofed MAC %s reached the external host (capture: %s)", n, spoofU, seen)
	}
	dropB, dropA := nft.Dropped(before, macU)[nft.ReasonMAC], nft.Dropped(after, macU)[nft.ReasonMAC]
	if dropA <= dropB {
		t.Fatalf("untrusted guest: %q drops did not rise: %d before, %d after", nft.ReasonMAC, dropB, dropA)
	}
	if sB, sA := seenCount(before, macU), seenCount(after, macU); sA-sB < dropA-dropB {
		t.Fatalf("untrusted guest: filter saw %d frames but dropped %d", sA-sB, dropA-dropB)
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

// spoofScript is the guests' trigger script: take MAC spoof, send to peer
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

// captured counts the frames a capture received, by Ethernet source.
type captured struct {
	bySrc  map[string]int
	byType map[string]map[uint16]int
}

// From is the number of frames whose Ethernet source was mac.
func (c captured) From(mac string) int { return c.bySrc[strings.ToLower(mac)] }

func (c captured) String() string {
	var srcs []string
	for s := range c.bySrc {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	var b strings.Builder
	for i, s := range srcs {
		if i > 0 {
			b.WriteString(", ")
		}
		var types []string
		for et, n := range c.byType[s] {
			types = append(types, fmt.Sprintf("%#04x:%d", et, n))
		}
		sort.Strings(types)
		fmt.Fprintf(&b, "%s %d (%s)", s, c.bySrc[s], strings.Join(types, " "))
	}
	if b.Len() == 0 {
		return "no frames"
	}
	return b.String()
}

// capture is a packet capture on one interface of a named netns: a raw
// AF_PACKET socket (what tcpdump uses) made inside that netns, counting
// every frame the interface receives.
type capture struct {
	fd   int
	stop chan struct{}
	done chan struct{}
	once sync.Once
	got  captured
	err  error
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// startCapture opens the capture; it stops on Stop or when the test ends.
func startCapture(t *testing.T, nsName, dev string) *capture {
	t.Helper()
	fd, err := packetSocketIn(nsName, dev)
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", dev, nsName, err)
	}
	c := &capture{fd: fd, stop: make(chan struct{}), done: make(chan struct{}),
		got: captured{bySrc: map[string]int{}, byType: map[string]map[uint16]int{}}}
	go c.loop()
	t.Cleanup(func() { _, _ = c.Stop() })
	return c
}

// packetSocketIn makes an AF_PACKET socket in netns nsName bound to dev,
// with a short receive timeout, on a locked thread that is put back into
// its own netns afterwards (the socket stays in nsName).
func packetSocketIn(nsName, dev string) (int, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	fd, ifindex, serr := func() (int, int, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return -1, 0, err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return fd, ifi.Index, err
	}()
	if err := netns.Set(orig); err != nil {
		// Never unlock: the runtime retires a thread left in a wrong netns.
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	if serr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, serr
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind to %s: %w", dev, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (c *capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			c.err = err
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // the external host's own frames
		}
		if n < 14 {
			continue // MSG_TRUNC: n is the frame's length even if buf held less
		}
		src := net.HardwareAddr(buf[6:12]).String()
		c.got.bySrc[src]++
		if c.got.byType[src] == nil {
			c.got.byType[src] = map[uint16]int{}
		}
		c.got.byType[src][binary.BigEndian.Uint16(buf[12:14])]++
	}
}

// Stop ends the capture and returns what it counted, or the read error
// that ended it early (the counts would then mean nothing).
func (c *capture) Stop() (captured, error) {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		unix.Close(c.fd)
	})
	return c.got, c.err
}
