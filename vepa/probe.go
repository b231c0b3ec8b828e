// Package vepa probes for the reflective relay ("hairpin") that VEPA mode
// needs from the adjacent switch. The 802.1Qbg/802.1Qbh virtual-port rules
// live in provision/policy (VirtualPort.Check), their rendering in provision.
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
	if err := probeable(m, parent); err != nil {
		return res, err
	}
	ctx, stop := untilSignal(ctx)
	defer func() {
		if sig := stop(); sig != nil {
			err = errors.Join(fmt.Errorf("%w: %v", ErrInterrupted, sig), err)
		}
	}()
	id, names, err := probeID()
	if err != nil {
		return res, err
	}
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
	pair, err := makePair(m, names, parent, netdev.PurposeTag(netdev.ProbePurpose, id))
	defer pair.close()
	if err != nil {
		return res, err
	}
	return pair.exchange(ctx, log, id, parent, timeout)
}

// probeable checks that parent exists, is up and has carrier.
func probeable(m *netdev.Manager, parent string) error {
	p, err := m.ParentStatus(parent)
	switch {
	case err != nil:
		return err
	case !p.Exists:
		return fmt.Errorf("%w: %s", netdev.ErrNoParent, parent)
	case !p.Up || !p.Carrier:
		return fmt.Errorf("parent %s is down or has no carrier: cannot probe its switch", parent)
	}
	return nil
}

// untilSignal returns a context that SIGINT or SIGTERM cancels, and a stop
// function that removes the handler and returns the signal that came, if
// one did.
func untilSignal(parent context.Context) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(parent)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	var got os.Signal
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-sigc:
			got = s
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() os.Signal {
		cancel()
		<-done
		signal.Stop(sigc)
		return got
	}
}

// probePair is the two VEPA devices of one probe and their taps.
type probePair struct {
	devs [2]netdev.Device
	taps [2]*netdev.Tap
}

// makePair creates the two probe devices on parent and opens their taps.
// close the pair even when it returns an error.
func makePair(m *netdev.Manager, names [2]string, parent string, tag netdev.Tag) (*probePair, error) {
	pp := &probePair{}
	for i, n := range names {
		spec := netdev.Spec{Name: n, Kind: netdev.KindMacvtap, Parent: parent,
			Mode: "vepa", MAC: randomMAC(), Tag: tag, Up: true}
		if ProbeIndex != nil {
			spec.Index = ProbeIndex()
		}
		var err error
		if pp.devs[i], err = m.Create(spec); err != nil {
			return pp, fmt.Errorf("probe device: %w", err)
		}
		if pp.taps[i], err = netdev.OpenTap(pp.devs[i], false); err != nil {
			return pp, fmt.Errorf("probe device: %w", err)
		}
	}
	return pp, nil
}

func (pp *probePair) close() {
	for _, t := range pp.taps {
		if t != nil {
			t.Close()
		}
	}
}

// exchange sends a frame from A to B every 100 ms until B receives one or
// timeout passes.
func (pp *probePair) exchange(ctx context.Context, log hclog.Logger, id, parent string, timeout time.Duration) (res ProbeResult, err error) {
	payload := []byte("virtap-probe:" + id)
	frame := netdev.EthernetFrame(pp.devs[1].MAC, pp.devs[0].MAC, netdev.EtherTypeLocalExp1, payload)
	match := func(f netdev.Frame) bool {
		return f.EtherType == netdev.EtherTypeLocalExp1 && bytes.Equal(f.Src, pp.devs[0].MAC) &&
			bytes.HasPrefix(f.Payload, payload)
	}
	deadline := time.Now().Add(timeout)
	sent := 0
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("probe on %s: %w", parent, err)
		}
		if err := pp.taps[0].Write(frame); err != nil {
			return res, err
		}
		sent++
		wait := time.Now().Add(100 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		_, rerr := pp.taps[1].Expect(wait, match)
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
