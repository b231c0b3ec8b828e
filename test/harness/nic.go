package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// A guest NIC that "never passed a frame" (see test/README.md): the guest's
// virtio driver hands frames to its TX queue and QEMU takes them off it (the
// guest's own tx_packets grows), but none reaches the host device that
// libvirt or virtap gave the guest. Nothing virtap does can make frames
// vanish there uncounted: its anti-spoofing filter counts every frame it sees
// before it drops one, a wrong macvtap mode still sends frames out of the
// device (its TX counter grows), and a device virtap replaced under the guest
// shows in QEMU's tap descriptor (checked too). So NICReport.Dead is the only
// case the harness may retry, and it does so once per guest, logged.

// deadMinVanished is how many guest frames must have vanished uncounted
// before a NIC is called dead: the guest retries ARP about once a second, so
// a dead NIC passes this within seconds, and a live one never does.
const deadMinVanished = 3

// NICReport is what the guest and the host counted on one guest NIC.
type NICReport struct {
	Guest   string // domain name
	MAC     string
	Dev     string // the host device libvirt reports as the interface's target
	Ifindex int    // its ifindex, 0 if it is gone

	// GuestTX and GuestRX are the guest's own counters of its NIC, from its
	// last VIRTAP-STATS line (-1: none printed yet). Read before the host's.
	GuestTX, GuestRX int64
	// Host counters of Dev (/sys/class/net/DEV/statistics), read after the
	// guest's: TX counts what left the device towards the wire (the guest's
	// frames and the host's own), RX what it passed towards the guest.
	HostTX, HostTXDropped, HostRX, HostRXDropped uint64
	// FilterSeen is what an anti-spoofing filter on Dev counted (every
	// frame entering its egress hook, dropped or not); -1 when Dev has none.
	FilterSeen int64
	// Qdiscs are the qdiscs of Dev other than noqueue (a shaper can drop
	// frames without counting them in Dev's statistics).
	Qdiscs []string
	// TapFDs are QEMU's open /dev/tapN descriptors (what they point at);
	// Attached says one of them is /dev/tap<Ifindex> of the live device.
	TapFDs   []string
	Attached bool
	Err      error // what could not be read
}

// Vanished is how many frames the guest sent that the host cannot have
// seen: the guest's TX count less every host counter a frame leaving its tap
// increments (sent or dropped by the device, or seen by a filter).
func (r NICReport) Vanished() int64 {
	if r.GuestTX < 0 {
		return 0
	}
	bound := int64(r.HostTX + r.HostTXDropped)
	if r.FilterSeen >= 0 && r.FilterSeen+int64(r.HostTXDropped) > bound {
		bound = r.FilterSeen + int64(r.HostTXDropped)
	}
	if v := r.GuestTX - bound; v > 0 {
		return v
	}
	return 0
}

// Dead reports whether the counters prove that the guest's NIC never passed
// a frame for reasons below libvirt and virtap: at least deadMinVanished
// frames the guest sent vanished between its queue and the host device,
// the device carries no shaper that could have dropped them, and QEMU's tap
// descriptor is attached to the very device libvirt reports.
func (r NICReport) Dead() bool {
	return r.Err == nil && r.Attached && len(r.Qdiscs) == 0 && r.Vanished() >= deadMinVanished
}

// String is one line for logs.
func (r NICReport) String() string {
	filter := "none"
	if r.FilterSeen >= 0 {
		filter = fmt.Sprintf("seen=%d", r.FilterSeen)
	}
	s := fmt.Sprintf("nic of %s (%s): guest tx=%d rx=%d | host %s (ifindex %d) tx=%d tx_dropped=%d rx=%d rx_dropped=%d | filter %s | qdiscs %v | qemu tap fds %v attached=%v | vanished=%d dead=%v",
		r.Guest, r.MAC, r.GuestTX, r.GuestRX, r.Dev, r.Ifindex, r.HostTX, r.HostTXDropped, r.HostRX, r.HostRXDropped,
		filter, r.Qdiscs, r.TapFDs, r.Attached, r.Vanished(), r.Dead())
	if r.Err != nil {
		s += " | error: " + r.Err.Error()
	}
	return s
}

var statsLine = regexp.MustCompile(`^VIRTAP-STATS (\S+) tx=(\d+) rx=(\d+)$`)

// GuestStats returns the last counters the guest printed for dev (from
// offset on in its serial log), or -1, -1.
func GuestStats(serialLog string, offset int64, dev string) (tx, rx int64) {
	tx, rx = -1, -1
	data, err := os.ReadFile(serialLog)
	if err != nil || int64(len(data)) < offset {
		return tx, rx
	}
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		m := statsLine.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m != nil && m[1] == dev {
			tx, _ = strconv.ParseInt(m[2], 10, 64)
			rx, _ = strconv.ParseInt(m[3], 10, 64)
		}
	}
	return tx, rx
}

// NICReports reads, for every live interface of the guest, the guest's last
// printed counters (since its last (re)start) and then the host's.
func (g *Guest) NICReports() ([]NICReport, error) {
	g.mu.Lock()
	off, seen := g.bootOffset, g.FilterSeen
	g.mu.Unlock()
	ifs, err := g.Interfaces()
	if err != nil {
		return nil, err
	}
	fds := qemuTapFDs(g.Name)
	var out []NICReport
	for i, li := range ifs {
		r := NICReport{Guest: g.Name, MAC: li.MAC, Dev: li.Target, FilterSeen: -1, TapFDs: fds}
		// The guest's eth<i> is the domain's i-th interface here (one
		// virtio bus, slots in order): good enough for these guests.
		r.GuestTX, r.GuestRX = GuestStats(g.SerialLog, off, fmt.Sprintf("eth%d", i))
		readHostCounters(&r)
		if seen != nil && r.Dev != "" {
			if n, ok, err := seen(r.Dev); err != nil {
				r.Err = err
			} else if ok {
				r.FilterSeen = int64(n)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func readHostCounters(r *NICReport) {
	if r.Dev == "" {
		r.Err = fmt.Errorf("libvirt reports no host device")
		return
	}
	l, err := netlink.LinkByName(r.Dev)
	if err != nil {
		r.Err = fmt.Errorf("host device %s: %w", r.Dev, err)
		return
	}
	r.Ifindex = l.Attrs().Index
	read := func(k string) uint64 {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", r.Dev, "statistics", k))
		if err != nil {
			r.Err = err
			return 0
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	r.HostTX, r.HostTXDropped = read("tx_packets"), read("tx_dropped")
	r.HostRX, r.HostRXDropped = read("rx_packets"), read("rx_dropped")
	qs, err := netlink.QdiscList(l)
	if err != nil {
		r.Err = err
	}
	for _, q := range qs {
		if q.Type() != "noqueue" {
			r.Qdiscs = append(r.Qdiscs, q.Type())
		}
	}
	want := fmt.Sprintf("/dev/tap%d", r.Ifindex)
	for _, f := range r.TapFDs {
		if f == want {
			r.Attached = true
		}
	}
}

// qemuTapFDs lists what the descriptors of the guest's QEMU process that
// point at a /dev/tapN node point at ("/dev/tap12", or "/dev/tap12
// (deleted)" when the device went away under it).
func qemuTapFDs(name string) []string {
	b, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return nil
	}
	pid := strings.TrimSpace(string(b))
	fds, _ := filepath.Glob(filepath.Join("/proc", pid, "fd", "*"))
	var out []string
	for _, f := range fds {
		if l, err := os.Readlink(f); err == nil && strings.HasPrefix(l, "/dev/tap") {
			out = append(out, l)
		}
	}
	return out
}
