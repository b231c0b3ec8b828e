// Package spooftest holds the attacker's side of virtap's anti-spoofing
// tests, shared by the macvtap tests (internal/nft) and the ipvtap tests
// that run in the test host VM (test/vm/inside): forged frames, each with
// its honest twin, written into a guest's /dev/tapN and looked for on the
// far side with a packet socket.
package spooftest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/nstest"
)

// Silence is how long a capture listens for a frame that must not come.
const Silence = 350 * time.Millisecond

// Capture is a packet socket on one link of a namespace: it reads what
// reaches that host, and can send from it.
type Capture struct {
	fd, ifindex int
}

// NewCapture opens a packet socket on link in ns (closed at cleanup).
func NewCapture(t testing.TB, ns *nstest.NS, link string) *Capture {
	t.Helper()
	idx := ns.Link(t, link).Attrs().Index
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", link, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &Capture{fd: fd, ifindex: idx}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Inject sends a raw frame out of the capture's link.
func (c *Capture) Inject(t testing.TB, frame []byte) {
	t.Helper()
	if err := unix.Sendto(c.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: c.ifindex, Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		t.Fatalf("inject: %v", err)
	}
}

// Seen reports whether a frame containing nonce arrives within wait.
func (c *Capture) Seen(t testing.TB, wait time.Duration, nonce []byte) bool {
	t.Helper()
	deadline := time.Now().Add(wait)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == packetOutgoing {
			continue // what this socket injected
		}
		if bytes.Contains(buf[:n], nonce) {
			return true
		}
	}
}

// Writer is the guest's side: a /dev/tapN.
type Writer interface{ Write([]byte) error }

// Send writes frame into the guest's tap and reports whether the far side
// saw it (a frame holding nonce). An expected delivery is retried twice
// (the first frame may wait for a neighbour or a port to learn); a frame
// that must not arrive is sent once.
func Send(t testing.TB, g Writer, c *Capture, expect bool, nonce, frame []byte) bool {
	t.Helper()
	attempts := 1
	if expect {
		attempts = 3
	}
	for i := 0; i < attempts; i++ {
		if err := g.Write(frame); err != nil {
			t.Fatal(err)
		}
		if c.Seen(t, Silence, nonce) {
			return true
		}
	}
	return false
}

// BOOTP is a DHCP message: op (1 request, 2 reply), the client's MAC and
// addresses, then the magic cookie and options (ending with 255).
func BOOTP(op byte, chaddr net.HardwareAddr, ciaddr, yiaddr net.IP, options ...[]byte) []byte {
	b := make([]byte, 240)
	b[0], b[1], b[2] = op, 1, 6
	binary.BigEndian.PutUint32(b[4:8], 0x76746170)
	copy(b[12:16], ciaddr.To4())
	copy(b[16:20], yiaddr.To4())
	copy(b[28:34], chaddr)
	binary.BigEndian.PutUint32(b[236:240], 0x63825363)
	for _, o := range options {
		b = append(b, o...)
	}
	return append(b, 255)
}

// Opt is one DHCP option.
func Opt(code byte, data ...byte) []byte { return append([]byte{code, byte(len(data))}, data...) }

// Lease is option 51 for d.
func Lease(d time.Duration) []byte {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return Opt(51, v...)
}

const packetOutgoing = 4 // PACKET_OUTGOING: a frame this host sent

// RunForgeries checks every case against an interface before and after
// its filter is applied.
func RunForgeries(t testing.TB, m *nft.Manager, spec nft.Spec, tap Writer, cap *Capture, g Guest) {
	cases := Cases(g)
	seq := 0
	nonce := func(c Case, kind string) []byte {
		seq++
		return []byte(fmt.Sprintf("virtap-forgery-%03d-%s", seq, kind))
	}
	for _, c := range cases {
		n := nonce(c, "unfiltered")
		if !Send(t, tap, cap, true, n, c.Forged(n)) {
			t.Errorf("%s: without a filter the forged frame did not reach the external host: the test cannot tell", c.Name)
		}
	}
	if err := m.Apply(spec); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		n := nonce(c, "honest")
		if !Send(t, tap, cap, true, n, c.Honest(n)) {
			t.Errorf("%s: the honest twin did not reach the external host", c.Name)
		}
		before := dropped(t, m, spec)[c.Reason]
		n = nonce(c, "forged")
		if Send(t, tap, cap, false, n, c.Forged(n)) {
			t.Errorf("%s: the forged frame reached the external host", c.Name)
		}
		if got := dropped(t, m, spec)[c.Reason] - before; got != 1 {
			t.Errorf("%s: counter %q rose by %d, want 1 (all drops now %v)", c.Name, c.Reason, got, dropped(t, m, spec))
		}
	}
	t.Logf("%d forgeries dropped, %d honest twins delivered; drops by reason: %v", len(cases), len(cases), dropped(t, m, spec))
}

func dropped(t testing.TB, m *nft.Manager, s nft.Spec) map[string]uint64 {
	t.Helper()
	cs, err := m.Counters(s.Domain)
	if err != nil {
		t.Fatal(err)
	}
	return nft.Dropped(cs, s.MAC)
}
