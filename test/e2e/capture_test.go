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

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// captured counts the frames a capture received, by Ethernet source, and
// what they claim: IPv4 sources, ARP sender addresses, DHCP server
// messages.
type captured struct {
	bySrc  map[string]int
	byType map[string]map[uint16]int
	claims map[string]int // claim(kind, value) -> frames
}

// From is the number of frames whose Ethernet source was mac.
func (c captured) From(mac string) int { return c.bySrc[strings.ToLower(mac)] }

// Kinds of claims a frame makes.
const (
	claimIP4Src     = "ip4-source"  // IPv4 source address (value: the address)
	claimARPSender  = "arp-sender"  // ARP sender protocol address (value: the address)
	claimDHCPServer = "dhcp-server" // UDP from port 67 or to port 68 (value: Ethernet source)
	claimIP4From    = "ip4-from"    // IPv4 source address and Ethernet source (value: "ADDR MAC")
)

// Claimed is the number of frames that made a claim.
func (c captured) Claimed(kind, value string) int {
	return c.claims[kind+" "+strings.ToLower(value)]
}

func (c captured) claim(kind, value string) { c.claims[kind+" "+strings.ToLower(value)]++ }

// classify records what an Ethernet frame from src claims.
func (c captured) classify(src string, f []byte) {
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0806:
		if len(f) >= 14+28 {
			c.claim(claimARPSender, net.IP(f[14+14:14+18]).String())
		}
	case 0x0800:
		if len(f) < 14+20 {
			return
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		c.claim(claimIP4Src, net.IP(ip[12:16]).String())
		c.claim(claimIP4From, net.IP(ip[12:16]).String()+" "+src)
		if ip[9] == 17 && len(ip) >= ihl+4 {
			sport, dport := binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
			if sport == 67 || dport == 68 {
				c.claim(claimDHCPServer, src)
			}
		}
	}
}

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
	var claims []string
	for k, n := range c.claims {
		if !strings.HasPrefix(k, claimIP4From) {
			claims = append(claims, fmt.Sprintf("%s:%d", k, n))
		}
	}
	sort.Strings(claims)
	return b.String() + "; claims: " + strings.Join(claims, ", ")
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
	fd, _, err := packetSocketIn(nsName, dev)
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", dev, nsName, err)
	}
	c := &capture{fd: fd, stop: make(chan struct{}), done: make(chan struct{}),
		got: captured{bySrc: map[string]int{}, byType: map[string]map[uint16]int{}, claims: map[string]int{}}}
	go c.loop()
	t.Cleanup(func() { _, _ = c.Stop() })
	return c
}

// packetSocketIn makes an AF_PACKET socket in netns nsName bound to dev,
// with a short receive timeout, on a locked thread that is put back into
// its own netns afterwards (the socket stays in nsName).
func packetSocketIn(nsName, dev string) (int, *net.Interface, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, nil, err
	}
	defer orig.Close()
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, nil, err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return -1, nil, err
	}
	fd, ifi, serr := func() (int, *net.Interface, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return -1, nil, err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return fd, ifi, err
	}()
	if err := netns.Set(orig); err != nil {
		// Never unlock: the runtime retires a thread left in a wrong netns.
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, nil, fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	if serr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, nil, serr
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("bind to %s: %w", dev, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, ifi, nil
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
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
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
			continue
		}
		src := net.HardwareAddr(buf[6:12]).String()
		c.got.bySrc[src]++
		if c.got.byType[src] == nil {
			c.got.byType[src] = map[uint16]int{}
		}
		c.got.byType[src][binary.BigEndian.Uint16(buf[12:14])]++
		c.got.classify(src, buf[:n])
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

// injector sends raw frames out of one interface of a named netns (the
// external host's), as that host.
type injector struct {
	fd  int
	ifi *net.Interface
}

func newInjector(t *testing.T, nsName, dev string) *injector {
	t.Helper()
	fd, ifi, err := packetSocketIn(nsName, dev)
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", dev, nsName, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &injector{fd: fd, ifi: ifi}
}

func (j *injector) send(frame []byte) error {
	return unix.Sendto(j.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: j.ifi.Index, Protocol: htons(unix.ETH_P_ALL)})
}
