package netdev

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// VnetHdrLen is the size of the virtio-net header a macvtap/ipvtap queue
// prepends to frames when opened with vnetHdr (the kernel's default size).
const VnetHdrLen = 10

// Tap is an open queue of a macvtap/ipvtap device: the guest's side of the
// link. Frames written are sent out of the device as if the guest sent them;
// frames read are what the guest would receive.
type Tap struct {
	f       *os.File
	name    string
	vnetHdr bool
}

// OpenTap opens dev's /dev/tapN. With vnetHdr, each frame carries a
// virtio-net header (VnetHdrLen zero bytes are prepended on Write and
// stripped on Read); without it, frames are plain Ethernet. The descriptor
// is non-blocking and registered with Go's poller, so SetReadDeadline works.
// The queue is checked to belong to dev (by name, via TUNGETIFF), which
// catches a /dev/tapN that belongs to a same-index device of another
// network namespace.
func OpenTap(dev Device, vnetHdr bool) (*Tap, error) {
	if dev.TapPath == "" {
		return nil, fmt.Errorf("%s (%s) has no tap character device", dev.Name, dev.Kind)
	}
	fd, err := unix.Open(dev.TapPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev.TapPath, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr, err := unix.NewIfreq(dev.Name)
	if err == nil {
		ifr.SetUint16(flags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set flags on %s: %w", dev.TapPath, err)
	}
	got, err := unix.NewIfreq("")
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.TUNGETIFF, got)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("query %s: %w", dev.TapPath, err)
	}
	if got.Name() != dev.Name {
		unix.Close(fd)
		return nil, fmt.Errorf("%s belongs to device %q, not %q (index clash across network namespaces?)", dev.TapPath, got.Name(), dev.Name)
	}
	return &Tap{f: os.NewFile(uintptr(fd), dev.TapPath), name: dev.Name, vnetHdr: vnetHdr}, nil
}

// Close closes the queue.
func (t *Tap) Close() error { return t.f.Close() }

// Write sends one Ethernet frame.
func (t *Tap) Write(frame []byte) error {
	b := frame
	if t.vnetHdr {
		b = make([]byte, VnetHdrLen+len(frame))
		copy(b[VnetHdrLen:], frame)
	}
	n, err := t.f.Write(b)
	if err != nil {
		return fmt.Errorf("write to %s: %w", t.name, err)
	}
	if n != len(b) {
		return fmt.Errorf("write to %s: short write %d of %d", t.name, n, len(b))
	}
	return nil
}

// Read returns the next frame received, waiting until deadline (zero: no
// deadline). On timeout the error satisfies errors.Is(err, os.ErrDeadlineExceeded).
func (t *Tap) Read(deadline time.Time) ([]byte, error) {
	if err := t.f.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("deadline on %s: %w", t.name, err)
	}
	buf := make([]byte, 65536+VnetHdrLen)
	n, err := t.f.Read(buf)
	if err != nil {
		return nil, err
	}
	b := buf[:n]
	if t.vnetHdr {
		if n < VnetHdrLen {
			return nil, fmt.Errorf("read from %s: %d bytes, shorter than the vnet header", t.name, n)
		}
		b = b[VnetHdrLen:]
	}
	return b, nil
}

// ErrNoMatch is returned by Expect when no matching frame arrived in time.
var ErrNoMatch = errors.New("no matching frame before the deadline")

// Expect reads frames until one parses and satisfies match, or deadline
// passes (then ErrNoMatch). Frames that do not match are discarded.
func (t *Tap) Expect(deadline time.Time, match func(Frame) bool) (Frame, error) {
	for {
		b, err := t.Read(deadline)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Frame{}, ErrNoMatch
			}
			return Frame{}, err
		}
		fr, err := ParseFrame(b)
		if err == nil && match(fr) {
			return fr, nil
		}
	}
}
