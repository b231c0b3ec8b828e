package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/test/harness"
	"github.com/virtap/virtap/test/image"
)

// TestVirtapLearnedAddress is DHCP snooping end to end (issue 15): the
// LAN's DHCP server (busybox udhcpd on the external host) leases an
// address to an untrusted guest that has no fixed one (busybox udhcpc in
// the guest). The filter learns it from the DHCPACK in the kernel
// (`virtap status` shows it), the guest reaches the external host from it,
// and on the trigger the guest's ARP and ICMP from a forged address are
// dropped (counted) while its pings from the learned address still arrive.
func TestVirtapLearnedAddress(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	start := time.Now()
	topo := harness.NewTopology(t, 1, false)
	dhcpd := startDHCPServer(t, topo, "192.0.2.50", "192.0.2.59")
	w := harness.NewVirtapWiring(v)
	nw := topo.Prefix + "-dhcp"
	w.AddNetwork(topo, nw, fmt.Sprintf("kind = \"macvtap\"\nparent = %q\nmode = \"bridge\"\ntrust = \"untrusted\"\nlearn = \"dhcp\"\n", topo.Uplinks[0]))
	const trigger, forged = "192.0.2.254", "192.0.2.96"
	cfg := harness.GuestConfig{
		Peers: []string{harness.ExtIP}, Tries: 15, Interval: 1, NoLoop: true,
		Pre: dhcpClientScript, On: trigger, OnRun: forgeFromScript(forged, harness.ExtIP),
	}
	g := env.NewGuest(t, "e2e-"+topo.Prefix+"-d", cfg, harness.NetworkInterface(nw, ""))
	w.Prepare(t, topo, g)
	g.Start()
	line := g.Wait(`^VIRTAP-LEASE `, bootTimeout)
	leased := strings.TrimPrefix(line, "VIRTAP-LEASE ")
	if ip := net.ParseIP(leased); ip == nil || !strings.HasPrefix(leased, "192.0.2.5") {
		t.Fatalf("the guest's DHCP client reported lease %q, want one of 192.0.2.50-59 (udhcpd: %s)", leased, dhcpd)
	}
	waitPing(g, harness.ExtIP) // from the learned address
	t.Logf("the guest leased %s and reached %s %s after the test began", leased, harness.ExtIP, time.Since(start).Round(time.Millisecond))
	w.CheckRunning(t, topo)

	li := liveIface(t, g)
	mac, err := net.ParseMAC(li.MAC)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.Status()
	if err != nil {
		t.Fatal(err)
	}
	var learned []string
	found := false
	for _, f := range st.Filters {
		if f.MAC == mac.String() && f.Device == li.Target {
			found, learned = true, f.LearnedAddresses
			if f.Learned == 0 {
				t.Errorf("virtap status: the filter of %s counted no DHCPACK that bound an address: %+v", mac, f)
			}
		}
	}
	if !found || fmt.Sprint(learned) != "["+leased+"]" {
		t.Fatalf("virtap status: the filter of %s on %s should have learned [%s], has %v (filters %+v)", mac, li.Target, leased, learned, st.Filters)
	}

	fm := nft.New(nil)
	u := uuid.MustParse(g.UUID)
	before, err := fm.Counters(u)
	if err != nil {
		t.Fatal(err)
	}
	capt := startCapture(t, topo.ExtNS, "eth0")
	m := g.Mark()
	if err := topo.AddExtAddr(trigger); err != nil {
		t.Fatal(err)
	}
	g.WaitAfter(m, `^VIRTAP-SCRIPT on 0$`, bootTimeout)
	time.Sleep(300 * time.Millisecond)
	seen, err := capt.Stop()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	after, err := fm.Counters(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capture on %s eth0: %s", topo.ExtNS, seen)
	t.Logf("filter drops before %v, after %v", nft.Dropped(before, mac), nft.Dropped(after, mac))
	g.WaitAfter(m, `^VIRTAP-HONEST OK$`, time.Second)
	if n := seen.Claimed(claimIP4From, leased+" "+li.MAC); n == 0 {
		t.Errorf("no IPv4 from the learned address %s reached the external host (capture: %s)", leased, seen)
	}
	for kind, what := range map[string]string{claimIP4Src: "IPv4", claimARPSender: "ARP"} {
		if n := seen.Claimed(kind, forged); n != 0 {
			t.Errorf("%d %s frames from the forged address %s reached the external host (capture: %s)", n, what, forged, seen)
		}
	}
	dB, dA := nft.Dropped(before, mac), nft.Dropped(after, mac)
	for _, r := range []string{nft.ReasonIPv4Source, nft.ReasonARPIP} {
		if dA[r] <= dB[r] {
			t.Errorf("%q drops did not rise: %d before, %d after", r, dB[r], dA[r])
		}
	}

	destroyAll(t, g)
	if cs, err := fm.Counters(u); err != nil || len(cs) != 0 {
		t.Fatalf("filter left after destroy: %+v %v", cs, err)
	}
	w.CheckGone(t, topo)
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// dhcpClientScript leases an address with busybox udhcpc and prints
// VIRTAP-LEASE <addr> (from udhcpc's "bound" event).
const dhcpClientScript = `printf '#!/bin/sh\nif [ "$1" = bound ]; then ip addr add $ip/${mask:-24} dev $interface; echo VIRTAP-LEASE $ip; fi\n' >/tmp/dhcp.sh
chmod +x /tmp/dhcp.sh
udhcpc -i $DEV -f -q -n -t 20 -T 2 -s /tmp/dhcp.sh || echo VIRTAP-ERROR udhcpc
`

// forgeFromScript: ARP and ICMP to peer from a forged address, then pings
// from the guest's own address until one is answered (VIRTAP-HONEST OK).
func forgeFromScript(forged, peer string) string {
	return fmt.Sprintf(`ip addr add %[1]s/32 dev $DEV
n=0
while [ $n -lt 2 ]; do
	n=$((n + 1))
	arping -c 1 -w 1 -s %[1]s -I $DEV %[2]s >/dev/null 2>&1
	ping -c 1 -W 1 -I %[1]s %[2]s >/dev/null 2>&1
done
ip addr del %[1]s/32 dev $DEV
r=FAIL
n=0
while [ $n -lt 10 ]; do
	n=$((n + 1))
	if ping -c 1 -W 1 %[2]s >/dev/null 2>&1; then
		r=OK
		break
	fi
done
echo VIRTAP-HONEST $r
exit 0
`, forged, peer)
}

// dhcpServer is busybox udhcpd run on the external host.
type dhcpServer struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (d *dhcpServer) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.Write(p)
}

func (d *dhcpServer) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.TrimSpace(d.out.String())
}

// startDHCPServer runs busybox udhcpd on the external host's eth0,
// leasing first..last for 10 minutes; it is stopped (by its pid) when the
// test ends.
func startDHCPServer(t *testing.T, topo *harness.Topology, first, last string) *dhcpServer {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	body := fmt.Sprintf("start %s\nend %s\ninterface eth0\nlease_file %s\npidfile %s\noption subnet 255.255.255.0\noption lease 600\n",
		first, last, filepath.Join(dir, "leases"), filepath.Join(dir, "pid"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "leases"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &dhcpServer{}
	// ip netns exec execs the program: the pid is udhcpd's.
	cmd := exec.Command("ip", "netns", "exec", topo.ExtNS, image.BusyboxPath, "udhcpd", "-f", "-a", "100", conf)
	cmd.Stdout, cmd.Stderr = d, d
	if err := cmd.Start(); err != nil {
		t.Fatalf("udhcpd on the external host: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("udhcpd on the external host said: %s", d)
		}
	})
	// It is listening once its pid file exists (or it died).
	pid := regexp.MustCompile(`^\d+\s*$`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("udhcpd on the external host exited: %s", d)
		default:
		}
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil && pid.Match(b) {
			return d
		}
	}
	t.Fatalf("udhcpd on the external host wrote no pid file in 10 s: %s", d)
	return nil
}
