package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// churnDev is device i of a churn run: a name, an interface index (asked
// for explicitly, because /dev/tap<index> lives in the global devtmpfs and
// must not collide with macvtaps of other namespaces) and virtap's tag for
// a guest interface, as the hook makes them.
type churnDev struct {
	name  string
	index int
	tag   netdev.Tag
}

func churnDevs(n int) []churnDev {
	base := 400000 + (os.Getpid()%400)*2048
	ds := make([]churnDev, n)
	for i := range ds {
		u := uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint("virtap-bench-", i)))
		mac := net.HardwareAddr{0x52, 0x54, 0x00, byte(i >> 16), byte(i >> 8), byte(i)}
		ds[i] = churnDev{name: fmt.Sprintf("vb%05d", i), index: base + i, tag: netdev.GuestTag(u, mac)}
	}
	return ds
}

const churnParent = "up0"

// ipBatch runs `ip -batch` on the given commands, forked from the locked
// thread (so inside the bench namespace).
func ipBatch(dir string, lines []string) (time.Duration, error) {
	f := filepath.Join(dir, "ip.batch")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command("ip", "-batch", f)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("ip -batch: %w: %s", err, firstLines(string(out), 3))
	}
	return took, nil
}

func firstLines(s string, n int) string {
	l := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, " / ")
}

// ipCreate is the anchor for creation: the same devices, the same tag (as
// the alias) and the same state (up), in one ip process.
func ipCreate(dir string, ds []churnDev) (time.Duration, error) {
	var lines []string
	for _, d := range ds {
		lines = append(lines,
			fmt.Sprintf("link add link %s name %s index %d type macvtap mode bridge", churnParent, d.name, d.index),
			fmt.Sprintf("link set dev %s alias %s up", d.name, d.tag.String()))
	}
	return ipBatch(dir, lines)
}

func ipDelete(dir string, ds []churnDev) (time.Duration, error) {
	var lines []string
	for _, d := range ds {
		lines = append(lines, "link del dev "+d.name)
	}
	return ipBatch(dir, lines)
}

func virtapCreate(m *netdev.Manager, ds []churnDev) (time.Duration, error) {
	start := time.Now()
	for _, d := range ds {
		if _, err := m.Create(netdev.Spec{Name: d.name, Kind: netdev.KindMacvtap, Parent: churnParent, Mode: "bridge", Tag: d.tag, Up: true, Index: d.index}); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func virtapDelete(m *netdev.Manager, workers, want int) (time.Duration, error) {
	start := time.Now()
	del, err := m.DeleteTagged(nil, workers)
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if len(del) != want {
		return 0, fmt.Errorf("deleted %d devices, want %d", len(del), want)
	}
	return took, nil
}

// countTagged checks that exactly n tagged macvtaps exist.
func countTagged(m *netdev.Manager, n int) error {
	devs, err := m.List()
	if err != nil {
		return err
	}
	if len(devs) != n {
		return fmt.Errorf("%d virtap-tagged devices in the namespace, want %d", len(devs), n)
	}
	for _, d := range devs {
		if d.Kind != "macvtap" || d.Mode != "bridge" || !d.Up {
			return fmt.Errorf("device %s: kind %s mode %s up %v, want an up macvtap in bridge mode", d.Name, d.Kind, d.Mode, d.Up)
		}
	}
	return nil
}

// benchChurn measures item 2 in a fresh namespace with a veth parent.
func benchChurn(cfg config) ([]Row, error) {
	ns, restore, err := enterNewNetns()
	if err != nil {
		return nil, err
	}
	defer restore()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: churnParent}, PeerName: churnParent + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, err
	}
	for _, n := range []string{churnParent, churnParent + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return nil, err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, err
		}
	}
	m, err := netdev.NewAt(hclog.NewNullLogger(), ns)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	dir, err := os.MkdirTemp("", "virtap-bench-churn-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ds := churnDevs(cfg.churnN)
	n := len(ds)
	var vc, vd, ic, id []time.Duration
	var vdSerial, gcTook time.Duration
	for run := 0; run < cfg.churnRuns; run++ {
		d, err := virtapCreate(m, ds)
		if err != nil {
			return nil, fmt.Errorf("virtap create: %w", err)
		}
		vc = append(vc, d)
		if err := countTagged(m, n); err != nil {
			return nil, err
		}
		if d, err = virtapDelete(m, cfg.workers, n); err != nil {
			return nil, fmt.Errorf("virtap delete: %w", err)
		}
		vd = append(vd, d)
		if err := countTagged(m, 0); err != nil {
			return nil, err
		}
		if d, err = ipCreate(dir, ds); err != nil {
			return nil, err
		}
		ic = append(ic, d)
		if err := countTagged(m, n); err != nil {
			return nil, fmt.Errorf("after ip -batch: %w", err)
		}
		if d, err = ipDelete(dir, ds); err != nil {
			return nil, err
		}
		id = append(id, d)
		if err := countTagged(m, 0); err != nil {
			return nil, err
		}
		if run == 0 {
			// Once: virtap's delete with one worker, and gc of n orphans.
			if _, err := ipCreate(dir, ds); err != nil {
				return nil, err
			}
			if vdSerial, err = virtapDelete(m, 1, n); err != nil {
				return nil, err
			}
			if _, err := ipCreate(dir, ds); err != nil {
				return nil, err
			}
			if gcTook, err = gcOrphans(m, dir, n); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
			if err := countTagged(m, 0); err != nil {
				return nil, fmt.Errorf("after gc: %w", err)
			}
		}
	}
	per := func(d time.Duration) string { return fmtDur(d / time.Duration(n)) }
	note := fmt.Sprintf("%d macvtaps on a veth, %d runs, medians; per device in brackets", n, cfg.churnRuns)
	mvc, mic, mvd, mid := median(vc), median(ic), median(vd), median(id)
	rows := []Row{
		judge(Row{Item: "2a", Name: fmt.Sprintf("create %d macvtaps (netdev.Create)", n), Measured: fmt.Sprintf("%s (%s)", fmtDur(mvc), per(mvc)),
			Anchor: fmt.Sprintf("ip -batch %s (%s)", fmtDur(mic), per(mic)), Ratio: float64(mvc) / float64(mic), Note: note}, Target{Text: "<= 1.2x", Max: 1.2}),
		judge(Row{Item: "2b", Name: fmt.Sprintf("delete %d (DeleteTagged, %d workers)", n, cfg.workers), Measured: fmt.Sprintf("%s (%s)", fmtDur(mvd), per(mvd)),
			Anchor: fmt.Sprintf("serial ip link del %s (%s)", fmtDur(mid), per(mid)), Ratio: float64(mvd) / float64(mid)}, Target{Text: "<= 0.25x (4x faster)", Max: 0.25}),
		judge(Row{Item: "2c", Name: fmt.Sprintf("delete %d (DeleteTagged, 1 worker)", n), Measured: fmt.Sprintf("%s (%s)", fmtDur(vdSerial), per(vdSerial)),
			Anchor: fmt.Sprintf("serial ip link del %s", fmtDur(mid)), Ratio: float64(vdSerial) / float64(mid), Note: "one run"}, Target{}),
		judge(Row{Item: "2d", Name: fmt.Sprintf("gc of %d orphaned devices (Realiser.GC)", n), Measured: fmt.Sprintf("%s (%s)", fmtDur(gcTook), per(gcTook)),
			Anchor: fmt.Sprintf("serial ip link del %s", fmtDur(mid)), Ratio: float64(gcTook) / float64(mid), Note: "one run"}, Target{Text: "<= 0.25x (4x faster)", Max: 0.25}),
	}
	return rows, nil
}

// gcOrphans runs virtap's gc (host.Realiser.GC, what `virtap gc` calls)
// over n tagged devices whose domains do not run, with an empty store.
func gcOrphans(m *netdev.Manager, dir string, n int) (time.Duration, error) {
	st, err := store.Open(filepath.Join(dir, "gc-state"), store.Options{})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	r := host.New(hclog.NewNullLogger(), m, st, paths.Roots{})
	start := time.Now()
	acts, err := r.GC(func(uuid.UUID) bool { return false }, nil, false)
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	devs := 0
	for _, a := range acts {
		if a.What == "device" {
			devs++
		}
	}
	if devs != n {
		return 0, fmt.Errorf("gc removed %d devices, want %d", devs, n)
	}
	return took, nil
}
