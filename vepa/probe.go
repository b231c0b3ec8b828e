// Package vepa deals with 802.1Qbg/802.1Qbh virtual ports and with the
// reflective relay ("hairpin") that VEPA mode needs from the adjacent switch.
package vepa

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/internal/netdev"
)

// ErrInterrupted is returned (wrapped, with the signal) when SIGINT or
// SIGTERM arrived during a probe. The probe devices are removed before
// Probe returns; the caller should then exit as the signal asked.
var ErrInterrupted = errors.New("probe interrupted by signal")

// ProbeResult is the outcome of a reflective-relay probe.
type ProbeResult struct {
	// Reflects: a frame from one VEPA device reached the other, so the
	// switch port hairpins (VEPA guests on this parent can talk to each other).
	Reflects bool
	Detail   string
	Elapsed  time.Duration
}

// Probe checks whether the switch behind parent reflects frames back down
// the port they came in on. It makes two temporary macvtap devices in VEPA
// mode on parent (named vtprb<hash>a/b, tagged virtap:probe:<pid>-<hex>),
// sends a local-experimental (0x88b5) frame with a unique payload from A's
// /dev/tapN to B's MAC, resends every 100 ms, and reports whether B's tap
// receives it within timeout.
//
// A VEPA device never delivers to a sibling inside the host, so the frame
// can only reach B through the switch. Both devices are always removed: on
// return, on ctx cancellation, and on SIGINT/SIGTERM (a handler is installed
// for the duration). A SIGKILL leaves them behind:
// netdev.Manager.DeleteStaleProbes removes those.
//
// h is the netlink handle for the parent's namespace (nil: the calling
// thread's namespace). The frame leaves the host on parent: run the probe
// only on parents whose switch you are allowed to send to.
func Probe(ctx context.Context, log hclog.Logger, h *netlink.Handle, parent string, timeout time.Duration) (res ProbeResult, err error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("vepa").With("parent", parent)
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	if timeout <= 0 {
		timeout = time.Second
	}
	m := netdev.New(log, h)
	p, err := m.ParentStatus(parent)
	switch {
	case err != nil:
		return res, err
	case !p.Exists:
		return res, fmt.Errorf("%w: %s", netdev.ErrNoParent, parent)
	case !p.Up || !p.Carrier:
		return res, fmt.Errorf("parent %s is down or has no carrier: cannot probe its switch", parent)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	var gotSig os.Signal
	sigDone := make(chan struct{})
	go func() {
		defer close(sigDone)
		select {
		case s := <-sigc:
			gotSig = s
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		cancel()
		<-sigDone
		if gotSig != nil {
			err = errors.Join(fmt.Errorf("%w: %v", ErrInterrupted, gotSig), err)
		}
	}()

	id, names, err := probeID()
	if err != nil {
		return res, err
	}
	tag := netdev.PurposeTag(netdev.ProbePurpose, id)
	log = log.With("probe_id", id)
	// Remove both devices whatever happens below. Delete checks the tag, so
	// it never removes a device it did not make.
	defer func() {
		for _, n := range names {
			if derr := m.Delete(n); derr != nil {
				log.Error("cannot remove probe device", "name", n, "error", derr)
				err = errors.Join(err, derr)
			}
		}
	}()

	var devs [2]netdev.Device
	var taps [2]*netdev.Tap
	for i, n := range names {
		spec := netdev.Spec{Name: n, Kind: netdev.KindMacvtap, Parent: parent,
			Mode: "vepa", MAC: randomMAC(), Tag: tag, Up: true}
		if ProbeIndex != nil {
			spec.Index = ProbeIndex()
		}
		devs[i], err = m.Create(spec)
		if err != nil {
			return res, fmt.Errorf("probe device: %w", err)
		}
		if taps[i], err = netdev.OpenTap(devs[i], false); err != nil {
			return res, fmt.Errorf("probe device: %w", err)
		}
		defer taps[i].Close()
	}
	payload := []byte("virtap-probe:" + id)
	frame := netdev.EthernetFrame(devs[1].MAC, devs[0].MAC, netdev.EtherTypeLocalExp1, payload)
	match := func(f netdev.Frame) bool {
		return f.EtherType == netdev.EtherTypeLocalExp1 && bytes.Equal(f.Src, devs[0].MAC) &&
			bytes.HasPrefix(f.Payload, payload)
	}
	deadline := time.Now().Add(timeout)
	sent := 0
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("probe on %s: %w", parent, err)
		}
		if err := taps[0].Write(frame); err != nil {
			return res, err
		}
		sent++
		wait := time.Now().Add(100 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		_, rerr := taps[1].Expect(wait, match)
		if rerr == nil {
			res.Reflects = true
			res.Detail = fmt.Sprintf("the switch behind %s reflects frames (hairpin / reflective relay on): a frame between two VEPA devices came back after %d send(s)", parent, sent)
			log.Info("switch reflects", "frames_sent", sent)
			return res, nil
		}
		if !errors.Is(rerr, netdev.ErrNoMatch) {
			return res, rerr
		}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("probe on %s: %w", parent, err)
	}
	res.Detail = fmt.Sprintf("no frame came back within %v (%d sent): the switch behind %s does not reflect (no hairpin / reflective relay), so VEPA guests on it cannot reach each other", timeout, sent, parent)
	log.Info("switch does not reflect", "frames_sent", sent, "timeout", timeout)
	return res, nil
}

var probeSeq uint32

// ProbeIndex, when set (tests in network namespaces), picks the interface index of probe devices:
// /dev/tap<index> is global, so test namespaces must not reuse indexes.
var ProbeIndex func() int

// probeID returns a tag id "<pid>-<8 hex>" and two device names
// "vtprb<8 hex of fnv(id)>a|b" (14 characters).
func probeID() (string, [2]string, error) {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", [2]string{}, err
	}
	probeSeq++
	id := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	hsh := fnv.New32a()
	fmt.Fprintf(hsh, "%s/%d", id, probeSeq)
	base := fmt.Sprintf("vtprb%08x", hsh.Sum32())
	return id, [2]string{base + "a", base + "b"}, nil
}

func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	_, _ = rand.Read(m)
	m[0] = (m[0] | 0x02) &^ 0x01 // locally administered unicast
	return m
}
